"""Asking for a migration: every check that can refuse it at once, then its record.

A request is refused before anything moves when the VM, either host or the
destination's own compatibility verdict says no; the caller gets the sentence why.
An accepted request becomes a persisted migration record (queued), a claim on the VM,
and a job that runs the migration's flow.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

from manager.app.claims import Claim
from manager.app.jobs import JobBook, JobHandle
from manager.app.migrations.context import MigrationContext
from manager.core.errors import FailedPreconditionError, InvalidArgumentError, ManagerError, NotFoundError
from manager.core.inventory import host_capacity
from manager.core.migration import (
    check_destination,
    check_ha_fits,
    check_host_ok,
    check_same_cluster,
    check_vm_movable,
    choose_kind,
    choose_storage,
    moves_live,
    no_live_migration,
    refusal,
)
from manager.core.model import (
    ClusterRecord,
    HostRecord,
    JobRecord,
    MigrationKind,
    MigrationRecord,
    StorageLocation,
    VmRecord,
)
from manager.core.states import MigrationState, VmState
from manager.core.transfer import (
    TRANSFERABLE_STATES,
    Transfer,
    check_deployable,
    check_network_storage,
    check_not_across_datacenters,
    check_runs_there,
    check_storable,
    check_storage_move_stays,
    check_transfer_inside_cluster,
    choose_library,
    crosses_cluster_boundary,
    plan_transfer,
    same_datacenter,
)

# Runs an accepted migration, by its id, as its job.
Work = Callable[[JobHandle, str], Awaitable[str]]


class MigrationRequests:
    def __init__(self, ctx: MigrationContext, jobs: JobBook, work: Work) -> None:
        self._ctx = ctx
        self._jobs = jobs
        self._work = work

    async def migrate(
        self,
        name: str,
        destination: str,
        quick: bool,
        no_converge: str | None,
        transfer: Transfer = Transfer.AUTO,
        make_ha: bool = False,
        storage: StorageLocation | None = None,
        job_kind: str = "migrate_vm",
    ) -> tuple[JobRecord, MigrationRecord]:
        """Live or quick migration to another node of the VM's cluster; a SAN or network
        transfer of a VM at rest across the cluster boundary (into or out of the library
        too: `store`, `deploy`)."""
        vm = self._vm(name)
        check_vm_movable(vm)
        source, target = self._hosts(vm, destination)
        check_runs_there(vm, target)
        if crosses_cluster_boundary(source, target):
            here, there = self._cluster(source), self._cluster(target)
            datacenter = same_datacenter(here, there)
            if datacenter is not None and vm.state not in TRANSFERABLE_STATES:
                return await self._vmotion(vm, source, target, datacenter, transfer, storage, no_converge)
            check_not_across_datacenters(vm, here, there)
            return await self._transfer(vm, source, target, transfer, make_ha, storage, job_kind)
        check_transfer_inside_cluster(transfer, source, target)
        if storage is not None:
            raise InvalidArgumentError(
                f"storage: inside cluster {source.cluster} the files stay where every node sees them; "
                f"move them with `havm vm migrate-storage {vm.name}`"
            )
        check_ha_fits(vm, target)
        check_same_cluster(vm, source, target)
        level = self._ctx.settings.level
        live = moves_live(source, level) and moves_live(target, level)
        kind = choose_kind(source.capabilities, vm.state, quick or not live, target.capabilities)
        await self._check_compatibility(vm, source, target, vm.storage)
        return self._begin(vm, source, target, kind, None, no_converge or self._ctx.policy.no_converge)

    async def store(self, name: str, library: str, transfer: Transfer) -> tuple[JobRecord, MigrationRecord]:
        """Store a stopped or saved VM in a library server: it leaves its host (and its
        cluster, no longer highly available) by SAN transfer or over the network."""
        store = self._ctx.store
        vm = self._vm(name)
        check_vm_movable(vm)
        chosen = choose_library(vm, store.list_hosts(), library)
        check_storable(vm, store.get_host(vm.host or ""), chosen)
        return await self.migrate(name, chosen.name, False, None, transfer, job_kind="store_vm")

    async def deploy(
        self,
        name: str,
        destination: str,
        transfer: Transfer,
        make_ha: bool,
        storage: StorageLocation | None,
    ) -> tuple[JobRecord, MigrationRecord]:
        """Deploy a VM stored in the library onto a host, by SAN where the host sees its
        LUN, over the network otherwise; onto a cluster node it becomes highly available."""
        store = self._ctx.store
        vm = self._vm(name)
        check_vm_movable(vm)
        target = store.get_host(destination) if destination else None
        check_deployable(vm, store.get_host(vm.host or ""), target)
        return await self.migrate(
            name, destination, False, None, transfer, make_ha, storage, job_kind="deploy_vm"
        )

    async def migrate_storage(
        self, name: str, destination: str, storage: StorageLocation | None
    ) -> tuple[JobRecord, MigrationRecord]:
        """Move the VM's files on its host, or to another host together with the VM."""
        store = self._ctx.store
        vm = self._vm(name)
        here = check_vm_movable(vm)
        if not destination or destination == here:
            if storage is None:
                raise InvalidArgumentError("storage: must say where the files go when the host stays")
            if storage == vm.storage:
                raise FailedPreconditionError(f"VM {vm.name}'s files already are on {storage.name}")
            source = store.get_host(here)
            if source is None:
                raise FailedPreconditionError(f"VM {vm.name} is on host {here}, which no longer exists")
            check_host_ok(vm, source, "its")
            return self._begin(vm, source, source, MigrationKind.STORAGE, storage, "fail")
        source, target = self._hosts(vm, destination)
        check_runs_there(vm, target)
        check_ha_fits(vm, target)
        check_storage_move_stays(
            vm, source, target, same_datacenter(self._cluster(source), self._cluster(target))
        )
        for host in (source, target):
            if not moves_live(host, self._ctx.settings.level):
                raise FailedPreconditionError(
                    f"VM {vm.name} cannot move its files from {source.name} to {target.name} while it "
                    f"runs: {no_live_migration(host, self._ctx.settings.level)}"
                )
        if vm.state is not VmState.RUNNING:
            raise FailedPreconditionError(
                f"VM {vm.name} is {vm.state.value}: a storage migration to another host moves a running "
                "VM (start it first)"
            )
        if storage is None:
            capacity = host_capacity(target, store.list_clusters(), store.list_vms())
            storage = choose_storage(capacity, vm)
            if storage is None:
                raise FailedPreconditionError(
                    f"VM {vm.name} cannot move to {target.name}: it sees no storage with {vm.disk_gb} GB free"
                )
        await self._check_compatibility(vm, source, target, storage)
        return self._begin(vm, source, target, MigrationKind.STORAGE, storage, "fail")

    def _cluster(self, host: HostRecord) -> ClusterRecord | None:
        return self._ctx.store.get_cluster(host.cluster) if host.cluster is not None else None

    async def _vmotion(
        self,
        vm: VmRecord,
        source: HostRecord,
        target: HostRecord,
        datacenter: str,
        transfer: Transfer,
        storage: StorageLocation | None,
        no_converge: str | None,
    ) -> tuple[JobRecord, MigrationRecord]:
        """A running VM between ESX clusters of one datacenter: VMotion where the
        destination sees its datastore, VMotion with Storage VMotion (the disk copied
        while it runs, in the same operation) where it does not or `storage` says so."""
        if transfer is not Transfer.AUTO:
            raise InvalidArgumentError(
                f"transfer: VM {vm.name} runs; between the clusters of datacenter {datacenter} it moves "
                "by VMotion, not by a transfer (save or stop it for one)"
            )
        check_ha_fits(vm, target)
        for host in (source, target):
            if not moves_live(host, self._ctx.settings.level):
                raise FailedPreconditionError(
                    f"VM {vm.name} cannot move from {source.name} to {target.name} while it runs: "
                    f"{no_live_migration(host, self._ctx.settings.level)}"
                )
        seen = vm.storage is not None and any(
            v.name == vm.storage.name and v.kind is vm.storage.kind for v in target.volumes
        )
        kind = MigrationKind.LIVE
        if (storage is not None and storage != vm.storage) or not seen:
            kind = MigrationKind.STORAGE
            if storage is None:
                store = self._ctx.store
                storage = choose_storage(host_capacity(target, store.list_clusters(), store.list_vms()), vm)
                if storage is None:
                    raise FailedPreconditionError(
                        f"VM {vm.name} cannot move to {target.name}: it sees no datastore with "
                        f"{vm.disk_gb} GB free"
                    )
        else:
            storage = None
        await self._check_compatibility(vm, source, target, storage or vm.storage)
        return self._begin(vm, source, target, kind, storage, no_converge or self._ctx.policy.no_converge)

    async def _transfer(
        self,
        vm: VmRecord,
        source: HostRecord,
        target: HostRecord,
        transfer: Transfer,
        make_ha: bool,
        storage: StorageLocation | None,
        job_kind: str,
    ) -> tuple[JobRecord, MigrationRecord]:
        """A move across the cluster boundary: planned (SAN or network), checked by the
        destination, begun."""
        store = self._ctx.store
        cluster = store.get_cluster(target.cluster) if target.cluster is not None else None
        others = store.list_vms()
        plan = plan_transfer(
            transfer,
            vm,
            source,
            target,
            cluster.nodes if cluster is not None else (),
            {h.name: h for h in store.list_hosts()},
            others,
            self._ctx.settings.level,
            make_ha,
        )
        arriving = replace(vm, highly_available=plan.highly_available_after)
        if plan.kind is MigrationKind.SAN_TRANSFER:
            if storage is not None and storage != vm.storage:
                raise InvalidArgumentError(
                    f"storage: a SAN transfer leaves VM {vm.name}'s files on their LUN; to copy them to "
                    f"{storage.name}, use --transfer network"
                )
            storage = vm.storage
        else:
            if storage is None:
                capacity = host_capacity(target, store.list_clusters(), others)
                storage = choose_storage(capacity, arriving)
                if storage is None:
                    raise FailedPreconditionError(
                        f"VM {vm.name} cannot move to {target.name}: it sees no storage with "
                        f"{vm.disk_gb} GB free"
                    )
            check_network_storage(vm, storage)
        await self._check_compatibility(arriving, source, target, storage)
        return self._begin(
            vm,
            source,
            target,
            plan.kind,
            storage,
            "fail",
            highly_available_after=plan.highly_available_after,
            job_kind=job_kind,
        )

    def _vm(self, name: str) -> VmRecord:
        vm = self._ctx.store.get_vm_by_name(name)
        if vm is None:
            raise NotFoundError(f"VM {name} does not exist")
        return vm

    def _hosts(self, vm: VmRecord, destination: str) -> tuple[HostRecord, HostRecord]:
        store = self._ctx.store
        source = store.get_host(vm.host or "")
        target = store.get_host(destination) if destination else None
        check_destination(vm, source, target, destination)
        assert source is not None and target is not None
        return source, target

    async def _check_compatibility(
        self, vm: VmRecord, source: HostRecord, target: HostRecord, storage: StorageLocation | None
    ) -> None:
        """The destination's verdict, with the processor the running guest sees."""
        agents = self._ctx.agents
        vendor, features = "", tuple[str, ...]()
        if vm.state is not VmState.STOPPED:
            try:
                report = await agents.get_vm(source.name, source.address or "", vm.id)
            except ManagerError as error:
                raise type(error)(
                    f"host {source.name} could not describe VM {vm.name}: {error.message}"
                ) from None
            vendor, features = report.cpu_vendor, report.cpu_features
        try:
            reasons = await agents.check_compatibility(
                target.name, target.address or "", replace(vm, storage=storage), vendor, features
            )
        except ManagerError as error:
            raise type(error)(
                f"host {target.name} could not check whether it can take VM {vm.name}: {error.message}"
            ) from None
        if reasons:
            raise refusal(vm, target.name, reasons)

    def _begin(
        self,
        vm: VmRecord,
        source: HostRecord,
        target: HostRecord,
        kind: MigrationKind,
        storage: StorageLocation | None,
        no_converge: str,
        highly_available_after: bool | None = None,
        job_kind: str = "migrate_vm",
    ) -> tuple[JobRecord, MigrationRecord]:
        ctx = self._ctx
        # The compatibility check awaited: look again before taking the VM.
        vm = self._vm(vm.name)
        check_vm_movable(vm)
        if vm.host != source.name:
            raise FailedPreconditionError(f"VM {vm.name} moved to {vm.host} meanwhile")
        now = ctx.clock()
        migration = MigrationRecord(
            id=str(uuid.uuid4()),
            vm_id=vm.id,
            vm_name=vm.name,
            kind=kind,
            state=MigrationState.QUEUED,
            source=source.name,
            destination=target.name,
            created_at=now,
            updated_at=now,
            storage=storage,
            lease_generation=vm.lease_generation + 1,
            vm_state_before=vm.state,
            no_converge=no_converge,
            highly_available_after=highly_available_after,
        )
        ctx.store.put_migration(migration)
        ctx.vms.record(replace(vm, migration_id=migration.id))
        ctx.vms.claims.claim(vm.id, Claim.MIGRATION)
        where = f"{source.name} to {target.name}" if source.name != target.name else f"on {source.name}"
        label = {
            MigrationKind.STORAGE: "storage migration",
            MigrationKind.SAN_TRANSFER: "SAN transfer",
            MigrationKind.NETWORK_TRANSFER: "network transfer",
        }.get(kind, f"{kind.value} migration")
        try:
            job = self._jobs.start(
                "migrate_vm_storage" if kind is MigrationKind.STORAGE else job_kind,
                vm.name,
                f"Waiting to migrate VM {vm.name} {where}",
                lambda handle: self._work(handle, migration.id),
                # A manager stopping mid-migration leaves the job to the next one's settling.
                resumable=True,
            )
        except BaseException:
            ctx.vms.claims.release(vm.id, Claim.MIGRATION)
            ctx.vms.record(replace(vm, migration_id=None))
            raise
        migration = replace(migration, job_id=job.id)
        ctx.store.put_migration(migration)
        ctx.emit(migration, f"{label} of VM {vm.name} {where} requested")
        return job, migration
