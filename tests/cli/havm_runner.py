"""Runs the real `havm` command as a subprocess, as a user or a script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def run_many(run: Callable[..., Result], commands: list[tuple[str, ...]]) -> list[Result]:
    """Run independent commands at once: each one is a whole interpreter start-up."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda args: run(*args), commands))
