"""The failure detector on virtual time: no sleeps, `now` is a number the test moves."""

from __future__ import annotations

from manager.core.detector import Action, FailureDetector, Verdict
from manager.core.states import HostState

OK = HostState.OK
HOSTS = ("node1", "node2")


def started(now: float = 0.0) -> FailureDetector:
    detector = FailureDetector(HOSTS, heartbeat_interval_s=1.0, threshold=5, now=now)
    detector.broker_up(now)
    return detector


def beat_all(detector: FailureDetector, start: float, end: float, hosts=HOSTS) -> None:
    t = start
    while t <= end:
        for h in hosts:
            detector.beat(h, "boot-1", t)
        t += 1.0


def actions(verdicts: list[Verdict], host: str) -> list[tuple[Action, HostState | None]]:
    return [(v.action, v.state) for v in verdicts if v.host == host]


def test_nothing_is_judged_before_a_full_window_of_listening() -> None:
    detector = started()
    assert detector.evaluate({"node1": OK, "node2": OK}, 4.9) == []
    # After the window, a host never heard is silent.
    verdicts = detector.evaluate({"node1": OK, "node2": OK}, 5.5)
    assert (Action.SET_STATE, HostState.SUSPECT) in actions(verdicts, "node1")


def test_crash_is_suspected_at_once_on_the_last_will() -> None:
    detector = started()
    beat_all(detector, 0.0, 10.0)
    detector.last_will("node1", 10.1)
    verdicts = detector.evaluate({"node1": OK, "node2": OK}, 10.2)
    assert actions(verdicts, "node1") == [(Action.SET_STATE, HostState.SUSPECT), (Action.PROBE, None)]
    assert actions(verdicts, "node2") == []
    assert "last will" in verdicts[0].reason


def test_silent_power_off_is_suspected_after_threshold_missed_beats_then_fenced() -> None:
    detector = started()
    beat_all(detector, 0.0, 10.0)
    beat_all(detector, 11.0, 20.0, hosts=("node2",))  # node1 silent from 10.0
    states = {"node1": OK, "node2": OK}
    assert actions(detector.evaluate(states, 14.9), "node1") == []
    verdicts = detector.evaluate(states, 15.1)
    assert (Action.PROBE, None) in actions(verdicts, "node1")
    after = detector.probe_result("node1", HostState.SUSPECT, False, "deadline exceeded", 15.5)
    assert [(v.action, v.state) for v in after] == [
        (Action.SET_STATE, HostState.NOT_RESPONDING),
        (Action.FENCE, None),
    ]


def test_freeze_and_thaw_inside_the_window_changes_nothing() -> None:
    detector = started()
    beat_all(detector, 0.0, 10.0)
    # node1 frozen from 10.0 to 14.0, then beats again.
    beat_all(detector, 11.0, 13.0, hosts=("node2",))
    beat_all(detector, 14.0, 20.0)
    states = {"node1": OK, "node2": OK}
    for t in (10.5, 12.0, 14.5, 16.0, 20.5):
        assert detector.evaluate(states, t) == []


def test_heartbeat_only_isolation_is_isolated_and_never_fenced() -> None:
    detector = started()
    beat_all(detector, 0.0, 10.0)
    verdicts = detector.evaluate({"node1": OK}, 15.5)
    assert (Action.SET_STATE, HostState.SUSPECT) in actions(verdicts, "node1")
    after = detector.probe_result("node1", HostState.SUSPECT, True, "", 15.6)
    assert [(v.action, v.state) for v in after] == [(Action.SET_STATE, HostState.ISOLATED)]
    # Isolated and still answering: probed again, no verdict beyond that.
    again = detector.evaluate({"node1": HostState.ISOLATED}, 17.0)
    assert actions(again, "node1") == [(Action.PROBE, None)]
    assert detector.probe_result("node1", HostState.ISOLATED, True, "", 17.1) == []
    # Heartbeats resume: back to ok.
    detector.beat("node1", "boot-1", 18.0)
    back = detector.evaluate({"node1": HostState.ISOLATED}, 18.1)
    assert actions(back, "node1") == [(Action.SET_STATE, OK)]


def test_isolated_host_that_stops_answering_probes_is_fenced() -> None:
    detector = started()
    beat_all(detector, 0.0, 10.0)
    after = detector.probe_result("node1", HostState.ISOLATED, False, "unavailable", 20.0)
    assert (Action.FENCE, None) in [(v.action, v.state) for v in after]


def test_broker_loss_gives_no_verdict_until_a_full_window_after_reconnect() -> None:
    detector = started()
    beat_all(detector, 0.0, 10.0)
    detector.broker_down(10.5)
    states = {"node1": OK, "node2": OK}
    for t in (12.0, 20.0, 40.0):
        assert detector.evaluate(states, t) == []
    detector.broker_up(40.0)
    assert detector.evaluate(states, 44.0) == []  # beats older than the connection say nothing yet
    beat_all(detector, 41.0, 46.0, hosts=("node2",))
    assert detector.evaluate(states, 44.9) == []
    verdicts = detector.evaluate(states, 45.1)
    assert actions(verdicts, "node2") == []
    assert (Action.SET_STATE, HostState.SUSPECT) in actions(verdicts, "node1")


def test_a_fenced_host_that_beats_again_is_refreshed() -> None:
    detector = started()
    beat_all(detector, 0.0, 10.0)
    beat_all(detector, 11.0, 21.0, hosts=("node2",))
    states = {"node1": HostState.FENCED, "node2": OK}
    assert detector.evaluate(states, 20.0) == []
    detector.beat("node1", "boot-2", 21.0)
    assert actions(detector.evaluate(states, 21.1), "node1") == [(Action.REFRESH, None)]
    assert detector.boot_id("node1") == "boot-2"


def test_beats_of_unknown_hosts_are_ignored() -> None:
    detector = started()
    detector.beat("intruder", "x", 1.0)
    assert not detector.alive("intruder", 1.0)


def test_a_host_cut_from_management_is_refreshed_then_fenced_once_its_beats_stop_too() -> None:
    detector = started()
    beat_all(detector, 0.0, 10.0)
    states = {"node1": HostState.NOT_RESPONDING, "node2": OK}
    assert actions(detector.evaluate(states, 10.5), "node1") == [(Action.REFRESH, None)]
    beat_all(detector, 11.0, 20.0, hosts=("node2",))
    assert actions(detector.evaluate(states, 16.0), "node1") == [(Action.PROBE, None)]
    after = detector.probe_result("node1", HostState.NOT_RESPONDING, False, "unavailable", 16.1)
    assert [(v.action, v.state) for v in after] == [(Action.FENCE, None)]
    answered = detector.probe_result("node1", HostState.NOT_RESPONDING, True, "", 16.1)
    assert [(v.action, v.state) for v in answered] == [(Action.REFRESH, None)]


def test_a_host_never_heard_and_not_responding_is_never_fenced() -> None:
    detector = started()
    beat_all(detector, 0.0, 20.0, hosts=("node2",))
    assert detector.evaluate({"node1": HostState.NOT_RESPONDING, "node2": OK}, 20.0) == []
