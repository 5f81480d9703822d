"""Fixtures of the CLI tests: a fake manager on a free port and a runner of the real
`havm` command as a subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_manager_service import FakeManager, start_fake_manager
from havm_runner import Result, run_havm


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
