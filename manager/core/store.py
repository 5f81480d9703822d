"""The port through which the manager keeps its records.

A SQLite implementation persists them across restarts and kill -9; an in-memory one
serves unit tests. Both pass the same contract tests. Calls are synchronous and short:
the store is local and every call is one small transaction.
"""

from __future__ import annotations

from typing import Protocol

from manager.core.model import ClusterRecord, HostRecord, JobRecord, VmRecord
from manager.core.states import JobState


class Store(Protocol):
    def get_host(self, name: str) -> HostRecord | None: ...

    def list_hosts(self) -> list[HostRecord]: ...

    def put_host(self, host: HostRecord) -> None: ...

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

    def close(self) -> None: ...
