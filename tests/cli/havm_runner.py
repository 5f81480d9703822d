"""Runs the real `havm` command as a subprocess, as a user or a script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_havm(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 30) -> Result:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAVM_") or k == "HAVM_TEST_RUN"}
    environment["COLUMNS"] = "200"
    environment.update(env or {})
    completed = subprocess.run(
        [sys.executable, "-m", "havm.cli.main", *args],
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def one_error_line(result: Any) -> str:
    """The single `error: ...` line a failed command prints, with no traceback (a Result
    here, or a CommandResult of a command run in-process)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
