"""Every scenario folder here runs on virtual time: the real manager and agents in this
process, its expectations, the project's invariants and its recorded event log."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from havm.scenario.testing import assert_scenario, run_scenario

HERE = Path(__file__).resolve().parent
SCENARIOS = sorted(p for p in HERE.iterdir() if (p / "commands").is_file())


def test_there_are_scenarios_and_each_has_its_log() -> None:
    assert len(SCENARIOS) >= 30
    assert [p.name for p in SCENARIOS if not (p / "expected.log").is_file()] == []


@pytest.mark.parametrize("folder", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_scenario(folder: Path) -> None:
    assert_scenario(folder)


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(HERE / name, target)
    return target


def test_the_same_scenario_twice_gives_the_same_log(tmp_path: Path) -> None:
    first = run_scenario(HERE / "freeze-beyond-the-window-is-fenced-and-rejoins")
    second = run_scenario(HERE / "freeze-beyond-the-window-is-fenced-and-rejoins")
    assert first.passed and first.log == second.log and len(first.log) > 10


def test_a_wrong_expectation_fails_and_says_what_was_found(tmp_path: Path) -> None:
    folder = _copy("crash-restarts-ha-vms-elsewhere", tmp_path)
    commands = folder / "commands"
    commands.write_text(
        commands.read_text().replace("expect vm web1 running on !node1", "expect vm web1 running on node1")
    )
    result = run_scenario(folder)
    assert not result.passed
    failed = [o for o in result.outcomes if not o.passed]
    assert len(failed) == 1 and failed[0].detail.startswith("running on node")
    assert "FAIL line" in "\n".join(result.report())


def test_a_log_that_differs_fails_with_a_diff(tmp_path: Path) -> None:
    folder = _copy("crash-restarts-ha-vms-elsewhere", tmp_path)
    log = folder / "expected.log"
    log.write_text(log.read_text().replace("fenced", "fencd", 1))
    result = run_scenario(folder)
    assert not result.passed and all(o.passed for o in result.outcomes)
    assert any(line.startswith("-") and "fencd" in line for line in result.diff())


def test_a_command_that_should_fail_but_does_not_fails_the_scenario(tmp_path: Path) -> None:
    folder = tmp_path / "wrong"
    folder.mkdir()
    (folder / "commands").write_text("fails vm create web1 --ha --memory-mb 1024\n")
    result = run_scenario(folder)
    assert not result.passed and result.outcomes[0].detail == "was not refused"
