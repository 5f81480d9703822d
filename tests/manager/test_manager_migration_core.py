"""Migration decisions without agents: the state table, the slot queue, the kind of a
move, how an interrupted migration is settled, and the topology's migration section."""

from __future__ import annotations

from typing import Any

import pytest

from havm.contract.fields import TopologyError
from havm.contract.topology import MigrationSettings, parse_topology, topology_to_dict
from manager.core.errors import IllegalTransitionError
from manager.core.migration import (
    Outcome,
    SlotRequest,
    admit,
    choose_kind,
    progress_message,
    settle,
    still_moving,
)
from manager.core.migration_phase import MigrationPhase
from manager.core.model import MigrationKind, MigrationProgress, ReportedVm
from manager.core.profiles import profile_capabilities
from manager.core.states import MIGRATION_TRANSITIONS, MigrationState, VmState, change_migration_state

M = MigrationState


def test_migration_state_table() -> None:
    assert change_migration_state("m", M.QUEUED, M.RUNNING) is M.RUNNING
    assert change_migration_state("m", M.RUNNING, M.COMPLETED) is M.COMPLETED
    assert change_migration_state("m", M.QUEUED, M.FAILED) is M.FAILED
    for final in (M.COMPLETED, M.FAILED):
        assert MIGRATION_TRANSITIONS[final] == frozenset()
        with pytest.raises(IllegalTransitionError, match="cannot go from"):
            change_migration_state("m", final, M.RUNNING)
    with pytest.raises(IllegalTransitionError):
        change_migration_state("m", M.QUEUED, M.COMPLETED)


def slot(mid: str, source: str, destination: str) -> SlotRequest:
    return SlotRequest(mid, source, destination)


def test_admit_keeps_each_host_within_the_limit_first_come_first_served() -> None:
    waiting = [slot("a", "n1", "n2"), slot("b", "n1", "n3"), slot("c", "n1", "n2"), slot("d", "n3", "n4")]
    assert admit(waiting, [], 2) == ["a", "b", "d"]
    # One running on n1: only one more may use n1; c waits, and d (n3) too, behind b.
    assert admit(waiting, [slot("x", "n1", "n4")], 2) == ["a"]
    # A waiting migration keeps its hosts: a later one sharing one does not overtake it.
    assert admit([slot("a", "n1", "n2"), slot("b", "n2", "n3")], [slot("x", "n1", "n4")], 1) == []
    assert admit([slot("a", "n1", "n2"), slot("b", "n3", "n4")], [slot("x", "n1", "n5")], 1) == ["b"]


def test_kind_of_a_move() -> None:
    assert (
        choose_kind(profile_capabilities("hyperv-2008r2"), VmState.RUNNING, quick=False) is MigrationKind.LIVE
    )
    assert choose_kind(profile_capabilities("esx"), VmState.RUNNING, quick=False) is MigrationKind.LIVE
    assert (
        choose_kind(profile_capabilities("hyperv-2008r2"), VmState.RUNNING, quick=True) is MigrationKind.QUICK
    )
    assert (
        choose_kind(profile_capabilities("hyperv-2008"), VmState.RUNNING, quick=False) is MigrationKind.QUICK
    )
    assert (
        choose_kind(profile_capabilities("hyperv-2008r2"), VmState.SAVED, quick=False) is MigrationKind.QUICK
    )


def report(state: VmState, generation: int, migration_id: str = "") -> ReportedVm:
    return ReportedVm(
        "id",
        "web1",
        state,
        512,
        1,
        10,
        None,
        (),
        True,
        lease_generation=generation,
        migration_id=migration_id,
    )


def test_settling_an_interrupted_migration() -> None:
    # The destination holds the new lease: the VM moved, whatever the source says.
    assert settle(None, report(VmState.RUNNING, 4), 4) is Outcome.MOVED
    assert settle(report(VmState.RUNNING, 3), report(VmState.RUNNING, 4), 4) is Outcome.MOVED
    # A skeleton without the lease does not count; the source still runs it.
    assert settle(report(VmState.RUNNING, 3), report(VmState.STOPPED, 0), 4) is Outcome.STAYED
    assert settle(None, None, 4) is Outcome.UNKNOWN
    assert still_moving(report(VmState.RUNNING, 3, "m1"), "m1")
    assert not still_moving(report(VmState.RUNNING, 3), "m1")


def test_progress_message() -> None:
    progress = MigrationProgress(MigrationPhase.PRE_COPY, 3, 10**9, 12_000_000, 412.4)
    assert progress_message(progress) == "pass 3: 412 MB/s, 12.0 MB remaining"
    assert progress_message(MigrationProgress(MigrationPhase.PREPARING, 0, 0, 0, 0.0)) == "preparing"
    disk = MigrationProgress(MigrationPhase.DISK_COPY, 1, 10**9, 12_000_000, 80.0)
    assert progress_message(disk) == "disk copy: 80 MB/s, 12.0 MB remaining"
    assert progress_message(MigrationProgress(MigrationPhase.BLACKOUT, 4, 0, 0, 0.0)).startswith(
        "blackout after 4"
    )
    # A phase a newer agent reports and this manager does not know.
    assert progress_message(MigrationProgress(None, 0, 0, 0, 0.0)) == "unknown"


def base(**migration: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": 1,
        "host_defaults": {
            "profile": "hyperv-2008r2",
            "cpu": {"vendor": "GenuineIntel", "model": "X", "features": [], "cores": 8, "mhz": 2933},
            "memory_mb": 32768,
        },
        "hosts": [{"name": "node1", "address": "127.0.0.1:5001", "migration_address": "10.0.0.1:5001"}],
    }
    if migration:
        data["migration"] = migration
    return data


def test_topology_migration_section_defaults_and_round_trip() -> None:
    plain = parse_topology(base())
    assert plain.migration == MigrationSettings(2, 10, 30, 0.0, "quick", 5.0)
    assert plain.host("node1").migration_address == "10.0.0.1:5001"
    custom = parse_topology(
        base(max_live_migrations_per_host=4, bandwidth_mb_per_s=125.5, no_converge="fail")
    )
    assert custom.migration.max_live_migrations_per_host == 4
    assert custom.migration.bandwidth_mb_per_s == 125.5
    assert custom.migration.no_converge == "fail"
    assert parse_topology(topology_to_dict(custom)) == custom
    filled = parse_topology(base()).with_migration_addresses({"node1": "127.0.0.1:9"})
    assert filled.host("node1").migration_address == "10.0.0.1:5001"  # its own is kept


@pytest.mark.parametrize(
    ("migration", "field", "problem"),
    [
        ({"max_live_migrations_per_host": 0}, "migration.max_live_migrations_per_host", "positive integer"),
        ({"max_passes": "ten"}, "migration.max_passes", "positive integer"),
        ({"blackout_budget_ms": -1}, "migration.blackout_budget_ms", "positive integer"),
        ({"bandwidth_mb_per_s": -5}, "migration.bandwidth_mb_per_s", "number >= 0"),
        ({"no_converge": "retry"}, "migration.no_converge", "one of quick, fail"),
        ({"stall_timeout_s": 0}, "migration.stall_timeout_s", "number > 0"),
        ({"max_pases": 3}, "migration.max_pases", "unknown field"),
    ],
)
def test_bad_migration_settings_name_the_field(migration: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(TopologyError) as caught:
        parse_topology(base(**migration))
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_bad_migration_address_names_the_field() -> None:
    data = base()
    data["hosts"][0]["migration_address"] = "nowhere"
    with pytest.raises(TopologyError) as caught:
        parse_topology(data)
    assert caught.value.field == "hosts[0].migration_address"
