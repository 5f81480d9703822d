"""The isolation decision and a host's leave on virtual time: when a cut-off host responds,
and what a host does to its guests when it responds or leaves."""

from __future__ import annotations

import pytest

from node_agent.core.config import IsolationResponse
from node_agent.core.errors import FailedPrecondition, InvalidArgument
from node_agent.core.isolation import isolation_actions, judge_isolation
from node_agent.core.leave import check_can_leave, check_leave_reason, clean_shutdown_actions
from node_agent.core.power import Operation, PowerState

TIMEOUT = 15.0


def test_the_count_starts_at_the_last_contact_of_either_path() -> None:
    # The broker last echoed a beat at t=100; a management call came at t=110.
    assert not judge_isolation(124.9, 110.0, 100.0, TIMEOUT, False).isolated
    verdict = judge_isolation(125.0, 110.0, 100.0, TIMEOUT, False)
    assert verdict.isolated and verdict.respond and verdict.silent_for_s == 15.0
    # The broker's echoes alone keep the host from responding, and so do management calls.
    assert not judge_isolation(500.0, 100.0, 499.0, TIMEOUT, False).isolated
    assert not judge_isolation(500.0, 499.0, 100.0, TIMEOUT, False).isolated


def test_the_response_is_applied_once_per_episode() -> None:
    first = judge_isolation(130.0, 110.0, 100.0, TIMEOUT, responded=False)
    later = judge_isolation(140.0, 110.0, 100.0, TIMEOUT, responded=True)
    assert first.respond and later.isolated and not later.respond
    # Contact came back: the episode is over, and the next one responds again.
    assert not judge_isolation(141.0, 110.0, 140.5, TIMEOUT, responded=True).isolated


def test_a_contact_from_the_future_counts_as_none_missed() -> None:
    # A clock stepped back must not make the host believe it has been silent.
    verdict = judge_isolation(100.0, 105.0, 0.0, TIMEOUT, False)
    assert verdict.silent_for_s == 0.0 and not verdict.isolated


def test_actions_of_each_response() -> None:
    vms = [
        ("b", PowerState.PAUSED),
        ("a", PowerState.RUNNING),
        ("c", PowerState.STOPPED),
        ("d", PowerState.SAVED),
        ("e", PowerState.STARTING),
    ]
    assert isolation_actions(IsolationResponse.POWER_OFF, vms) == [
        ("a", Operation.TURN_OFF),
        ("b", Operation.TURN_OFF),
    ]
    assert isolation_actions(IsolationResponse.SHUT_DOWN, vms) == [
        ("a", Operation.SHUTDOWN),
        ("b", Operation.TURN_OFF),
    ]
    assert isolation_actions(IsolationResponse.LEAVE_RUNNING, vms) == []
    # A host that leaves stops its guests as a graceful isolation response does.
    assert clean_shutdown_actions(vms) == isolation_actions(IsolationResponse.SHUT_DOWN, vms)


def test_reasons_and_conditions_of_a_leave() -> None:
    assert check_leave_reason("  maintenance window ") == "maintenance window"
    assert check_leave_reason("") == ""
    with pytest.raises(InvalidArgument) as caught:
        check_leave_reason("x" * 201)
    assert caught.value.message == "reason: must be at most 200 characters, got 201"
    with pytest.raises(InvalidArgument) as caught:
        check_leave_reason("two\nlines")
    assert caught.value.message == "reason: must be one line of printable characters"

    check_can_leave("node1", [])
    with pytest.raises(FailedPrecondition) as refused:
        check_can_leave("node1", ["web2", "web1"])
    assert refused.value.message == (
        "host node1 cannot shut down while web1, web2 are being live-migrated; "
        "wait until the migration has ended"
    )
