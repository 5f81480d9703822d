"""A graceful host shutdown, planned purely: what happens to each VM before the host goes.

When a Windows Server 2008 R2 failover cluster node is shut down, the cluster service
first moves its groups: a clustered VM is saved (its "cluster-controlled offline
action"), its group moves to another node and the VM is restored there. An
administrator may instead shut guests down or live-migrate them first. Either way
every highly available VM runs elsewhere before the node stops, so its recovery does
not wait for a failure to be detected. VMs that are not highly available cannot move
with the cluster: they are shut down cleanly where they are, as the host's own
shutdown would.

Targets come from the same owners-aware placement failover uses; the plan is all or
nothing: if some HA VM has nowhere to go, nothing moves and the shutdown is refused.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from manager.core.errors import FailedPreconditionError
from manager.core.failover import place_by_owners, placed_on, restart_request
from manager.core.model import HostRecord, VmRecord
from manager.core.placement import HostCapacity, PlacementSnapshot
from manager.core.states import HostState, VmState


class ShutdownAction(Enum):
    """What a host's shutdown does with its running highly available VMs."""

    SAVE = "save"  # save each, restore it on another node (Windows Server 2008 R2's default)
    SHUTDOWN = "shutdown"  # shut each guest down, start it on another node
    LIVE = "live"  # live-migrate each where the host allows, else save and restore


class StepKind(Enum):
    LIVE_MIGRATE = "live_migrate"  # running HA VM, live-capable host: moves without a pause
    QUICK_MIGRATE = "quick_migrate"  # HA VM saved and restored on the target (at rest: just moves)
    SHUT_DOWN_AND_MOVE = "shut_down_and_move"  # guest shut down, moved, started on the target
    SHUT_DOWN = "shut_down"  # not HA: shut down cleanly where it is
    TURN_OFF = "turn_off"  # not HA and paused: a frozen guest cannot shut itself down


@dataclass(frozen=True)
class ShutdownStep:
    vm_id: str
    vm_name: str
    kind: StepKind
    target: str = ""  # empty for a VM that stays


# Hosts a shutdown may start from: in service, or in maintenance (already drained).
_CAN_SHUT_DOWN = frozenset({HostState.OK, HostState.MAINTENANCE})
# VM states a shutdown can act on; any other (migrating, saving, ...) must settle first.
_MOVABLE = frozenset({VmState.RUNNING, VmState.PAUSED, VmState.STOPPED, VmState.SAVED})
_RUNS = frozenset({VmState.RUNNING, VmState.PAUSED})


def check_can_shut_down(host: HostRecord) -> None:
    if host.state not in _CAN_SHUT_DOWN:
        raise FailedPreconditionError(
            f"host {host.name} is {host.state.value}: only a host that is ok or in maintenance "
            "can be shut down"
        )


def _kind(vm: VmRecord, action: ShutdownAction, live_capable: bool) -> StepKind:
    if vm.state not in _RUNS:
        return StepKind.QUICK_MIGRATE  # at rest: only its ownership moves
    if action is ShutdownAction.LIVE and live_capable and vm.state is VmState.RUNNING:
        return StepKind.LIVE_MIGRATE
    if action is ShutdownAction.SHUTDOWN and vm.state is VmState.RUNNING:
        return StepKind.SHUT_DOWN_AND_MOVE
    return StepKind.QUICK_MIGRATE


def plan_shutdown(
    host: HostRecord,
    vms: Sequence[VmRecord],
    action: ShutdownAction,
    snapshot: PlacementSnapshot,
    *,
    max_vcpus_per_core: int = 8,
    live_hosts: Collection[str] | None = None,
) -> tuple[tuple[ShutdownStep, ...], tuple[tuple[str, str], ...]]:
    """The steps that empty `host`, and (VM name, why) for each VM that blocks the shutdown.

    Running VMs live-migrate (with ShutdownAction.LIVE) where the capabilities of both
    the host and the VM's target allow it (`live_hosts`: the hosts that can; None when
    every target can), else quick. Purely computational. The snapshot is updated after
    each choice, so two VMs never count the same room; VMs at rest need no memory on
    their target.
    """
    mine = sorted((vm for vm in vms if vm.host == host.name), key=lambda v: (-v.memory_mb, v.name))
    room: dict[str, HostCapacity] = {
        h.name: h for h in snapshot.hosts if h.cluster == host.cluster and h.name != host.name
    }
    live_capable = host.capabilities.live_migration if live_hosts is None else host.name in live_hosts
    steps: list[ShutdownStep] = []
    stuck: list[tuple[str, str]] = []
    for vm in mine:
        if vm.migration_id is not None:
            stuck.append((vm.name, f"its migration {vm.migration_id} must end first"))
            continue
        if vm.state not in _MOVABLE:
            if vm.state in (VmState.FAILED, VmState.MISSING, VmState.UNKNOWN, VmState.WAITING):
                continue  # nothing of it runs here
            stuck.append((vm.name, f"it is {vm.state.value}: wait until that ends"))
            continue
        if not vm.highly_available or host.cluster is None:
            if vm.state is VmState.RUNNING:
                steps.append(ShutdownStep(vm.id, vm.name, StepKind.SHUT_DOWN))
            elif vm.state is VmState.PAUSED:
                steps.append(ShutdownStep(vm.id, vm.name, StepKind.TURN_OFF))
            continue
        request = restart_request(vm, max_vcpus_per_core)
        if vm.state not in _RUNS:
            request = replace(request, memory_mb=0, cpus=0)
        decision, why = place_by_owners(room, vm, sorted(room), request)
        if decision is None or decision.host is None:
            stuck.append((vm.name, why or "its cluster has no other node"))
            continue
        if vm.state in _RUNS:
            room[decision.host] = placed_on(room[decision.host], vm)
        target_live = live_hosts is None or decision.host in live_hosts
        kind = _kind(vm, action, live_capable and target_live)
        steps.append(ShutdownStep(vm.id, vm.name, kind, decision.host))
    return tuple(steps), tuple(stuck)
