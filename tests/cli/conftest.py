"""Fixtures of the CLI tests: a fake manager on a free port and a runner of the real
`havm` command as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fake_manager_service import FakeManager, start_fake_manager

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Manager:
    fake: FakeManager
    address: str


@pytest.fixture(scope="module")
def manager() -> Iterator[Manager]:
    server, fake, port = start_fake_manager()
    try:
        yield Manager(fake, f"127.0.0.1:{port}")
    finally:
        server.stop(grace=None)


def run_havm(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 30) -> Result:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAVM_") or k == "HAVM_TEST_RUN"}
    environment["PYTHONPATH"] = str(REPO_ROOT)
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


@pytest.fixture
def havm(manager: Manager, tmp_path: Path) -> Callable[..., Result]:
    """Run `havm --manager <fake> ARGS...` in an empty directory."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return run_havm(["--manager", manager.address, *args], tmp_path, env)

    return run


@pytest.fixture
def havm_bare(tmp_path: Path) -> Callable[..., Result]:
    """Run `havm ARGS...` with no manager address, in an empty directory."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return run_havm(list(args), tmp_path, env)

    return run
