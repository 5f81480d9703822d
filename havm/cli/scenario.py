"""`havm scenario run|record`: scenario folders, on virtual time or on real processes.

A scenario folder holds `topology.yaml`, `commands` and, once recorded,
`expected.log`; see havm.scenario.steps for the command lines it takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from havm.cli.errors import CliError

scenario_app = typer.Typer(
    no_args_is_help=True,
    help="Run scenario folders: a topology, command lines and the events they must produce.",
)


class ScenarioFailed(CliError):
    """At least one scenario did not pass."""


def _folders(paths: list[Path]) -> list[Path]:
    """The folders given, and for a folder of folders, each scenario in it."""
    found: list[Path] = []
    for path in paths:
        if (path / "commands").is_file() or not path.is_dir():
            found.append(path)
            continue
        inner = sorted(p for p in path.iterdir() if (p / "commands").is_file())
        if not inner:
            raise CliError(f"{path}: is neither a scenario folder nor a folder of scenarios")
        found.extend(inner)
    return found


def _load(path: Path):  # type: ignore[no-untyped-def]
    from havm.scenario.steps import ScenarioFileError, load_folder

    try:
        return load_folder(path)
    except ScenarioFileError as error:
        raise CliError(str(error)) from None


def _report(console: Console, result, verbose: bool, recording: bool = False) -> None:  # type: ignore[no-untyped-def]
    for line in result.report(verbose, recording):
        colour = {"PASS": "green", "FAIL": "red"}.get(line.split(" ", 1)[0]) or (
            "red"
            if line.lstrip().startswith(("FAIL", "invariant", "error", "-"))
            else "green"
            if line.lstrip().startswith("+")
            else None
        )
        console.print(f"[{colour}]{escape(line)}[/]" if colour else escape(line), soft_wrap=True)


@scenario_app.command("run")
def run_command(
    paths: Annotated[list[Path], typer.Argument(help="Scenario folders, or folders holding them.")],
    real: Annotated[
        bool, typer.Option("--real", help="Run on real processes started by `havm up`, on real time.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every expectation.")] = False,
) -> None:
    """Run scenarios; exit 1 unless every one passes."""
    from havm.scenario.runner import run_folder

    console = Console(highlight=False)
    folders = [_load(path) for path in _folders(paths)]
    failed = []
    for folder in folders:
        result = run_folder(folder, real=real)
        _report(console, result, verbose)
        if not result.passed:
            failed.append(folder.name)
    if len(folders) > 1:
        console.print(f"{len(folders) - len(failed)} of {len(folders)} scenarios passed")
    if failed:
        raise ScenarioFailed(f"{len(failed)} scenario(s) failed: {', '.join(failed)}")


@scenario_app.command("record")
def record_command(
    paths: Annotated[list[Path], typer.Argument(help="Scenario folders, or folders holding them.")],
) -> None:
    """Run scenarios on virtual time and write each one's event log as its expected.log."""
    from havm.scenario.runner import run_folder

    console = Console(highlight=False)
    failed = []
    for folder in [_load(path) for path in _folders(paths)]:
        result = run_folder(folder)
        result.expected_log = None  # recording: nothing to compare with
        (folder.path / "expected.log").write_text(result.log_text)
        _report(console, result, verbose=False, recording=True)
        console.print(f"  wrote {escape(str(folder.path / 'expected.log'))} ({len(result.log)} lines)")
        if not result.passed:
            failed.append(folder.name)
    if failed:
        raise ScenarioFailed(
            f"recorded, but {len(failed)} scenario(s) did not pass their expectations: {', '.join(failed)}"
        )
