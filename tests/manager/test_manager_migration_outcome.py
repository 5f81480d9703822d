"""Where a VM's record goes once a migration ends, decided without an agent: the
destination when it holds the new lease, the source when it still has the VM, the
destination when the source let it go, nowhere definite otherwise; and a failover that
took the VM meanwhile always wins."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from havm.contract.hosts import CpuSpec
from manager.core.errors import FailedPreconditionError
from manager.core.migration import Outcome
from manager.core.migration_outcome import (
    as_reported,
    conclude,
    handed_over,
    moved_to_destination,
    released,
    where_it_is,
    whereabouts_unknown,
)
from manager.core.model import (
    HostRecord,
    MigrationKind,
    MigrationRecord,
    ReportedVm,
    RestartPriority,
    StorageKind,
    StorageLocation,
    VmRecord,
)
from manager.core.states import HostState, MigrationState, VmState

NOW = datetime(2024, 1, 1, tzinfo=UTC)
CSV = StorageLocation(StorageKind.CSV, "csv1")


def host(name: str, state: HostState = HostState.OK) -> HostRecord:
    cpu = CpuSpec("GenuineIntel", "Intel Xeon X5570", (), 8, 2933)
    return HostRecord(
        name, "c1", "hyperv-2008r2", "127.0.0.1:1", cpu, 32768, 2048, 30000, (), (), (), state=state
    )


def vm(**fields: object) -> VmRecord:
    record = VmRecord(
        "id1",
        "web1",
        "node1",
        VmState.MIGRATING,
        True,
        512,
        1,
        10,
        CSV,
        lease_generation=3,
        migration_id="m1",
    )
    return replace(record, **fields)  # type: ignore[arg-type]


def migration(**fields: object) -> MigrationRecord:
    record = MigrationRecord(
        "m1", "id1", "web1", MigrationKind.LIVE, MigrationState.RUNNING, "node1", "node2", NOW, NOW,
        lease_generation=4,
    )  # fmt: skip
    return replace(record, **fields)  # type: ignore[arg-type]


def report(state: VmState, generation: int, reason: str = "") -> ReportedVm:
    return ReportedVm(
        "id1", "web1", state, 512, 1, 10, CSV, (), True, reason=reason, lease_generation=generation
    )


def test_a_moved_vm_is_recorded_on_the_destination_with_the_newest_lease() -> None:
    moved = moved_to_destination(vm(), migration(), host("node2"), report(VmState.RUNNING, 5))
    assert (moved.host, moved.state, moved.lease_generation, moved.migration_id) == (
        "node2",
        VmState.RUNNING,
        5,
        None,
    )
    # No report (a live migration that completed): it runs there with the migration's lease.
    moved = moved_to_destination(vm(), migration(), host("node2"), None)
    assert (moved.host, moved.state, moved.lease_generation) == ("node2", VmState.RUNNING, 4)
    # A quick migration keeps its hold on the VM until it restored it.
    kept = moved_to_destination(vm(), migration(), host("node2"), report(VmState.SAVED, 4), release=False)
    assert (kept.host, kept.state, kept.migration_id) == ("node2", VmState.SAVED, "m1")


def test_the_migration_lets_go_only_of_its_own_hold_and_reserves_its_lease() -> None:
    let_go = released(vm(), migration())
    assert (let_go.migration_id, let_go.lease_generation) == (None, 4)
    other = released(vm(migration_id="m2", lease_generation=7), migration())
    assert (other.migration_id, other.lease_generation) == ("m2", 7)


def test_a_vm_as_its_host_reports_it() -> None:
    stayed = as_reported(vm(), report(VmState.RUNNING, 3, "back on the source"))
    assert (stayed.host, stayed.state, stayed.reason, stayed.migration_id) == (
        "node1",
        VmState.RUNNING,
        "back on the source",
        None,
    )


def test_a_vm_the_source_let_go_belongs_to_the_destination_even_unconfirmed() -> None:
    unconfirmed = handed_over(vm(), migration(), None, host("node2"))
    assert (unconfirmed.host, unconfirmed.state, unconfirmed.lease_generation) == (
        "node2",
        VmState.UNKNOWN,
        4,
    )
    assert "node1 let it go to node2, which did not confirm it" in unconfirmed.reason
    assert unconfirmed.failover_from is None
    confirmed = handed_over(vm(), migration(), report(VmState.RUNNING, 4), host("node2"))
    assert (confirmed.state, confirmed.failover_from) == (VmState.RUNNING, None)


def test_a_vm_handed_to_a_host_being_failed_over_joins_its_restarts() -> None:
    fenced = host("node2", HostState.FENCED)
    assert handed_over(vm(), migration(), None, fenced).failover_from == "node2"
    # Only a highly available VM that may be restarted at all.
    assert handed_over(vm(highly_available=False), migration(), None, fenced).failover_from is None
    no_restart = vm(restart_priority=RestartPriority.NONE)
    assert handed_over(no_restart, migration(), None, fenced).failover_from is None


def test_a_vm_nobody_confirms_stays_recorded_on_the_source_as_unknown() -> None:
    unknown = whereabouts_unknown(vm(), migration(), None)
    assert (unknown.host, unknown.state, unknown.lease_generation, unknown.migration_id) == (
        "node1",
        VmState.UNKNOWN,
        4,
        None,
    )
    assert unknown.reason == "host node1 did not answer after the migration"
    said = whereabouts_unknown(vm(), migration(), report(VmState.FAILED, 3))
    assert said.reason == "host node1 reports it failed after the migration"


@pytest.mark.parametrize(
    ("outcome", "source", "target", "host_name", "state"),
    [
        (Outcome.MOVED, None, report(VmState.RUNNING, 4), "node2", VmState.RUNNING),
        (Outcome.STAYED, report(VmState.RUNNING, 3), None, "node1", VmState.RUNNING),
        # Stayed, but the source said nothing of it: nothing is sure.
        (Outcome.STAYED, None, None, "node1", VmState.UNKNOWN),
        (Outcome.HANDED_OVER, None, None, "node2", VmState.UNKNOWN),
        (Outcome.UNKNOWN, None, None, "node1", VmState.UNKNOWN),
    ],
)
def test_conclude_places_the_vm_by_the_outcome(
    outcome: Outcome, source: ReportedVm | None, target: ReportedVm | None, host_name: str, state: VmState
) -> None:
    conclusion = conclude(vm(), migration(), outcome, source, target, host("node2"))
    assert conclusion.outcome is outcome and not conclusion.taken_by_failover
    assert conclusion.vm is not None
    assert (conclusion.vm.host, conclusion.vm.state, conclusion.vm.migration_id) == (host_name, state, None)


@pytest.mark.parametrize(
    "taken",
    [
        {"failover_from": "node1"},  # the failover marked it
        {"lease_generation": 5},  # restarted with a newer lease than the migration's
        {"host": "node3"},  # put on a host that is neither end
    ],
)
def test_a_failover_that_took_the_vm_wins_over_any_outcome(taken: dict[str, object]) -> None:
    conclusion = conclude(
        vm(**taken), migration(), Outcome.MOVED, None, report(VmState.RUNNING, 4), host("node2")
    )
    assert conclusion.outcome is Outcome.UNKNOWN and conclusion.taken_by_failover
    assert conclusion.vm is not None and conclusion.vm.migration_id is None
    assert conclusion.vm.host == vm(**taken).host  # the migration does not move it
    assert where_it_is(migration(), conclusion.outcome, True) == "the failover settles where it runs"


def test_a_vm_cannot_be_recorded_on_a_destination_that_is_gone() -> None:
    with pytest.raises(FailedPreconditionError, match="host node2 no longer exists"):
        conclude(vm(), migration(), Outcome.MOVED, None, report(VmState.RUNNING, 4), None)
    # Without a VM there is nothing to record, and nothing to refuse.
    assert conclude(None, migration(), Outcome.MOVED, None, None, None).vm is None


def test_where_a_failed_migration_leaves_the_vm() -> None:
    m = migration()
    assert where_it_is(m, Outcome.STAYED, False) == "it stays on node1"
    assert where_it_is(m, Outcome.UNKNOWN, False) == "it stays recorded on node1 for the failover to settle"
    assert where_it_is(m, Outcome.HANDED_OVER, False).startswith(
        "host node1 let it go, so it is recorded on node2"
    )
