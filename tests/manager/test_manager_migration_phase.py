"""The manager's migration phases: one table, a reason on every edge, one setter that
refuses anything else; and the wire enum names the same phases."""

from __future__ import annotations

import itertools
import logging

import pytest

from havm.v1 import manager_pb2
from manager.core.errors import IllegalTransitionError
from manager.core.migration_phase import MIGRATION_PHASE_TRANSITIONS, MigrationPhase, change_migration_phase

P = MigrationPhase
EDGES = [(old, new) for old, targets in MIGRATION_PHASE_TRANSITIONS.items() for new in targets]
NON_EDGES = [
    (old, new)
    for old, new in itertools.product(P, P)
    if old is not new and new not in MIGRATION_PHASE_TRANSITIONS[old]
]


def test_every_phase_has_a_row_and_every_edge_a_reason() -> None:
    assert set(MIGRATION_PHASE_TRANSITIONS) == set(P)
    for old, new in EDGES:
        reason = MIGRATION_PHASE_TRANSITIONS[old][new]
        assert reason.strip() and reason == reason.strip(), (old, new)


@pytest.mark.parametrize(("old", "new"), EDGES, ids=lambda p: p.value)
def test_every_edge_in_the_table_is_taken_and_logged(
    old: MigrationPhase, new: MigrationPhase, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="manager.core.migration_phase"):
        assert change_migration_phase("web1", old, new) is new
    assert f"migration of VM web1: {old.value} => {new.value}" in caplog.text
    assert MIGRATION_PHASE_TRANSITIONS[old][new] in caplog.text


@pytest.mark.parametrize(("old", "new"), NON_EDGES, ids=lambda p: p.value)
def test_every_other_change_is_refused_with_the_phases_named(
    old: MigrationPhase, new: MigrationPhase
) -> None:
    with pytest.raises(IllegalTransitionError) as refused:
        change_migration_phase("web1", old, new)
    assert refused.value.message == f"migration of VM web1 cannot go from phase {old.value} to {new.value}"


@pytest.mark.parametrize("phase", list(P), ids=lambda p: p.value)
def test_staying_in_a_phase_is_no_change(phase: MigrationPhase) -> None:
    assert change_migration_phase("web1", phase, phase) is phase


def reachable(start: MigrationPhase) -> set[MigrationPhase]:
    seen, todo = {start}, [start]
    while todo:
        for new in MIGRATION_PHASE_TRANSITIONS[todo.pop()]:
            if new not in seen:
                seen.add(new)
                todo.append(new)
    return seen


def test_every_phase_is_reachable_from_the_queue_and_can_still_complete() -> None:
    assert reachable(P.QUEUED) == set(P)
    for phase in P:
        assert P.COMPLETED in reachable(phase), phase
    assert MIGRATION_PHASE_TRANSITIONS[P.COMPLETED] == {}


def test_the_flows_walk_the_table() -> None:
    flows = {
        "live": [P.QUEUED, P.PREPARING, P.PRE_COPY, P.BLACKOUT, P.COMPLETED],
        "storage to another host": [P.QUEUED, P.PREPARING, P.DISK_COPY, P.PRE_COPY, P.BLACKOUT, P.COMPLETED],
        "files on one host": [P.QUEUED, P.PREPARING, P.COMPLETED],
        "quick": [
            P.QUEUED,
            P.PREPARING,
            P.SAVING,
            P.SAVED,
            P.TAKING_OVER,
            P.TAKEN_OVER,
            P.RESTORED,
            P.COMPLETED,
        ],
        "quick at rest": [P.QUEUED, P.PREPARING, P.TAKING_OVER, P.TAKEN_OVER, P.RESTORED, P.COMPLETED],
        "fallback": [P.QUEUED, P.PREPARING, P.PRE_COPY, P.QUICK, P.SAVING, P.SAVED, P.TAKING_OVER],
        "quick forward again after a restart": [P.RESTORED, P.TAKEN_OVER, P.RESTORED, P.COMPLETED],
    }
    for name, phases in flows.items():
        for old, new in itertools.pairwise(phases):
            assert new in MIGRATION_PHASE_TRANSITIONS[old], (name, old, new)
    # Nothing goes back to the queue, and a quick migration never turns live again.
    assert all(new is not P.QUEUED for _, new in EDGES)
    quick_steps = {P.QUICK, P.SAVING, P.SAVED, P.TAKING_OVER, P.TAKEN_OVER, P.RESTORED}
    live_phases = {P.DISK_COPY, P.PRE_COPY, P.BLACKOUT}
    assert not any(old in quick_steps and new in live_phases for old, new in EDGES)


def test_the_wire_enum_names_every_phase_and_nothing_else() -> None:
    names = {
        name.removeprefix("MANAGER_MIGRATION_PHASE_")
        for name in manager_pb2.ManagerMigrationPhase.keys()
        if name != "MANAGER_MIGRATION_PHASE_UNSPECIFIED"
    }
    assert names == {phase.name for phase in P}
    assert {phase.value for phase in P} == {phase.name.lower() for phase in P}  # the word users see
