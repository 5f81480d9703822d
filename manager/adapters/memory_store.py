"""An in-memory Store: the same contract as SQLite, for unit tests and dry runs."""

from __future__ import annotations

from manager.core.errors import AlreadyExistsError
from manager.core.model import ClusterRecord, HostRecord, JobRecord, MigrationRecord, VmRecord
from manager.core.states import JobState, MigrationState


class MemoryStore:
    def __init__(self) -> None:
        self._hosts: dict[str, HostRecord] = {}
        self._clusters: dict[str, ClusterRecord] = {}
        self._vms: dict[str, VmRecord] = {}
        self._jobs: dict[str, JobRecord] = {}
        # Insertion order breaks ties between jobs created in the same instant.
        self._job_order: dict[str, int] = {}
        self._job_by_request: dict[str, str] = {}
        self._migrations: dict[str, MigrationRecord] = {}
        self._migration_order: dict[str, int] = {}

    def get_host(self, name: str) -> HostRecord | None:
        return self._hosts.get(name)

    def list_hosts(self) -> list[HostRecord]:
        return [self._hosts[n] for n in sorted(self._hosts)]

    def put_host(self, host: HostRecord) -> None:
        self._hosts[host.name] = host

    def delete_host(self, name: str) -> None:
        self._hosts.pop(name, None)

    def delete_cluster(self, name: str) -> None:
        self._clusters.pop(name, None)

    def get_cluster(self, name: str) -> ClusterRecord | None:
        return self._clusters.get(name)

    def list_clusters(self) -> list[ClusterRecord]:
        return [self._clusters[n] for n in sorted(self._clusters)]

    def put_cluster(self, cluster: ClusterRecord) -> None:
        self._clusters[cluster.name] = cluster

    def get_vm(self, vm_id: str) -> VmRecord | None:
        return self._vms.get(vm_id)

    def get_vm_by_name(self, name: str) -> VmRecord | None:
        return next((vm for vm in self._vms.values() if vm.name == name), None)

    def list_vms(self, host: str | None = None) -> list[VmRecord]:
        vms = [vm for vm in self._vms.values() if host is None or vm.host == host]
        return sorted(vms, key=lambda vm: vm.name)

    def put_vm(self, vm: VmRecord) -> None:
        other = self.get_vm_by_name(vm.name)
        if other is not None and other.id != vm.id:
            raise AlreadyExistsError(f"a VM named {vm.name} already exists")
        self._vms[vm.id] = vm

    def delete_vm(self, vm_id: str) -> None:
        self._vms.pop(vm_id, None)

    def get_job(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    def list_jobs(self, limit: int, state: JobState | None = None) -> list[JobRecord]:
        jobs = [j for j in self._jobs.values() if state is None or j.state is state]
        jobs.sort(key=lambda j: (j.created_at, self._job_order[j.id]), reverse=True)
        return jobs[:limit]

    def put_job(self, job: JobRecord) -> None:
        self._job_order.setdefault(job.id, len(self._job_order))
        self._jobs[job.id] = job
        if job.request_id:
            self._job_by_request[job.request_id] = job.id

    def get_job_by_request(self, request_id: str) -> JobRecord | None:
        job_id = self._job_by_request.get(request_id)
        return self._jobs.get(job_id) if job_id is not None else None

    def get_migration(self, migration_id: str) -> MigrationRecord | None:
        return self._migrations.get(migration_id)

    def list_migrations(
        self, limit: int, states: frozenset[MigrationState] | None = None
    ) -> list[MigrationRecord]:
        found = [m for m in self._migrations.values() if states is None or m.state in states]
        found.sort(key=lambda m: (m.created_at, self._migration_order[m.id]), reverse=True)
        return found[:limit]

    def put_migration(self, migration: MigrationRecord) -> None:
        self._migration_order.setdefault(migration.id, len(self._migration_order))
        self._migrations[migration.id] = migration

    def close(self) -> None:
        pass
