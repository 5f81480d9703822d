"""Scenario folders of tests/scenarios, run with --real: the same command lines against
processes `havm up` starts, on real time. Each covers a fault mechanism the virtual-time
run emulates (a killed process and its last will, a stopped one, a cut relay path, a
live migration between agent processes, a crash point inside one), so the two runs
check each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from havm.scenario.testing import assert_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
REAL = [
    "crash-restarts-ha-vms-elsewhere",
    "power-off-detected-by-missed-heartbeats",
    "heartbeat-path-cut-only",
    "live-migration-moves-a-running-vm",
    "live-migration-source-dies-at-source-lease-moved",
]


@pytest.mark.parametrize("name", REAL)
def test_scenario_on_real_processes(name: str) -> None:
    result = assert_scenario(SCENARIOS / name, real=True)
    assert result.mode == "real" and result.outcomes
