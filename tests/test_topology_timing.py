"""The topology's `timing:` section: defaults, each rule with its sentence, the older
spellings, and the way to the manager and to every agent."""

from __future__ import annotations

from typing import Any

import pytest

from havm.contract.timing import Timing, check_timing, timing_problems
from havm.contract.topology import TopologyError, parse_topology, topology_to_dict


def base(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": 1,
        "host_defaults": {
            "profile": "hyperv-2008r2",
            "cpu": {"vendor": "GenuineIntel", "model": "Xeon", "cores": 4, "mhz": 2266},
            "memory_mb": 8192,
        },
        "clusters": [{"name": "c1", "profile": "hyperv-2008r2", "nodes": ["n1", "n2"]}],
        "hosts": [{"name": "n1"}, {"name": "n2"}],
    }
    data.update(sections)
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(TopologyError) as caught:
        parse_topology(data)
    return str(caught.value)


def test_the_defaults_are_todays_values() -> None:
    timing = parse_topology(base()).timing
    assert timing == Timing(
        heartbeat_interval_s=1.0,
        heartbeat_threshold=5,
        probe_timeout_s=0.5,
        isolation_timeout_s=15.0,
        stall_timeout_s=5.0,
        refresh_interval_s=5.0,
    )
    assert timing.detection_window_s == 5.0
    assert timing_problems(timing) == []


def test_a_timing_section_sets_every_value_and_round_trips() -> None:
    section = {
        "heartbeat_interval_s": 0.5,
        "heartbeat_threshold": 4,
        "probe_timeout_s": 0.25,
        "isolation_timeout_s": 3,
        "stall_timeout_s": 2,
        "refresh_interval_s": 10,
    }
    topology = parse_topology(base(timing=section))
    assert topology.timing == Timing(0.5, 4, 0.25, 3.0, 2.0, 10.0)
    # The sections that still carry these values agree with the timing section.
    assert topology.isolation.timeout_s == 3.0
    assert topology.migration.stall_timeout_s == 2.0
    assert parse_topology(topology_to_dict(topology)) == topology


def test_the_probe_must_end_before_the_next_beat() -> None:
    message = error_of(base(timing={"probe_timeout_s": 1.0}))
    assert message == (
        "timing: timing.probe_timeout_s (1 s) must be shorter than timing.heartbeat_interval_s (1 s), "
        "so that a probe ends before the next beat is due."
    )


def test_the_isolation_timeout_must_outlast_the_detection_window() -> None:
    message = error_of(base(timing={"heartbeat_interval_s": 2, "isolation_timeout_s": 10}))
    assert message == (
        "timing: timing.isolation_timeout_s (10 s) must be longer than the detection window "
        "heartbeat_interval_s x heartbeat_threshold plus probe_timeout_s (2 s x 5 + 0.5 s = 10.5 s), "
        "so that the manager declares a cut-off host before that host powers its VMs off."
    )


def test_the_refresh_interval_must_be_at_least_the_probe_timeout() -> None:
    message = error_of(base(timing={"refresh_interval_s": 0.25}))
    assert message.startswith(
        "timing: timing.refresh_interval_s (0.25 s) must be at least timing.probe_timeout_s"
    )


def test_every_broken_rule_gets_its_own_sentence() -> None:
    timing = Timing(
        heartbeat_interval_s=0.5, probe_timeout_s=0.75, isolation_timeout_s=1, refresh_interval_s=0.5
    )
    problems = timing_problems(timing)
    assert [field for field, _ in problems] == [
        "timing.probe_timeout_s",
        "timing.isolation_timeout_s",
        "timing.refresh_interval_s",
    ]
    assert all(sentence.endswith(".") and sentence.count(". ") == 0 for _, sentence in problems)
    with pytest.raises(TopologyError) as caught:
        check_timing(timing)
    assert str(caught.value).count(", so that ") == 3


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"heartbeat_interval_s": 0}, "timing.heartbeat_interval_s: must be a number > 0, got 0"),
        ({"heartbeat_interval_s": "1s"}, "timing.heartbeat_interval_s: must be a number > 0, got '1s'"),
        ({"heartbeat_threshold": 0}, "timing.heartbeat_threshold: must be a positive integer, got 0"),
        ({"heartbeat_threshold": 2.5}, "timing.heartbeat_threshold: must be a positive integer, got 2.5"),
        ({"heartbeat_threshold": 5000}, "timing.heartbeat_threshold: must be at most 1000, got 5000"),
        ({"probe_timeout_s": -1}, "timing.probe_timeout_s: must be a number > 0, got -1"),
        ({"isolation_timeout_s": 7200}, "timing.isolation_timeout_s: must be at most 3600, got 7200"),
        ({"stall_timeout_s": None}, "timing.stall_timeout_s: must be a number > 0, got None"),
        ({"refresh_interval": 5}, "timing.refresh_interval: unknown field"),
        ([1], "timing: must be a mapping, got a list"),
    ],
)
def test_a_bad_timing_value_names_its_field(section: Any, message: str) -> None:
    assert error_of(base(timing=section)) == message


def test_the_older_spellings_still_set_the_values() -> None:
    topology = parse_topology(
        base(isolation={"timeout_s": 8, "response": "shut_down"}, migration={"stall_timeout_s": 3})
    )
    assert topology.timing.isolation_timeout_s == 8.0
    assert topology.timing.stall_timeout_s == 3.0
    assert topology.isolation.response == "shut_down"
    settings = topology.agent_settings()
    assert settings["isolation_timeout_s"] == 8.0
    assert settings["migration_stall_timeout_s"] == 3.0
    # Written back, they move to the timing section.
    data = topology_to_dict(topology)
    assert "timeout_s" not in data["isolation"] and "stall_timeout_s" not in data["migration"]
    assert data["timing"]["isolation_timeout_s"] == 8.0


def test_an_older_spelling_is_checked_by_the_timing_rules_too() -> None:
    message = error_of(base(isolation={"timeout_s": 5}))
    assert message.startswith(
        "timing: timing.isolation_timeout_s (5 s) must be longer than the detection window"
    )


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"isolation": {"timeout_s": 8}, "timing": {"isolation_timeout_s": 9}},
            "isolation.timeout_s: timing.isolation_timeout_s sets this value too; "
            "keep timing.isolation_timeout_s and remove isolation.timeout_s",
        ),
        (
            {"migration": {"stall_timeout_s": 2}, "timing": {"stall_timeout_s": 3}},
            "migration.stall_timeout_s: timing.stall_timeout_s sets this value too; "
            "keep timing.stall_timeout_s and remove migration.stall_timeout_s",
        ),
    ],
)
def test_both_spellings_of_one_value_is_an_error_naming_the_new_key(
    sections: dict[str, Any], message: str
) -> None:
    assert error_of(base(**sections)) == message


def test_every_agent_gets_the_heartbeat_interval_of_the_timing_section() -> None:
    topology = parse_topology(base(timing={"heartbeat_interval_s": 0.5, "probe_timeout_s": 0.2}))
    assert topology.agent_settings()["heartbeat_interval_s"] == 0.5
