"""The isolation decision on virtual time: when a cut-off host responds, and how."""

from __future__ import annotations

from node_agent.core.config import IsolationResponse
from node_agent.core.isolation import isolation_actions, judge_isolation
from node_agent.core.power import Operation, PowerState

TIMEOUT = 15.0


def test_connected_to_the_broker_is_never_isolated() -> None:
    verdict = judge_isolation(1000.0, 0.0, 0.0, True, TIMEOUT, False)
    assert not verdict.isolated and not verdict.respond


def test_isolated_only_when_both_paths_are_silent_past_the_timeout() -> None:
    # The broker went away at t=100; a management call came at t=110.
    assert not judge_isolation(124.0, 110.0, 100.0, False, TIMEOUT, False).isolated
    verdict = judge_isolation(125.5, 110.0, 100.0, False, TIMEOUT, False)
    assert verdict.isolated and verdict.respond and verdict.silent_for_s == 15.5
    # Management calls alone keep the host from responding.
    assert not judge_isolation(500.0, 499.0, 100.0, False, TIMEOUT, False).isolated


def test_the_response_is_applied_once_per_episode() -> None:
    first = judge_isolation(130.0, 110.0, 100.0, False, TIMEOUT, responded=False)
    later = judge_isolation(140.0, 110.0, 100.0, False, TIMEOUT, responded=True)
    assert first.respond and later.isolated and not later.respond


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
