"""`havm scenario run|record` as a user types it: results, exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from havm.scenario.steps import Advance, Command, Expect, ScenarioFileError, parse_duration, parse_steps
from tests.cli.havm_runner import run_havm


def test_steps_parse_into_their_kinds() -> None:
    steps = parse_steps(
        "# a comment\n"
        "vm create web1 --ha  # trailing comment\n"
        "advance 1.5s\n"
        "fails vm migrate web1 --to node9\n"
        "fault crash node1\n"
        'expect vm web1 running on !node1 reason "was restarted"\n'
        "expect host node1 fenced\n"
    )
    assert [type(s) for s in steps] == [Command, Advance, Command, Command, Expect, Expect]
    create, advance, fails, crash, vm, host = steps
    assert (
        isinstance(create, Command) and create.argv == ("vm", "create", "web1", "--ha") and create.line == 2
    )
    assert isinstance(advance, Advance) and advance.seconds == 1.5
    assert isinstance(fails, Command) and fails.must_fail and not fails.is_fault
    assert isinstance(crash, Command) and crash.is_fault
    assert isinstance(vm, Expect) and (vm.on_host, vm.not_on, vm.reason) == ("node1", True, "was restarted")
    assert isinstance(host, Expect) and host.subject == "host" and host.state == "fenced"


@pytest.mark.parametrize(
    "text, sentence",
    [
        ("advance 5 seconds", "line 1: advance takes one duration"),
        ("advance 0s", "line 1: advance needs a duration above 0"),
        ("advance soon", "line 1: 'soon' is not a duration"),
        ("\nexpect vm web1 flying", "line 2: 'flying' is not a vm state"),
        ("expect pod p1 running", "line 1: expect vm|host|cluster NAME STATE"),
        ("expect vm web1 running near node1", "line 1: unknown clause 'near'"),
        ("expect host n1 ok on n2", "line 1: unknown clause 'on'"),
        ('vm create "web1', "line 1: unbalanced quotes"),
        ("# only a comment", "has no steps"),
    ],
)
def test_bad_lines_are_refused_naming_the_line(text: str, sentence: str) -> None:
    with pytest.raises(ScenarioFileError) as error:
        parse_steps(text)
    assert sentence in str(error.value)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("500ms", "5s", "2m", "1h")] == [0.5, 5.0, 120.0, 3600.0]


def test_bad_folders_and_files_are_one_line(tmp_path: Path) -> None:
    missing = run_havm(["scenario", "run", str(tmp_path / "nowhere")], cwd=tmp_path)
    assert missing.returncode == 1 and "is not a scenario folder" in missing.stderr
    empty = run_havm(["scenario", "run", str(tmp_path)], cwd=tmp_path)
    assert empty.returncode == 1 and "neither a scenario folder nor a folder of scenarios" in empty.stderr
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "commands").write_bytes(b"\xff\xfe")
    binary = run_havm(["scenario", "run", str(folder)], cwd=tmp_path)
    assert binary.returncode == 1 and "cannot be read" in binary.stderr
    for result in (missing, empty, binary):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_record_then_run_then_a_broken_expectation(tmp_path: Path) -> None:
    folder = tmp_path / "crash"
    folder.mkdir()
    (folder / "commands").write_text(
        "vm create web1 --ha --memory-mb 1024 --host node1\nadvance 1s\nfault crash node1\n"
        "advance 2s\nexpect vm web1 running on !node1\n"
    )
    recorded = run_havm(["scenario", "record", str(folder)], cwd=tmp_path, timeout=60)
    assert recorded.returncode == 0, recorded.stderr
    assert "PASS crash" in recorded.stdout and (folder / "expected.log").is_file()
    assert "host_state: host node1 ok => suspect" in (folder / "expected.log").read_text()
    again = run_havm(["scenario", "run", str(folder)], cwd=tmp_path, timeout=60)
    assert again.returncode == 0 and "PASS crash" in again.stdout
    commands = folder / "commands"
    commands.write_text(commands.read_text().replace("on !node1", "on node1"))
    broken = run_havm(["scenario", "run", str(folder)], cwd=tmp_path, timeout=60)
    assert broken.returncode == 1 and "FAIL crash" in broken.stdout
    assert "FAIL line 5: expect vm web1 running on node1" in broken.stdout
    assert "1 scenario(s) failed: crash" in broken.stderr
