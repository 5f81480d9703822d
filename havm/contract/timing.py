"""The cluster's timing: one section that the manager and every agent run with.

Failure detection is a conversation between two sides: agents beat every
`heartbeat_interval_s`, the manager calls a host suspect after `heartbeat_threshold`
missed beats and probes it for `probe_timeout_s`, and an agent cut off from everything
for `isolation_timeout_s` powers its VMs off. Set on each side separately, these
numbers drift apart unnoticed (an isolation timeout shorter than the detection window
powers VMs off before the manager even knows the host is gone), so they are one
section of the topology, handed to the manager and to every agent by `havm up`, and
checked together here. Pure: no I/O, no yaml, no generated stubs.

Every duration is in seconds and says so by its `_s` suffix.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from havm.contract.fields import TopologyError, read_int, read_mapping, read_number

MAX_TIMING_S = 3600.0
MAX_HEARTBEAT_THRESHOLD = 1000


@dataclass(frozen=True)
class Timing:
    """The topology's `timing:` section; the defaults are Windows Server 2008 R2's."""

    # Agents publish a heartbeat this often (seconds).
    heartbeat_interval_s: float = 1.0
    # Missed beats in a row after which the manager calls a host suspect (2008 R2: 5).
    heartbeat_threshold: int = 5
    # Deadline of the manager's probe of a suspect host on the management path.
    probe_timeout_s: float = 0.5
    # An agent cut off from manager and broker this long applies its isolation response.
    isolation_timeout_s: float = 15.0
    # A migration stream (manager to agent, agent to agent) silent this long is given up.
    stall_timeout_s: float = 5.0
    # Seconds between two periodic refreshes of every host by the manager.
    refresh_interval_s: float = 5.0

    @property
    def detection_window_s(self) -> float:
        """Seconds without a heartbeat after which the manager calls a host suspect."""
        return self.heartbeat_interval_s * self.heartbeat_threshold

    @property
    def declared_dead_after_s(self) -> float:
        """The longest the manager takes to declare a silent host: window plus probe."""
        return self.detection_window_s + self.probe_timeout_s


TIMING_KEYS = tuple(f.name for f in fields(Timing))


def timing_problems(timing: Timing, section: str = "timing") -> list[tuple[str, str]]:
    """Every rule the timings break together, as (field, sentence) pairs; empty when
    they agree. Each sentence names the fields it compares. Pure."""
    t = timing
    problems: list[tuple[str, str]] = []
    if t.probe_timeout_s >= t.heartbeat_interval_s:
        problems.append(
            (
                f"{section}.probe_timeout_s",
                f"{section}.probe_timeout_s ({t.probe_timeout_s:g} s) must be shorter than "
                f"{section}.heartbeat_interval_s ({t.heartbeat_interval_s:g} s), so that a probe "
                "ends before the next beat is due.",
            )
        )
    if t.isolation_timeout_s <= t.declared_dead_after_s:
        problems.append(
            (
                f"{section}.isolation_timeout_s",
                f"{section}.isolation_timeout_s ({t.isolation_timeout_s:g} s) must be longer than "
                f"the detection window heartbeat_interval_s x heartbeat_threshold plus "
                f"probe_timeout_s ({t.heartbeat_interval_s:g} s x {t.heartbeat_threshold} + "
                f"{t.probe_timeout_s:g} s = {t.declared_dead_after_s:g} s), so that the manager "
                "declares a cut-off host before that host powers its VMs off.",
            )
        )
    if t.refresh_interval_s < t.probe_timeout_s:
        problems.append(
            (
                f"{section}.refresh_interval_s",
                f"{section}.refresh_interval_s ({t.refresh_interval_s:g} s) must be at least "
                f"{section}.probe_timeout_s ({t.probe_timeout_s:g} s), so that refreshes of a "
                "slow host do not pile up.",
            )
        )
    return problems


def check_timing(timing: Timing, section: str = "timing") -> Timing:
    """The timing if its values agree; else TopologyError at `section` with one sentence
    per broken rule, each naming the fields it compares. Pure."""
    problems = timing_problems(timing, section)
    if problems:
        raise TopologyError(section, " ".join(sentence for _, sentence in problems))
    return timing


def parse_timing(raw: object, field: str = "timing", base: Timing = Timing()) -> Timing:
    """The `timing:` section over `base` (the defaults); each value is checked alone here,
    the section as a whole by `check_timing` once every source is merged in. Pure."""
    entry = read_mapping(raw, field, TIMING_KEYS)
    values: dict[str, float | int] = {}
    for key in TIMING_KEYS:
        if key not in entry:
            continue
        if key == "heartbeat_threshold":
            values[key] = read_int(entry[key], f"{field}.{key}", 1, MAX_HEARTBEAT_THRESHOLD)
        else:
            values[key] = read_number(entry[key], f"{field}.{key}", 0.0, MAX_TIMING_S, exclusive_minimum=True)
    return Timing(**{f.name: values.get(f.name, getattr(base, f.name)) for f in fields(Timing)})


def timing_to_dict(timing: Timing) -> dict[str, float | int]:
    """The explicit `timing:` section; parse_timing reads it back."""
    return {f.name: getattr(timing, f.name) for f in fields(Timing)}
