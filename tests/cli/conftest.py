"""Fixtures of the CLI tests.

Most tests run the real `havm` command line in this process against a whole simulated
cluster on virtual time (the real manager app and the real agents, as a scenario folder
runs them): `cli("vm", "list", "-o", "json")`, with faults and time under the test's
control. Exit codes, usage errors and a manager that cannot be reached run `havm` as a
subprocess; what needs a real local cluster (a terminal on stderr, Ctrl-C, the
environment) is in tests/integration/test_console_script.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from havm_runner import Result, run_havm

from havm.scenario.cli_bridge import CommandResult
from havm.scenario.testing import SimClusterSession, sim_cluster

HERE = Path(__file__).resolve().parent
# The simulated cluster's topology (see the file).
TOPOLOGY = HERE / "topology.yaml"


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
