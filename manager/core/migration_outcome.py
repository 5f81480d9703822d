"""Where a VM's record goes once a migration ends: the source, the destination, or
nowhere definite until a refresh or a failover settles it.

Purely computational, no side effects. The migration service learns how a migration
ended (an outcome from `manager.core.migration.settle`, the agents' reports) and asks
these functions for the VM's new record; it holds the VM's lock and writes what they
return. Keeping the rules here lets each one be tested without a single agent: which
host the record names, which lease generation a later take-over must beat, and when a
failover that already runs for the destination inherits the VM.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from manager.core.errors import FailedPreconditionError
from manager.core.migration import Outcome, taken_by_failover
from manager.core.model import HostRecord, MigrationRecord, ReportedVm, RestartPriority, VmRecord
from manager.core.reconcile import record_observed
from manager.core.states import HostState, VmState

# Hosts whose failover already collected the VMs recorded on them.
FAILING_OVER = frozenset({HostState.FENCING, HostState.FENCED})


def released(vm: VmRecord, migration: MigrationRecord) -> VmRecord:
    """The VM let go by the migration. A take-over after it must be newer than the lease
    the migration reserved, which its destination may hold already."""
    return replace(
        vm,
        migration_id=None if vm.migration_id == migration.id else vm.migration_id,
        lease_generation=max(vm.lease_generation, migration.lease_generation),
    )


def moved_to_destination(
    vm: VmRecord,
    migration: MigrationRecord,
    target: HostRecord,
    report: ReportedVm | None,
    release: bool = True,
) -> VmRecord:
    """The VM on the destination, holding the migration's lease (or the newer one the
    destination reports). Without a report the VM is taken to run there, as a live
    migration leaves it. `release` ends the migration's hold on the VM."""
    moved = replace(
        vm,
        host=target.name,
        lease_generation=max(migration.lease_generation, report.lease_generation if report else 0),
        storage=(report.storage if report else None) or migration.storage or vm.storage,
        migration_id=None if release and vm.migration_id == migration.id else vm.migration_id,
        highly_available=available_after(vm, migration),
    )
    state = report.state if report is not None else VmState.RUNNING
    return record_observed(moved, state, report.reason if report else "")


def available_after(vm: VmRecord, migration: MigrationRecord) -> bool:
    """A transfer across the cluster boundary makes the VM highly available or ends it."""
    after = migration.highly_available_after
    return vm.highly_available if after is None else after


def as_reported(vm: VmRecord, report: ReportedVm) -> VmRecord:
    """The VM as the host that has it reports it (the source it stayed on, or the
    destination that restored it), no longer migrating."""
    return replace(record_observed(vm, report.state, report.reason), migration_id=None)


def handed_over(
    vm: VmRecord, migration: MigrationRecord, report: ReportedVm | None, target: HostRecord | None
) -> VmRecord:
    """The source let the VM go, which it does only once the lease moved: the VM is the
    destination's whether or not that host confirms it. Its refresh records what it
    has; if that host failed, its failover restarts the VM. A failover already under
    way for it collected its VMs before this one arrived, so this one is marked to join
    those it restarts."""
    cluster = target.cluster if target is not None else None
    if report is not None:
        state, reason = report.state, report.reason
    else:
        state = VmState.UNKNOWN
        reason = f"host {migration.source} let it go to {migration.destination}, which did not confirm it"
    moved = replace(
        vm,
        host=migration.destination,
        lease_generation=max(
            vm.lease_generation, migration.lease_generation, report.lease_generation if report else 0
        ),
        storage=(report.storage if report else None) or migration.storage or vm.storage,
        migration_id=None,
        highly_available=available_after(vm, migration),
    )
    moved = record_observed(moved, state, reason)
    if (
        target is not None
        and target.state in FAILING_OVER
        and cluster is not None
        and moved.highly_available
        and moved.restart_priority is not RestartPriority.NONE
    ):
        moved = replace(moved, failover_from=target.name)
    return moved


def whereabouts_unknown(
    vm: VmRecord, migration: MigrationRecord, source_report: ReportedVm | None
) -> VmRecord:
    """Neither host says it has the VM for sure: it stays recorded on the source as
    unknown, for the failover or the next refresh to settle. The destination may hold
    the migration's lease, so a take-over must be newer."""
    reason = (
        f"host {migration.source} reports it {source_report.state.value} after the migration"
        if source_report is not None
        else f"host {migration.source} did not answer after the migration"
    )
    return replace(
        record_observed(vm, VmState.UNKNOWN, reason),
        migration_id=None,
        lease_generation=max(vm.lease_generation, migration.lease_generation),
    )


@dataclass(frozen=True)
class Conclusion:
    """How a migration that ended without a clean verdict is settled."""

    outcome: Outcome  # UNKNOWN when a failover took the VM, whatever the agents said
    vm: VmRecord | None  # the VM's new record; None when there is no VM (it was deleted)
    taken_by_failover: bool  # the failover of a failed host owns the VM's record


def conclude(
    vm: VmRecord | None,
    migration: MigrationRecord,
    outcome: Outcome,
    source_report: ReportedVm | None,
    target_report: ReportedVm | None,
    target: HostRecord | None,
) -> Conclusion:
    """The VM's record after the migration ended with `outcome`, given what the source
    and the destination (`target`, None if it no longer exists) reported.

    A failover that took the VM while the migration ran wins: the migration only lets
    go of it. A VM moved to a destination that no longer exists cannot be recorded
    there (FailedPreconditionError).
    """
    if vm is None:
        return Conclusion(outcome, None, False)
    if taken_by_failover(vm, migration):
        return Conclusion(Outcome.UNKNOWN, released(vm, migration), True)
    if outcome is Outcome.MOVED:
        if target is None:
            raise FailedPreconditionError(f"host {migration.destination} no longer exists")
        return Conclusion(outcome, moved_to_destination(vm, migration, target, target_report), False)
    if outcome is Outcome.STAYED and source_report is not None:
        return Conclusion(outcome, as_reported(vm, source_report), False)
    if outcome is Outcome.HANDED_OVER:
        return Conclusion(outcome, handed_over(vm, migration, target_report, target), False)
    return Conclusion(outcome, whereabouts_unknown(vm, migration, source_report), False)


def where_it_is(migration: MigrationRecord, outcome: Outcome, failover: bool) -> str:
    """The end of a failed migration's sentence: where the VM is now (a migration that
    moved the VM did not fail)."""
    if failover:
        return "the failover settles where it runs"
    return {
        Outcome.STAYED: f"it stays on {migration.source}",
        Outcome.HANDED_OVER: (
            f"host {migration.source} let it go, so it is recorded on {migration.destination} for "
            "that host's refresh or failover to settle"
        ),
        Outcome.UNKNOWN: f"it stays recorded on {migration.source} for the failover to settle",
    }.get(outcome, f"it runs on {migration.destination}")
