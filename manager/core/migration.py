"""Migration decisions: which kind of move, whether it may start, how it ended.

Purely computational, no side effects: the migration service asks these functions
and performs the agent calls. Keeping the decisions here makes the slot queue, the
checks before a move and the settling of a migration a manager restart interrupted
testable without a single agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from manager.core.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from manager.core.levels import LevelTraits
from manager.core.migration_phase import MigrationPhase
from manager.core.model import (
    HostRecord,
    MigrationKind,
    MigrationProgress,
    MigrationRecord,
    ReportedVm,
    StorageKind,
    StorageLocation,
    VmRecord,
)
from manager.core.placement import HostCapacity
from manager.core.profiles import HostCapabilities
from manager.core.states import HostState, MigrationState, VmState

MB = 1_000_000
NO_CONVERGE_POLICIES = ("quick", "fail")
# States in which a VM can be moved at all: it is somewhere definite.
MOVABLE_STATES = frozenset({VmState.RUNNING, VmState.PAUSED, VmState.SAVED, VmState.STOPPED})


def choose_kind(
    source: HostCapabilities,
    vm_state: VmState,
    quick: bool,
    destination: HostCapabilities | None = None,
) -> MigrationKind:
    """Live where the guest runs and both hosts offer live migration; quick otherwise.
    The hosts are given by their capabilities (`HostRecord.capabilities`)."""
    hosts = (source,) if destination is None else (source, destination)
    live = all(h.live_migration for h in hosts)
    if live and vm_state is VmState.RUNNING and not quick:
        return MigrationKind.LIVE
    return MigrationKind.QUICK


def moves_live(host: HostRecord, level: LevelTraits) -> bool:
    """Whether the host takes part in live migrations: it can, and the VMM level manages them."""
    return host.capabilities.live_migration and level.live_migration


def no_live_migration(host: HostRecord, level: LevelTraits) -> str:
    """Why `host` cannot take part in a live migration, for a refusal's sentence."""
    if not level.live_migration:
        return f"{level.name} manages quick migration only"
    if host.reported_capabilities is None:
        return f"host {host.name} runs {host.profile}, which has no live migration"
    return f"host {host.name} has no live migration (as its agent reports)"


def check_vm_movable(vm: VmRecord) -> str:
    """The VM's host, or FailedPreconditionError saying why the VM cannot move now."""
    if vm.migration_id:
        raise FailedPreconditionError(f"VM {vm.name} is already migrating (migration {vm.migration_id})")
    if vm.failover_from is not None:
        raise FailedPreconditionError(
            f"VM {vm.name} is being restarted away from failed host {vm.failover_from}"
        )
    if vm.host is None:
        raise FailedPreconditionError(f"VM {vm.name} has no host")
    if vm.state not in MOVABLE_STATES:
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}: only a running, paused, saved or stopped VM can move"
        )
    return vm.host


def check_destination(
    vm: VmRecord, source: HostRecord | None, destination: HostRecord | None, name: str
) -> None:
    """Refuse a destination that does not exist, is not ok, or is the source itself."""
    if not name:
        raise InvalidArgumentError("host: must name the destination host")
    if destination is None:
        raise NotFoundError(f"host {name} does not exist")
    if source is None:
        raise FailedPreconditionError(f"VM {vm.name} is on host {vm.host}, which no longer exists")
    if destination.name == source.name:
        raise FailedPreconditionError(f"VM {vm.name} already is on host {name}")
    if source.state is not HostState.STOPPING:  # a host being shut down hands its VMs away
        check_host_ok(vm, source, "source")
    check_host_ok(vm, destination, "destination")
    if not vm.policy.may_run_on(destination.name):
        raise FailedPreconditionError(
            f"VM {vm.name} cannot move to {destination.name}: it is not one of its possible owners "
            f"({', '.join(vm.policy.possible_owners)})"
        )


def check_host_ok(vm: VmRecord, host: HostRecord, role: str) -> None:
    if host.state is not HostState.OK or not host.address:
        why = f" ({host.state_reason})" if host.state_reason else ""
        raise FailedPreconditionError(
            f"VM {vm.name} cannot move: {role} host {host.name} is {host.state.value}{why}"
        )


def check_ha_fits(vm: VmRecord, destination: HostRecord, remedy: str = "choose a standalone host") -> None:
    """A VM that is not highly available never lands on a cluster node, as placement rules;
    the refusal ends with `remedy`."""
    if destination.cluster is not None and not vm.highly_available:
        raise FailedPreconditionError(
            f"VM {vm.name} cannot move to {destination.name}: host {destination.name} is a node of "
            f"cluster {destination.cluster}, and a VM there must be highly available; VM {vm.name} "
            f"is not ({remedy})"
        )


def check_same_cluster(vm: VmRecord, source: HostRecord, destination: HostRecord) -> None:
    """Live and quick migration move a VM between nodes of one cluster."""
    if source.cluster is None or destination.cluster is None:
        standalone = source.name if source.cluster is None else destination.name
        raise FailedPreconditionError(
            f"VM {vm.name} cannot move from {source.name} to {destination.name}: {standalone} is a "
            f"standalone host, and only nodes of one cluster share the VM's storage "
            f"(use `havm vm migrate-storage {vm.name} --to {destination.name}` to copy its files)"
        )
    if source.cluster != destination.cluster:
        raise FailedPreconditionError(
            f"VM {vm.name} cannot move from {source.name} (cluster {source.cluster}) to "
            f"{destination.name} (cluster {destination.cluster}): both must be nodes of one cluster"
        )


