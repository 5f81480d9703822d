"""Maintenance mode, VMM 2008 R2's way: which VMs leave a host, how, and where to.

Purely computational, no side effects: `plan_maintenance` reads the host, its VMs and
the room of the other nodes and returns one step per VM; the maintenance service
performs them through the migration and VM services and concludes. In `live` mode
every running highly available VM is live-migrated to another node of the cluster,
chosen by rating one after the other so that they spread; every other VM that holds
memory (not highly available, paused) is saved where it is. In `save` mode every such
VM is saved. Stopped and saved VMs stay as they are. The host enters maintenance only
if every step succeeds; a failed step leaves the VMs already moved where they went.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from manager.core.errors import FailedPreconditionError, InvalidArgumentError
from manager.core.failover import place_by_owners, placed_on, restart_request
from manager.core.inventory import ACTIVE_VM_STATES
from manager.core.levels import LevelTraits
from manager.core.migration import moves_live, no_live_migration
from manager.core.model import HostRecord, VmRecord
from manager.core.placement import PlacementSnapshot
from manager.core.states import HostState, VmState


class MaintenanceMode(Enum):
    LIVE = "live"  # live-migrate running HA VMs to other nodes; save the others
    SAVE = "save"  # save every running VM where it is


class StepAction(Enum):
    LIVE_MIGRATE = "live_migrate"  # to the step's target
    SAVE = "save"  # where it is


@dataclass(frozen=True)
class MaintenanceStep:
    vm_id: str
    vm_name: str
    action: StepAction
    target: str = ""  # the destination of a live migration


def default_mode(host: HostRecord, level: LevelTraits) -> MaintenanceMode:
    """`live` where the host live-migrates, `save` elsewhere."""
    return MaintenanceMode.LIVE if moves_live(host, level) else MaintenanceMode.SAVE


def check_can_start(host: HostRecord, mode: MaintenanceMode, level: LevelTraits) -> None:
    """Raise unless the host may enter maintenance in this mode."""
    if host.state is HostState.MAINTENANCE:
        raise FailedPreconditionError(f"host {host.name} is in maintenance mode already")
    if host.state is not HostState.OK:
        why = f" ({host.state_reason})" if host.state_reason else ""
        raise FailedPreconditionError(
            f"host {host.name} is {host.state.value}{why}: only a host that is ok can enter maintenance mode"
        )
    if mode is MaintenanceMode.LIVE and not moves_live(host, level):
        raise InvalidArgumentError(
            f"mode: {no_live_migration(host, level)}; use --mode save to save its VMs instead"
        )


def check_can_stop(host: HostRecord) -> None:
    if host.state is not HostState.MAINTENANCE:
        raise FailedPreconditionError(f"host {host.name} is {host.state.value}, not in maintenance mode")


def plan_maintenance(
    host: HostRecord,
    vms: Sequence[VmRecord],
    mode: MaintenanceMode,
    snapshot: PlacementSnapshot,
    *,
    max_vcpus_per_core: int = 8,
) -> tuple[tuple[MaintenanceStep, ...], tuple[tuple[str, str], ...]]:
    """The steps that empty `host`, and (VM name, why) for each HA VM no node can take.

    Targets come from placement over the other `ok` nodes of the host's cluster; the
    snapshot is updated after each choice so two VMs never count the same room.
    """
    mine = sorted((vm for vm in vms if vm.host == host.name and vm.state in ACTIVE_VM_STATES), key=_order)
    others = tuple(h for h in snapshot.hosts if h.cluster == host.cluster and h.name != host.name)
    room = {h.name: h for h in others}
    steps: list[MaintenanceStep] = []
    stuck: list[tuple[str, str]] = []
    for vm in mine:
        live = (
            mode is MaintenanceMode.LIVE
            and vm.highly_available
            and host.cluster is not None
            and vm.state is VmState.RUNNING
        )
        if not live:
            steps.append(MaintenanceStep(vm.id, vm.name, StepAction.SAVE))
            continue
        # The files stay on shared storage, as after a failover: the target needs no room
        # for them, only to see them.
        request = restart_request(vm, max_vcpus_per_core)
        decision, why = place_by_owners(room, vm, sorted(room), request)
        if decision is None or decision.host is None:
            stuck.append((vm.name, why or "it has no other node"))
            continue
        room[decision.host] = placed_on(room[decision.host], vm)
        steps.append(MaintenanceStep(vm.id, vm.name, StepAction.LIVE_MIGRATE, decision.host))
    return tuple(steps), tuple(stuck)


def _order(vm: VmRecord) -> tuple[int, str]:
    """Largest first, so the big VMs find room before the small ones fill it."""
    return (-vm.memory_mb, vm.name)
