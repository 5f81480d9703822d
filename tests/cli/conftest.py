"""Fixtures of the CLI tests.

Most tests run the real `havm` command line in this process against a whole simulated
cluster on virtual time (the real manager app and the real agents, as a scenario folder
runs them): `cli("vm", "list", "-o", "json")`, with faults and time under the test's
control. Behaviour that lives at the process boundary (exit codes of the console
script, a terminal on stderr, Ctrl-C, environment variables, a manager that cannot be
reached) runs `havm` as a subprocess, against a real local cluster where it needs one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from havm_runner import Result, run_havm

from havm.ports import LOWEST_PORT, PORT_RANGE_ENV, ephemeral_range
from havm.scenario.cli_bridge import CommandResult
from havm.scenario.testing import SimClusterSession, sim_cluster

HERE = Path(__file__).resolve().parent
# The simulated cluster's topology (see the file).
TOPOLOGY = HERE / "topology.yaml"


def _worker_port_range() -> str | None:
    """A port range per pytest-xdist worker, so that two local clusters never collide."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or PORT_RANGE_ENV in os.environ:
        return None
    index, workers = int(worker[2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    span = (ephemeral_range()[0] - LOWEST_PORT) // max(workers, 1)
    low = LOWEST_PORT + index * span
    return f"{low}-{low + span - 1}"


if (_range := _worker_port_range()) is not None:
    os.environ[PORT_RANGE_ENV] = _range


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SimClusterSession]:
    """A fresh simulated cluster of TOPOLOGY, up and settled."""
    with sim_cluster(TOPOLOGY, tmp_path / "sim") as session:
        yield session


@pytest.fixture
def cli(cluster: SimClusterSession) -> Callable[..., CommandResult]:
    """`cli(*ARGS)`: `havm ARGS...` against the simulated cluster, to its end."""
    return cluster.cli


@pytest.fixture
def havm_bare(tmp_path: Path) -> Callable[..., Result]:
    """Run the console script `havm ARGS...` as a subprocess, in an empty directory."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return run_havm(list(args), tmp_path, env)

    return run