def choose_storage(capacity: HostCapacity, vm: VmRecord) -> StorageLocation | None:
    """Where the files go on another host when the request does not say: as placement
    chooses, a CSV volume for a highly available VM on a cluster node, else the local
    disk with most room; None when nothing there has room for the disk."""
    kind = StorageKind.CSV if vm.highly_available and capacity.cluster is not None else StorageKind.LOCAL_DISK
    rooms = [s for s in capacity.storage if s.kind is kind and s.free_gb >= vm.disk_gb]
    if not rooms:
        return None
    best = max(rooms, key=lambda s: (s.free_gb, s.name))
    return StorageLocation(kind, best.name)


def refusal(vm: VmRecord, destination: str, reasons: Sequence[str]) -> FailedPreconditionError:
    return FailedPreconditionError(f"VM {vm.name} cannot move to {destination}: {'; '.join(reasons)}")


# --- the live-migration slots --------------------------------------------------------


@dataclass(frozen=True)
class SlotRequest:
    migration_id: str
    source: str
    destination: str


def admit(waiting: Sequence[SlotRequest], running: Sequence[SlotRequest], limit: int) -> list[str]:
    """Which waiting migrations may start now, first come first served.

    A host takes part in at most `limit` live migrations at once, as source or as
    destination. A migration that must wait keeps its hosts for itself: a later one
    sharing a host does not overtake it, while one on other hosts does.
    """
    load: dict[str, int] = {}
    for slot in running:
        for host in (slot.source, slot.destination):
            load[host] = load.get(host, 0) + 1
    blocked: set[str] = set()
    admitted: list[str] = []
    for slot in waiting:
        hosts = (slot.source, slot.destination)
        if any(h in blocked or load.get(h, 0) >= limit for h in hosts):
            blocked.update(hosts)
            continue
        for host in hosts:
            load[host] = load.get(host, 0) + 1
        admitted.append(slot.migration_id)
    return admitted


# --- progress ------------------------------------------------------------------------


def progress_message(progress: MigrationProgress) -> str:
    """`pass 3: 412 MB/s, 12.0 MB remaining`, or the phase when no pass runs."""
    phase = progress.phase
    if phase in (MigrationPhase.PRE_COPY, MigrationPhase.DISK_COPY) and progress.passes > 0:
        what = "disk copy" if phase is MigrationPhase.DISK_COPY else f"pass {progress.passes}"
        return f"{what}: {progress.mb_per_s:.0f} MB/s, {progress.bytes_remaining / MB:.1f} MB remaining"
    if phase is MigrationPhase.BLACKOUT:
        return f"blackout after {progress.passes} pass(es): last pages and device state"
    return (phase.value if phase is not None else "unknown").replace("_", " ")


def progress_percent(progress: MigrationProgress, memory_bytes: int) -> int:
    """Job progress: the first pass fills most of the bar, later passes what is left."""
    if progress.phase is MigrationPhase.COMPLETED:
        return 99
    if progress.phase is MigrationPhase.BLACKOUT:
        return 95
    if progress.phase is MigrationPhase.PREPARING or memory_bytes <= 0:
        return 5
    left = min(1.0, progress.bytes_remaining / memory_bytes)
    return max(5, min(94, int(10 + 84 * (1.0 - left))))


# --- settling a migration after the fact ---------------------------------------------


class Outcome(Enum):
    MOVED = "moved"  # the destination holds the VM with the new lease
    STAYED = "stayed"  # the source still holds the VM
    # The source answered without the VM: it lets go only once the lease moved, so the
    # VM belongs to the destination even though that host does not confirm it.
    HANDED_OVER = "handed_over"
    UNKNOWN = "unknown"  # neither says so: failover and refresh settle it


def holds_new_lease(report: ReportedVm | None, generation: int) -> bool:
    """Whether a host's copy is the one that owns the VM after the move."""
    return report is not None and report.lease_generation >= generation > 0 and report.state in MOVABLE_STATES


def settle(
    source: ReportedVm | None,
    destination: ReportedVm | None,
    generation: int,
    source_let_go: bool = False,
) -> Outcome:
    """Where the VM is after a migration ended without a verdict (an error, a restart).

    The destination's copy counts only once it holds the newer lease: a skeleton that
    was never committed holds none, and the source's copy is fenced the moment it does.
    `source_let_go` says the source answered that it no longer has the VM, which it
    does only after the lease moved to the destination.
    """
    if holds_new_lease(destination, generation):
        return Outcome.MOVED
    if source is not None and source.state in MOVABLE_STATES:
        return Outcome.STAYED
    if source is None and source_let_go:
        return Outcome.HANDED_OVER
    return Outcome.UNKNOWN


def still_moving(source: ReportedVm | None, migration_id: str) -> bool:
    """The source agent still works on this migration (it runs to its end on its own)."""
    return source is not None and source.migration_id == migration_id


def is_open(migration: MigrationRecord | None) -> bool:
    return migration is not None and migration.state in (MigrationState.QUEUED, MigrationState.RUNNING)


def newest_generation(vm: VmRecord, migration: MigrationRecord | None) -> int:
    """The newest lease generation the VM's copies may hold: its record's, or the one an
    open migration of the VM reserved for its destination (which may hold it already).
    A take-over outside that migration must hold a newer one, or storage refuses it as
    stale, or worse, two copies hold the same generation."""
    if is_open(migration) and migration is not None and migration.vm_id == vm.id:
        return max(vm.lease_generation, migration.lease_generation)
    return vm.lease_generation


def taken_by_failover(vm: VmRecord, migration: MigrationRecord) -> bool:
    """Whether the failover of a failed host took the VM while the migration ran: it
    marked the VM, restarted it with a lease newer than the migration's, or put it on a
    host that is neither end of the migration. The VM's record is then the failover's."""
    return (
        vm.failover_from is not None
        or vm.lease_generation > migration.lease_generation
        or vm.host not in (migration.source, migration.destination)
    )
