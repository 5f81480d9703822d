"""Creating, operating and deleting VMs: validate at once, then act in a job.

Requests are checked synchronously (so the caller gets NOT_FOUND, ALREADY_EXISTS,
INVALID_ARGUMENT, FAILED_PRECONDITION or RESOURCE_EXHAUSTED right away); the agent
calls happen in the job's task. Operations on one VM are serialized by a per-VM lock,
and the VM's state is checked again once the lock is held.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from havm.contract.fields import name_problem
from manager.app.capacity import CapacityService
from manager.app.claims import Claim, VmClaims
from manager.app.crash_points import CREATE_CONFIRMED, CREATE_STARTED, CrashPoints
from manager.app.host_memory import settle_host_memory
from manager.app.jobs import JobBook, JobHandle
from manager.core.agent_port import AgentPort
from manager.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    ManagerError,
    NotFoundError,
)
from manager.core.failover_policy import check_policy
from manager.core.host_choice import HostChoice, RatingsView, VmShape, choose_host
from manager.core.inventory import build_snapshot
from manager.core.model import (
    CreateVmCommand,
    JobRecord,
    StorageKind,
    StorageLocation,
    VmOperation,
    VmRecord,
)
from manager.core.operations import (
    IN_PROGRESS,
    SettingsChange,
    check_delete,
    check_not_stored,
    check_operation,
    check_passthrough_free,
    check_update,
    passthrough_after,
    settings_summary,
)
from manager.core.placement import PlacementRequest, check_request
from manager.core.rating import rate_hosts
from manager.core.reconcile import record_observed, set_vm_state
from manager.core.settings import Settings
from manager.core.states import HostState, VmState
from manager.core.store import Store

log = logging.getLogger(__name__)

# Operations that stop a guest: a host being shut down still takes them.
_DRAINING = frozenset({VmOperation.SHUTDOWN, VmOperation.TURN_OFF, VmOperation.SAVE})


class VmService:
    def __init__(
        self,
        store: Store,
        agents: AgentPort,
        jobs: JobBook,
        settings: Settings,
        clock: Callable[[], datetime],
        capacity: CapacityService,
        claims: VmClaims | None = None,
        crash_points: CrashPoints | None = None,
    ) -> None:
        claims = claims or VmClaims()
        self._crash_points = crash_points or CrashPoints(None)
        self._store = store
        self._capacity = capacity
        self._agents = agents
        self._jobs = jobs
        self._settings = settings
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        # The VMs jobs, migrations and failovers work on; this service claims for jobs.
        self.claims = claims
        # Bumped on every write this service makes to a VM's record (deletion included),
        # so a refresh can tell that a record changed while it waited for an inventory.
        self._versions: dict[str, int] = {}

    def busy_vms(self) -> set[str]:
        """VMs a job holds or waits for, or a migration moves; refresh leaves their records alone."""
        return self.claims.claimed(Claim.JOB) | self.claims.claimed(Claim.MIGRATION)

    def vm_versions(self) -> dict[str, int]:
        """How many times this service wrote each VM's record."""
        return dict(self._versions)

    def record(self, vm: VmRecord) -> None:
        """Write a VM's record on behalf of another service (failover), as jobs do."""
        self._put(vm)

    def lock(self, vm_id: str) -> asyncio.Lock:
        """The lock that serializes every action on one VM."""
        return self._lock(vm_id)

    def _put(self, vm: VmRecord) -> None:
        self._versions[vm.id] = self._versions.get(vm.id, 0) + 1
        self._store.put_vm(vm)

    def _delete(self, vm_id: str) -> None:
        self._versions[vm_id] = self._versions.get(vm_id, 0) + 1
        self._store.delete_vm(vm_id)

    def _lock(self, vm_id: str) -> asyncio.Lock:
        return self._locks.setdefault(vm_id, asyncio.Lock())

    def _vm(self, name: str) -> VmRecord:
        vm = self._store.get_vm_by_name(name)
        if vm is None:
            raise NotFoundError(f"VM {name} does not exist")
        return vm

    def _address(self, vm: VmRecord, draining: bool = False) -> tuple[str, str]:
        """The VM's host and its agent address, refusing a host that is not ok (or, for
        an operation that empties a host (`draining`), one being shut down)."""
        if vm.host is None:
            raise FailedPreconditionError(f"VM {vm.name} has no host")
        host = self._store.get_host(vm.host)
        if host is None:
            raise FailedPreconditionError(f"VM {vm.name} is on host {vm.host}, which no longer exists")
        usable = host.state is HostState.OK or (draining and host.state is HostState.STOPPING)
        if not usable or not host.address:
            why = f" ({host.state_reason})" if host.state_reason else ""
            raise FailedPreconditionError(f"host {host.name} is {host.state.value}{why}")
        return host.name, host.address

    def host_address(self, vm: VmRecord) -> tuple[str, str]:
        """The VM's host and its agent's address; FailedPrecondition unless it is ok."""
        return self._address(vm)

    def _record(self, vm: VmRecord, state: VmState, reason: str) -> VmRecord:
        """Store what the agent says (or what the manager observed) the VM is now."""
        updated = record_observed(self._store.get_vm(vm.id) or vm, state, reason)
        self._put(updated)
        return updated

    def _set_state(self, vm: VmRecord, state: VmState, reason: str = "") -> VmRecord:
        """The manager's own decision: an edge the table does not list raises."""
        updated = set_vm_state(self._store.get_vm(vm.id) or vm, state, reason)
        self._put(updated)
        return updated

    async def _record_after_failure(self, vm: VmRecord, host: str, address: str, why: str) -> None:
        """After an agent refused or failed, record what the host now says of the VM."""
        try:
            reported = await self._agents.get_vm(host, address, vm.id)
        except NotFoundError:
            self._record(vm, VmState.MISSING, f"host {host} no longer reports this VM")
            return
        except ManagerError as error:
            self._record(vm, VmState.UNKNOWN, f"host {host} did not say what became of it: {error.message}")
            return
        self._record(vm, reported.state, reported.reason or why)

    # --- create --------------------------------------------------------------------

    def _check_shape(self, memory_mb: int, cpus: int, disk_gb: int, networks: tuple[str, ...]) -> None:
        settings = self._settings
        # Zero cpus or disk_gb takes the default; the maxima keep within the wire's int32.
        bounds = (
            ("memory_mb", memory_mb, 1, settings.max_vm_memory_mb),
            ("cpus", cpus, 0, settings.max_vm_cpus),
            ("disk_gb", disk_gb, 0, settings.max_vm_disk_gb),
        )
        for field, value, minimum, maximum in bounds:
            if value < minimum:
                raise InvalidArgumentError(f"{field}: must be positive, got {value}")
            if value > maximum:
                raise InvalidArgumentError(f"{field}: must be at most {maximum}, got {value}")
        if len(set(networks)) != len(networks):
            raise InvalidArgumentError("networks: a network is listed twice")

    def rate(self, shape: VmShape) -> RatingsView:
        """Every host rated for a VM of this shape (VMM's Select Host page)."""
        self._check_shape(shape.memory_mb, shape.cpus, shape.disk_gb, shape.networks)
        request = self._request(
            "new-vm",
            shape.memory_mb,
            shape.cpus or self._settings.default_cpus,
            shape.disk_gb or self._settings.default_disk_gb,
            shape.highly_available,
            None,
            shape.storage,
            shape.networks,
        )
        vms = self._store.list_vms()
        snapshot = build_snapshot(self._store.list_hosts(), self._store.list_clusters(), vms)
        check_request(snapshot, request)
        ratings = rate_hosts(snapshot, request, vms, self._capacity.reports())
        best = next((r.host for r in ratings if r.stars > 0), None)
        return RatingsView(ratings, best, self._settings.placement_goal)

    def _request(
        self,
        name: str,
        memory_mb: int,
        cpus: int,
        disk_gb: int,
        highly_available: bool,
        host: str | None,
        storage: StorageLocation | None,
        networks: tuple[str, ...],
    ) -> PlacementRequest:
        return PlacementRequest(
            vm_name=name,
            memory_mb=memory_mb,
            cpus=cpus,
            disk_gb=disk_gb,
            highly_available=highly_available,
            host=host,
            storage=storage,
            networks=networks,
            max_vcpus_per_core=self._settings.max_vcpus_per_core,
            goal=self._settings.placement_goal,
            weights=self._settings.rating_weights,
        )

    def validate_create(self, command: CreateVmCommand) -> CreateVmCommand:
        settings = self._settings
        if not command.name:
            raise InvalidArgumentError("name: must not be empty")
        problem = name_problem(command.name)
        if problem is not None:
            raise InvalidArgumentError(f"name: must {problem}")
        self._check_shape(command.memory_mb, command.cpus, command.disk_gb, command.networks)
        rates = {
            "dirty_rate_mb_per_s": command.workload.dirty_rate_mb_per_s,
            "journal_writes_per_s": command.workload.journal_writes_per_s,
        }
        for field, rate in rates.items():
            if rate is not None and not (math.isfinite(rate) and 0 <= rate <= settings.max_guest_rate):
                raise InvalidArgumentError(
                    f"workload.{field}: must be a finite number from 0 to {settings.max_guest_rate:g}, "
                    f"got {rate}"
                )
        if self._store.get_vm_by_name(command.name) is not None:
            raise AlreadyExistsError(f"a VM named {command.name} already exists")
        if command.storage is not None and command.storage.kind is StorageKind.CSV and not settings.level.csv:
            raise InvalidArgumentError(
                f"storage: {settings.level.name} does not support cluster shared volumes; "
                "give the VM a LUN of its own"
            )
        return replace(
            command,
            cpus=command.cpus or settings.default_cpus,
            disk_gb=command.disk_gb or settings.default_disk_gb,
        )

    def create(self, command: CreateVmCommand) -> tuple[JobRecord, VmRecord]:
        command = self.validate_create(command)
        request = self._request(
            command.name,
            command.memory_mb,
            command.cpus,
            command.disk_gb,
            command.highly_available,
            command.host,
            command.storage,
            command.networks,
        )
        vms = self._store.list_vms()
        snapshot = build_snapshot(self._store.list_hosts(), self._store.list_clusters(), vms)
        decision = choose_host(
            snapshot,
            request,
            vms,
            self._capacity.reports(),
            restart_priority=command.restart_priority,
            starts=not command.no_start,
            policy=command.policy,
        )
        host = self._store.get_host(decision.host)
        cluster = self._store.get_cluster(host.cluster) if host is not None and host.cluster else None
        check_policy(
            command.policy,
            highly_available=command.highly_available,
            cluster_nodes=cluster.nodes if cluster is not None else (),
        )
        vm = VmRecord(
            id=str(uuid.uuid4()),
            name=command.name,
            host=decision.host,
            # Until the host confirms: a manager killed now leaves a record that the
            # next refresh keeps (the host has the VM) or removes (it does not).
            state=VmState.CREATING,
            highly_available=command.highly_available,
            restart_priority=command.restart_priority,
            memory_mb=command.memory_mb,
            cpus=command.cpus,
            disk_gb=command.disk_gb,
            storage=decision.storage,
            networks=command.networks,
            workload=command.workload,
            created_at=self._clock(),
            processor_compatibility=command.processor_compatibility,
            policy=command.policy,
        )
        self._put(vm)
        log.info("placed VM %s on host %s (%s)", vm.name, vm.host, decision.why)
        # Held from now, so a refresh before the agent has the VM does not call it missing.
        self.claims.claim(vm.id, Claim.JOB)
        try:
            job = self._jobs.start(
                "create_vm",
                vm.name,
                f"Creating VM {vm.name} on host {vm.host}",
                lambda handle: self._create_work(handle, vm, command.no_start, decision),
            )
        except BaseException:
            self.claims.release(vm.id, Claim.JOB)
            raise
        return job, vm

    async def _create_work(self, job: JobHandle, vm: VmRecord, no_start: bool, decision: HostChoice) -> str:
        try:
            async with self._lock(vm.id):
                try:
                    host, address = self._address(vm)
                    job.progress(10, f"Creating VM {vm.name} on host {host}")
                    self._crash_points.reach(CREATE_STARTED)
                    reported = await self._agents.create_vm(host, address, vm)
                    self._crash_points.reach(CREATE_CONFIRMED)
                except ManagerError as error:
                    self._delete(vm.id)
                    raise type(error)(
                        f"host {vm.host} could not create VM {vm.name}: {error.message}"
                    ) from None
                except Exception:
                    # Whatever went wrong, no record may outlive a create the host never confirmed.
                    self._delete(vm.id)
                    raise
                # The lease the host took for the VM: a failover must hold a newer one.
                self._put(
                    replace(self._store.get_vm(vm.id) or vm, lease_generation=reported.lease_generation)
                )
                vm = self._record(vm, reported.state, reported.reason)
                if no_start:
                    return f"Created VM {vm.name} on host {host} ({decision.why})"
                job.progress(60, f"Starting VM {vm.name} on host {host}")
                await self._run_operation(vm, host, address, VmOperation.START)
                await settle_host_memory(self._store, self._agents, host)
                return f"Created and started VM {vm.name} on host {host} ({decision.why})"
        finally:
            self.claims.release(vm.id, Claim.JOB)

    async def _run_operation(self, vm: VmRecord, host: str, address: str, operation: VmOperation) -> VmRecord:
        if operation in IN_PROGRESS:
            vm = self._set_state(vm, IN_PROGRESS[operation])
        try:
            reported = await self._agents.operate_vm(host, address, vm.id, operation)
        except ManagerError as error:
            await self._record_after_failure(vm, host, address, error.message)
            raise type(error)(
                f"{operation.value.replace('_', ' ')} of VM {vm.name} on host {host} failed: {error.message}"
            ) from None
        return self._record(vm, reported.state, reported.reason)

    # --- operate -------------------------------------------------------------------

    def operate(self, name: str, operation: VmOperation | None) -> JobRecord:
        if operation is None:
            choices = ", ".join(op.value for op in VmOperation)
            raise InvalidArgumentError(f"operation: must be one of {choices}")
        vm = self._vm(name)
        check_operation(vm, operation)
        check_not_stored(vm, self._store.get_host(vm.host or ""))
        self._address(vm, draining=operation in _DRAINING)
        verb = operation.value.replace("_", " ")
        self.claims.claim(vm.id, Claim.JOB)
        try:
            return self._jobs.start(
                f"{operation.value}_vm",
                vm.name,
                f"Waiting to {verb} VM {vm.name}",
                lambda handle: self._operate_work(handle, vm.id, operation),
            )
        except BaseException:
            self.claims.release(vm.id, Claim.JOB)
            raise

    async def _operate_work(self, job: JobHandle, vm_id: str, operation: VmOperation) -> str:
        try:
            async with self._lock(vm_id):
                vm = self._store.get_vm(vm_id)
                if vm is None:
                    raise NotFoundError("the VM was deleted before the operation could run")
                check_operation(vm, operation)
                host, address = self._address(vm, draining=operation in _DRAINING)
                verb = operation.value.replace("_", " ")
                job.progress(20, f"Asking host {host} to {verb} VM {vm.name}")
                vm = await self._run_operation(vm, host, address, operation)
                await settle_host_memory(self._store, self._agents, host)
                return f"VM {vm.name} is {vm.state.value} on host {host}"
        finally:
            self.claims.release(vm_id, Claim.JOB)

    # --- settings ------------------------------------------------------------------

    def update(self, name: str, change: SettingsChange) -> tuple[JobRecord, VmRecord]:
        vm = self._vm(name)
        check_update(vm, change)
        check_passthrough_free(vm, change, self._store.list_vms())
        self._address(vm)
        self.claims.claim(vm.id, Claim.JOB)
        try:
            job = self._jobs.start(
                "update_vm",
                vm.name,
                f"Changing the settings of VM {vm.name}",
                lambda handle: self._update_work(handle, vm.id, change),
            )
        except BaseException:
            self.claims.release(vm.id, Claim.JOB)
            raise
        return job, vm

    async def _update_work(self, job: JobHandle, vm_id: str, change: SettingsChange) -> str:
        try:
            async with self._lock(vm_id):
                vm = self._store.get_vm(vm_id)
                if vm is None:
                    raise NotFoundError("the VM was deleted before its settings could change")
                check_update(vm, change)
                check_passthrough_free(vm, change, self._store.list_vms())
                if change.empty:
                    return f"VM {vm.name}: nothing to change"
                host, address = self._address(vm)
                job.progress(30, f"Asking host {host} to change the settings of VM {vm.name}")
                try:
                    reported = await self._agents.update_vm(
                        host,
                        address,
                        vm.id,
                        change.processor_compatibility,
                        change.iso_image,
                        passthrough_after(vm, change),
                    )
                except ManagerError as error:
                    raise type(error)(
                        f"host {host} could not change the settings of VM {vm.name}: {error.message}"
                    ) from None
                vm = replace(
                    record_observed(vm, reported.state, reported.reason),
                    processor_compatibility=reported.processor_compatibility,
                    passthrough_disks=reported.passthrough_disks,
                    iso_image=reported.iso_image,
                )
                self._put(vm)
                return f"VM {vm.name}: {settings_summary(vm, change)}"
        finally:
            self.claims.release(vm_id, Claim.JOB)

    # --- delete --------------------------------------------------------------------

    def delete(self, name: str) -> JobRecord:
        vm = self._vm(name)
        check_delete(vm)
        if _on_its_host(vm):
            self._address(vm)
        self.claims.claim(vm.id, Claim.JOB)
        try:
            return self._jobs.start(
                "delete_vm",
                vm.name,
                f"Deleting VM {vm.name}",
                lambda handle: self._delete_work(handle, vm.id),
            )
        except BaseException:
            self.claims.release(vm.id, Claim.JOB)
            raise

    async def _delete_work(self, job: JobHandle, vm_id: str) -> str:
        try:
            async with self._lock(vm_id):
                vm = self._store.get_vm(vm_id)
                if vm is None:
                    raise NotFoundError("the VM was already deleted")
                check_delete(vm)
                if _on_its_host(vm):
                    host, address = self._address(vm)
                    job.progress(30, f"Deleting VM {vm.name} and its files on host {host}")
                    try:
                        await self._agents.delete_vm(host, address, vm.id)
                    except NotFoundError:
                        pass  # already gone from the host: the record is all that is left
                    await settle_host_memory(self._store, self._agents, host)
                self._delete(vm.id)
                self._locks.pop(vm_id, None)
                return f"Deleted VM {vm.name}"
        finally:
            self.claims.release(vm_id, Claim.JOB)


def _on_its_host(vm: VmRecord) -> bool:
    """Whether deleting the VM needs its host: not when the host lost it, nor when the
    VM waits to be restarted away from a failed host (its record is all there is)."""
    return vm.state is not VmState.MISSING and vm.host is not None and vm.failover_from is None
