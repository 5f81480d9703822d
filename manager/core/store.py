"""The port through which the manager keeps its records.

A SQLite implementation persists them across restarts and kill -9; an in-memory one
serves unit tests. Both pass the same contract tests. Calls are synchronous and short:
the store is local and every call is one small transaction.
"""

from __future__ import annotations

from typing import Protocol

from manager.core.model import ClusterRecord, HostRecord, JobRecord, MigrationRecord, VmRecord
from manager.core.states import JobState, MigrationState


class Store(Protocol):
    def get_host(self, name: str) -> HostRecord | None: ...

    def list_hosts(self) -> list[HostRecord]: ...

    def put_host(self, host: HostRecord) -> None: ...

    def delete_host(self, name: str) -> None: ...

    def delete_cluster(self, name: str) -> None: ...

    def get_cluster(self, name: str) -> ClusterRecord | None: ...

    def list_clusters(self) -> list[ClusterRecord]: ...

    def put_cluster(self, cluster: ClusterRecord) -> None: ...

    def get_vm(self, vm_id: str) -> VmRecord | None: ...

    def get_vm_by_name(self, name: str) -> VmRecord | None: ...

    def list_vms(self, host: str | None = None) -> list[VmRecord]:
        """Every VM (or those on `host`), by name."""
        ...

    def put_vm(self, vm: VmRecord) -> None:
        """Insert or replace by id; a name used by another VM raises AlreadyExistsError."""
        ...

    def delete_vm(self, vm_id: str) -> None: ...

    def get_job(self, job_id: str) -> JobRecord | None: ...

    def list_jobs(self, limit: int, state: JobState | None = None) -> list[JobRecord]:
        """Newest first."""
        ...

    def put_job(self, job: JobRecord) -> None: ...

    def get_job_by_request(self, request_id: str) -> JobRecord | None: ...

    def get_migration(self, migration_id: str) -> MigrationRecord | None: ...

    def list_migrations(
        self, limit: int, states: frozenset[MigrationState] | None = None
    ) -> list[MigrationRecord]:
        """Newest first; only those in `states` when given."""
        ...

    def put_migration(self, migration: MigrationRecord) -> None: ...

    def close(self) -> None: ...


class ForwardingStore:
    """A Store that hands every call to another; layers (events, judging) override the
    writes they watch and inherit the rest."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def get_host(self, name: str) -> HostRecord | None:
        return self._inner.get_host(name)

    def list_hosts(self) -> list[HostRecord]:
        return self._inner.list_hosts()

    def put_host(self, host: HostRecord) -> None:
        self._inner.put_host(host)

    def delete_host(self, name: str) -> None:
        self._inner.delete_host(name)

    def delete_cluster(self, name: str) -> None:
        self._inner.delete_cluster(name)

    def get_cluster(self, name: str) -> ClusterRecord | None:
        return self._inner.get_cluster(name)

    def list_clusters(self) -> list[ClusterRecord]:
        return self._inner.list_clusters()

    def put_cluster(self, cluster: ClusterRecord) -> None:
        self._inner.put_cluster(cluster)

    def get_vm(self, vm_id: str) -> VmRecord | None:
        return self._inner.get_vm(vm_id)

    def get_vm_by_name(self, name: str) -> VmRecord | None:
        return self._inner.get_vm_by_name(name)

    def list_vms(self, host: str | None = None) -> list[VmRecord]:
        return self._inner.list_vms(host)

    def put_vm(self, vm: VmRecord) -> None:
        self._inner.put_vm(vm)

    def delete_vm(self, vm_id: str) -> None:
        self._inner.delete_vm(vm_id)

    def get_job(self, job_id: str) -> JobRecord | None:
        return self._inner.get_job(job_id)

    def list_jobs(self, limit: int, state: JobState | None = None) -> list[JobRecord]:
        return self._inner.list_jobs(limit, state)

    def put_job(self, job: JobRecord) -> None:
        self._inner.put_job(job)

    def get_job_by_request(self, request_id: str) -> JobRecord | None:
        return self._inner.get_job_by_request(request_id)

    def get_migration(self, migration_id: str) -> MigrationRecord | None:
        return self._inner.get_migration(migration_id)

    def list_migrations(
        self, limit: int, states: frozenset[MigrationState] | None = None
    ) -> list[MigrationRecord]:
        return self._inner.list_migrations(limit, states)

    def put_migration(self, migration: MigrationRecord) -> None:
        self._inner.put_migration(migration)

    def close(self) -> None:
        self._inner.close()
