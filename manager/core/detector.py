"""The failure detector: from heartbeats, last wills and probes to host-state verdicts.

Purely computational, no side effects, no clock: every call takes `now` (seconds on
any monotonic scale), so a test drives it on virtual time. It keeps only what it
heard (the last beat of each host, last wills, the broker connection); the hosts'
states stay in the store, and `evaluate` is given them. The app performs what a
verdict asks (probe a host, change its state, fence it, refresh it).

Why a probe: heartbeats travel over MQTT, the management path is gRPC. A host whose
beats stop but whose agent answers a probe is isolated from the heartbeat network,
not dead; restarting its VMs elsewhere would run them twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from manager.core.states import HostState

# The reason a host is not_responding when the detector decided it: such a host is to
# be fenced even if the manager stopped before recording `fencing`.
PROBE_FAILED = "no heartbeat and the probe failed"


class Action(Enum):
    PROBE = "probe"  # ask the host over the management path, then call probe_result
    SET_STATE = "set_state"  # record `state` for the host
    FENCE = "fence"  # the host is dead: take its VMs away (state fencing)
    REFRESH = "refresh"  # the host is back: refresh it (which may clear it to ok)


@dataclass(frozen=True)
class Verdict:
    host: str
    action: Action
    reason: str
    state: HostState | None = None  # for SET_STATE
    # SET_STATE not_responding that a FENCE verdict follows: the decision is persisted.
    fence_follows: bool = False


@dataclass
class _Heard:
    last_beat: float | None = None
    boot_id: str = ""
    offline_at: float | None = None  # last will received and no beat since
    # Heard at least once (a beat, a status or a will) since this detector started: a
    # host never heard may simply not be deployed, and is never fenced for silence.
    ever: bool = False
    # When the detector learned of a host added while it runs: its silence counts from
    # then, not from when the detector started listening.
    known_since: float | None = None


class FailureDetector:
    """Beat memory plus the rules that turn silence into verdicts."""

    def __init__(self, hosts: Iterable[str], heartbeat_interval_s: float, threshold: int, now: float) -> None:
        self.window = heartbeat_interval_s * threshold
        self._heard: dict[str, _Heard] = {h: _Heard() for h in hosts}
        # Silence is measured from here for a host never heard: nothing is judged
        # before the manager has listened for one full window.
        self._listening_since: float | None = None
        self.broker_connected = False
        self.broker_down(now)

    # --- what is heard -------------------------------------------------------------

    def add_host(self, host: str, now: float | None = None) -> None:
        """Judge `host` from now on (a host added while the detector runs)."""
        self._heard.setdefault(host, _Heard(known_since=now))

    def hosts(self) -> set[str]:
        return set(self._heard)

    def remove_host(self, host: str) -> None:
        self._heard.pop(host, None)

    def beat(self, host: str, boot_id: str, now: float) -> None:
        heard = self._heard.get(host)
        if heard is None:
            return  # not a host of the topology: ignored
        heard.last_beat = now
        heard.offline_at = None
        heard.ever = True
        if boot_id:
            heard.boot_id = boot_id

    def last_will(self, host: str, now: float) -> None:
        """The broker published the host's `offline` status: its connection dropped."""
        heard = self._heard.get(host)
        if heard is not None:
            heard.offline_at = now
            heard.ever = True

    def broker_up(self, now: float) -> None:
        self.broker_connected = True
        self._listening_since = now

    def broker_down(self, now: float) -> None:
        del now
        self.broker_connected = False
        self._listening_since = None

    def judging(self, now: float) -> bool:
        """Whether verdicts may be given: connected, and listening for a full window."""
        return self._listening_since is not None and now - self._listening_since >= self.window

    def boot_id(self, host: str) -> str:
        heard = self._heard.get(host)
        return heard.boot_id if heard is not None else ""

    def alive(self, host: str, now: float) -> bool:
        """A beat within the window and no last will since."""
        heard = self._heard.get(host)
        if heard is None or heard.offline_at is not None or heard.last_beat is None:
            return False
        return now - heard.last_beat <= self.window

    def _silence(self, host: str, now: float) -> str | None:
        """Why the host counts as silent, or None."""
        heard = self._heard[host]
        if heard.offline_at is not None:
            return "its agent's connection to the broker dropped (last will: offline)"
        since = heard.last_beat
        if since is None or (self._listening_since is not None and since < self._listening_since):
            # A beat older than the current connection says nothing about now.
            since = max(since or 0.0, self._listening_since or 0.0)
        if heard.known_since is not None:
            since = max(since, heard.known_since)
        if now - since > self.window:
            return f"no heartbeat for {now - since:.1f} s (window {self.window:g} s)"
        return None

    # --- verdicts ------------------------------------------------------------------

    def evaluate(self, states: Mapping[str, HostState], now: float) -> list[Verdict]:
        """What to do about each host now, given the states the store records."""
        if not self.judging(now):
            return []
        verdicts: list[Verdict] = []
        for host, state in sorted(states.items()):
            if host not in self._heard:
                continue
            silent = self._silence(host, now)
            if state is HostState.OK and silent is not None:
                verdicts.append(Verdict(host, Action.SET_STATE, silent, HostState.SUSPECT))
                verdicts.append(Verdict(host, Action.PROBE, silent))
            elif state in (HostState.SUSPECT, HostState.ISOLATED) and silent is None:
                verdicts.append(Verdict(host, Action.SET_STATE, "heartbeats resumed", HostState.OK))
            elif state in (HostState.SUSPECT, HostState.ISOLATED):
                # Probe again: a host isolated from heartbeats may also lose management.
                verdicts.append(Verdict(host, Action.PROBE, silent or ""))
            elif state in (HostState.FENCED, HostState.NOT_RESPONDING, HostState.STOPPED) and silent is None:
                verdicts.append(Verdict(host, Action.REFRESH, "heartbeats arrive"))
            elif state is HostState.NOT_RESPONDING and self._heard[host].ever:
                # Its management path failed earlier; now the heartbeats stopped too.
                verdicts.append(Verdict(host, Action.PROBE, silent or ""))
        return verdicts

    def probe_result(
        self, host: str, state: HostState, answered: bool, why: str, now: float
    ) -> list[Verdict]:
        """The verdict after a probe of a suspect, isolated or not responding host."""
        if state not in (HostState.SUSPECT, HostState.ISOLATED, HostState.NOT_RESPONDING):
            return []
        if not self.judging(now):
            return []
        if state is HostState.NOT_RESPONDING:
            if answered or self._silence(host, now) is None:
                return [Verdict(host, Action.REFRESH, "it answers again")]
            return [Verdict(host, Action.FENCE, f"{PROBE_FAILED}: {why}")]
        if self._silence(host, now) is None:
            return [Verdict(host, Action.SET_STATE, "heartbeats resumed", HostState.OK)]
        if answered:
            if state is HostState.ISOLATED:
                return []
            return [
                Verdict(
                    host,
                    Action.SET_STATE,
                    "heartbeats lost but the management path answers: heartbeat network partition",
                    HostState.ISOLATED,
                )
            ]
        reason = f"{PROBE_FAILED}: {why}"
        return [
            Verdict(host, Action.SET_STATE, reason, HostState.NOT_RESPONDING, fence_follows=True),
            Verdict(host, Action.FENCE, reason),
        ]
