"""The power-state table and the meaning of each operation in each state."""

from __future__ import annotations

import logging

import pytest

from node_agent.core.errors import FailedPrecondition
from node_agent.core.power import (
    HOLDS_MEMORY,
    TRANSITIONS,
    Action,
    IllegalTransition,
    Operation,
    PowerState,
    check_deletable,
    plan_operation,
    transition,
)

S = PowerState


def test_every_state_has_a_row_and_every_edge_a_reason() -> None:
    assert set(TRANSITIONS) == set(PowerState)
    for old, edges in TRANSITIONS.items():
        for new, why in edges.items():
            assert new in PowerState and new is not old
            assert why.strip(), f"{old} => {new} has no reason"


def test_legal_transition_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert transition("web1", S.RUNNING, S.PAUSED) is S.PAUSED
    assert "VM web1: running => paused" in caplog.text


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.STOPPED, S.RUNNING),
        (S.SAVED, S.RUNNING),
        (S.PAUSED, S.PAUSED),
        (S.STOPPED, S.SAVED),
        (S.STARTING, S.SAVED),  # a failed restore fails the VM; it does not pretend to be saved
    ],
)
def test_illegal_transition_is_refused(old: PowerState, new: PowerState) -> None:
    with pytest.raises(IllegalTransition, match=f"from {old.value} to {new.value}"):
        transition("web1", old, new)


def test_memory_is_held_only_while_the_guest_exists() -> None:
    # A skeleton arriving by live migration reserves the memory its guest will need.
    assert HOLDS_MEMORY == {S.STARTING, S.RUNNING, S.PAUSED, S.SAVING, S.MIGRATING}


ALLOWED = {
    (Operation.START, S.STOPPED): Action.POWER_ON,
    (Operation.START, S.FAILED): Action.POWER_ON,
    (Operation.START, S.SAVED): Action.RESTORE,
    (Operation.RESTORE, S.SAVED): Action.RESTORE,
    (Operation.SHUTDOWN, S.RUNNING): Action.SHUTDOWN,
    (Operation.TURN_OFF, S.RUNNING): Action.TURN_OFF,
    (Operation.TURN_OFF, S.PAUSED): Action.TURN_OFF,
    (Operation.TURN_OFF, S.FAILED): Action.TURN_OFF,
    (Operation.SAVE, S.RUNNING): Action.SAVE,
    (Operation.SAVE, S.PAUSED): Action.SAVE,
    (Operation.PAUSE, S.RUNNING): Action.PAUSE,
    (Operation.RESUME, S.PAUSED): Action.RESUME,
}


@pytest.mark.parametrize("operation", list(Operation))
@pytest.mark.parametrize("state", list(PowerState))
def test_plan_matrix(operation: Operation, state: PowerState) -> None:
    expected = ALLOWED.get((operation, state))
    if expected is None:
        with pytest.raises(FailedPrecondition) as info:
            plan_operation("web1", state, operation)
        assert info.value.code == "FAILED_PRECONDITION"
        assert info.value.message.startswith(f"VM web1 is {state.value}; it cannot be ")
    else:
        assert plan_operation("web1", state, operation) is expected


def test_refusal_reads_as_a_sentence() -> None:
    with pytest.raises(FailedPrecondition, match=r"^VM web1 is stopped; it cannot be paused$"):
        plan_operation("web1", S.STOPPED, Operation.PAUSE)


def test_every_allowed_plan_starts_with_a_legal_edge() -> None:
    first_step = {
        Action.POWER_ON: S.STARTING,
        Action.RESTORE: S.STARTING,
        Action.SHUTDOWN: S.STOPPED,
        Action.TURN_OFF: S.STOPPED,
        Action.SAVE: S.SAVING,
        Action.PAUSE: S.PAUSED,
        Action.RESUME: S.RUNNING,
    }
    for (_, state), action in ALLOWED.items():
        assert first_step[action] in TRANSITIONS[state], (state, action)


@pytest.mark.parametrize("state", list(PowerState))
def test_only_stopped_saved_or_failed_vms_can_be_deleted(state: PowerState) -> None:
    if state in (S.STOPPED, S.SAVED, S.FAILED):
        check_deletable("web1", state)
    else:
        with pytest.raises(FailedPrecondition, match="cannot be deleted"):
            check_deletable("web1", state)


def test_a_failed_vm_is_turned_off_to_stopped() -> None:
    assert plan_operation("web1", S.FAILED, Operation.TURN_OFF) is Action.TURN_OFF
    assert transition("web1", S.FAILED, S.STOPPED) is S.STOPPED
