"""The crash points `havm fault` arms are the ones the agents and the manager reach: a
name that drifted apart would arm a step that is never reached."""

from __future__ import annotations

from havm.cli import container_faults
from havm.cli.faults import CRASH_POINT_FILE, CrashPoint, ManagerCrashPoint
from manager.app import crash_points as manager_points
from node_agent.app import crash_points as agent_points


def test_agent_crash_points_match_the_agent() -> None:
    assert [p.value for p in CrashPoint] == list(agent_points.POINTS)
    assert CRASH_POINT_FILE == agent_points.ARM_FILE == container_faults.ARM_FILE


def test_manager_crash_points_match_the_manager() -> None:
    assert [p.value for p in ManagerCrashPoint] == list(manager_points.POINTS)
    assert CRASH_POINT_FILE == manager_points.ARM_FILE
