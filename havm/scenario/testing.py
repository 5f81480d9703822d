"""Scenario folders as pytest tests.

    from havm.scenario.testing import assert_scenario

    def test_failover(tmp_path):
        assert_scenario(Path(__file__).parent / "scenarios" / "crash-restarts-ha-vms")

A failing scenario fails the test with the scenario's own report: the expectations
that did not hold, the invariants broken and the difference of the event log.
"""

from __future__ import annotations

from pathlib import Path

from havm.scenario.runner import ScenarioResult, run_folder
from havm.scenario.steps import load_folder


def run_scenario(folder: Path | str, real: bool = False) -> ScenarioResult:
    """Run one scenario folder (on virtual time, or with `real` on real processes)."""
    return run_folder(load_folder(Path(folder)), real=real)


def assert_scenario(folder: Path | str, real: bool = False) -> ScenarioResult:
    import pytest

    result = run_scenario(folder, real=real)
    if not result.passed:
        pytest.fail("\n".join(result.report(verbose=True)), pytrace=False)
    return result
