"""What a host's inventory means for the VMs the manager recorded.

Purely computational, no side effects: `reconcile` compares the store with what an
agent reports and returns the records to write; the refresh service writes them.
The agent is the truth about what runs on it; the store is the truth about what
the manager created. Differences become imports (a VM the agent has that the manager
never created), `missing` VMs (recorded on the host, no longer reported) and state
updates.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from manager.core.model import FailedAction, ReportedVm, VmRecord
from manager.core.states import VmState, change_vm_state, observed_vm_state_path


@dataclass(frozen=True)
class ReconcileResult:
    updates: tuple[VmRecord, ...]  # recorded VMs whose record changed
    imports: tuple[VmRecord, ...]  # VMs found on the host, new to the store
    missing: tuple[VmRecord, ...]  # recorded on the host, no longer reported (now `missing`)
    # Records left `creating` by an interrupted create whose host never got the VM.
    removed: tuple[VmRecord, ...] = ()
    # Names of VMs the host still holds a stale copy of: the VM was taken over by another
    # host with a newer lease generation. Never recorded back on this host.
    stale: tuple[str, ...] = ()
    # Highly available VMs the manager had running that the host reports turned off,
    # with no job, migration or failover of the manager's at work on them: someone
    # turned them off on the host itself (a subset of `updates`).
    stopped_outside: tuple[VmRecord, ...] = ()


def record_observed(vm: VmRecord, new: VmState, reason: str | None = None) -> VmRecord:
    """The VM in the state an agent reported, through `unknown` when no edge leads there.

    Leaving `failed` forgets what failed; a failure the host reports is `reported`.
    """
    state = vm.state
    for step in observed_vm_state_path(state, new):
        state = change_vm_state(vm.name, state, step)
    action = (vm.failed_action or FailedAction.REPORTED) if state is VmState.FAILED else None
    return replace(vm, state=state, reason=vm.reason if reason is None else reason, failed_action=action)


def keeps_failure(stored: VmRecord, reported: ReportedVm) -> bool:
    """A `failed` VM stays failed, with its reason, whatever its host reports at rest:
    only a copy that runs again with the current lease ends the failure by itself;
    otherwise `vm repair` does."""
    if stored.state is not VmState.FAILED:
        return False
    runs = reported.state in (VmState.RUNNING, VmState.PAUSED)
    return not (runs and reported.lease_generation >= stored.lease_generation)


def set_vm_state(vm: VmRecord, new: VmState, reason: str | None = None) -> VmRecord:
    """The VM in a state the manager itself decided; raises IllegalTransitionError."""
    state = change_vm_state(vm.name, vm.state, new)
    return replace(vm, state=state, reason=vm.reason if reason is None else reason)


def importable_name(name: str, vm_id: str, taken: Iterable[str]) -> str:
    """The name an imported VM gets: its own, or with `-<first 8 of id>` when taken."""
    taken_set = set(taken)
    return name if name not in taken_set else f"{name}-{vm_id[:8]}"


def reconcile(
    host_name: str,
    stored_vms: Sequence[VmRecord],
    reported_vms: Sequence[ReportedVm],
    *,
    now: datetime,
    busy: Collection[str] = (),
) -> ReconcileResult:
    """Compare the store with one host's report.

    `stored_vms` may hold every VM the manager knows (so that a VM reported by this
    host but recorded elsewhere is found by id and its names are all seen as taken);
    only those recorded on `host_name` can become missing. `now` stamps imports.
    """
    by_id = {vm.id: vm for vm in stored_vms}
    taken = {vm.name for vm in stored_vms}
    updates: list[VmRecord] = []
    imports: list[VmRecord] = []
    stale: list[str] = []
    stopped_outside: list[VmRecord] = []
    for reported in reported_vms:
        if reported.id in busy:
            continue
        stored = by_id.get(reported.id)
        if (
            stored is not None
            and stored.host not in (None, host_name)
            and reported.lease_generation < stored.lease_generation
        ):
            stale.append(stored.name)
            continue
        if stored is None:
            name = importable_name(reported.name, reported.id, taken)
            taken.add(name)
            imported = VmRecord(
                id=reported.id,
                name=name,
                host=host_name,
                state=reported.state,
                highly_available=reported.highly_available,
                memory_mb=reported.memory_mb,
                cpus=reported.cpus,
                disk_gb=reported.disk_gb,
                storage=reported.storage,
                networks=reported.networks,
                workload=reported.workload,
                imported=True,
                passthrough_disks=reported.passthrough_disks,
                iso_image=reported.iso_image,
                cluster_resources=reported.cluster_resources,
                data_disks=reported.data_disks,
                created_at=now,
                reason=reported.reason,
            )
            imports.append(imported)
            continue
        turned_off = (
            stored.highly_available
            and stored.host == host_name
            and stored.state in (VmState.RUNNING, VmState.PAUSED)
            and reported.state is VmState.STOPPED
            and reported.lease_generation >= stored.lease_generation
        )
        if keeps_failure(stored, reported):
            updated = stored
        elif turned_off:
            updated = record_observed(
                stored, reported.state, f"turned off on host {host_name} outside the manager"
            )
        else:
            updated = record_observed(stored, reported.state, reported.reason)
        updated = replace(
            updated,
            host=host_name,
            memory_mb=reported.memory_mb,
            cpus=reported.cpus,
            disk_gb=reported.disk_gb,
            storage=reported.storage or stored.storage,
            networks=reported.networks,
            lease_generation=max(stored.lease_generation, reported.lease_generation),
            passthrough_disks=reported.passthrough_disks,
            iso_image=reported.iso_image,
            cluster_resources=reported.cluster_resources,
            data_disks=reported.data_disks,
        )
        if updated != stored:
            updates.append(updated)
            if turned_off:
                stopped_outside.append(updated)
    reported_ids = {r.id for r in reported_vms}
    gone = [
        vm for vm in stored_vms if vm.host == host_name and vm.id not in reported_ids and vm.id not in busy
    ]
    missing = [
        record_observed(vm, VmState.MISSING, f"host {host_name} no longer reports this VM")
        for vm in gone
        # A failed VM keeps its failure; a waiting one belongs to its failover.
        if vm.state not in (VmState.MISSING, VmState.CREATING, VmState.FAILED, VmState.WAITING)
    ]
    removed = [vm for vm in gone if vm.state is VmState.CREATING]
    return ReconcileResult(
        tuple(updates), tuple(imports), tuple(missing), tuple(removed), tuple(stale), tuple(stopped_outside)
    )


def mark_unknown(vms: Sequence[VmRecord], host_name: str, why: str) -> list[VmRecord]:
    """The VMs of a host that does not answer, now `unknown` (those that changed).

    A VM still `creating` stays so: whether its host has it is settled when the host
    answers again. A VM at rest (stopped or saved) keeps its state: nothing of it runs
    that the host's failure could have interrupted, and failover, which restarts
    whatever was running (`unknown` included), must leave it at rest, as a failover
    cluster leaves an offline group.
    """
    return [
        record_observed(vm, VmState.UNKNOWN, f"host {host_name} does not answer: {why}")
        for vm in vms
        if vm.host == host_name and vm.state not in _KEPT_WHEN_HOST_SILENT
    ]


# States a host's silence does not make unknown (see mark_unknown).
# A failed VM keeps its failure and its reason (see keeps_failure); a waiting one
# belongs to its failover.
_KEPT_WHEN_HOST_SILENT = frozenset(
    {
        VmState.UNKNOWN,
        VmState.CREATING,
        VmState.STOPPED,
        VmState.SAVED,
        VmState.FAILED,
        VmState.WAITING,
    }
)
