"""Scenario folders of tests/scenarios, run with --real: the same command lines against
processes `havm up` starts, on real time. Each covers a fault mechanism the virtual-time
run emulates (a killed process and its last will, a cut relay path, a live migration
between agent processes), so the two runs check each other. A stopped process and a
crash point inside a migration run on real processes in test_ha.py and
test_migration.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from havm.scenario.testing import assert_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
REAL = [
    "crash-restarts-ha-vms-elsewhere",
    "heartbeat-path-cut-only",
    "live-migration-moves-a-running-vm",
]


# Failure stories on real processes: in the robustness phase (scripts/test), spread over
# its workers (each story starts its own cluster).
pytestmark = [pytest.mark.integration, pytest.mark.robustness]


@pytest.mark.parametrize("name", REAL)
def test_scenario_on_real_processes(name: str) -> None:
    result = assert_scenario(SCENARIOS / name, real=True)
    assert result.mode == "real" and result.outcomes
