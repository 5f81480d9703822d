"""Scenario folders as pytest tests.

    from havm.scenario.testing import assert_scenario

    def test_failover(tmp_path):
        assert_scenario(Path(__file__).parent / "scenarios" / "crash-restarts-ha-vms")

A failing scenario fails the test with the scenario's own report: the expectations
that did not hold, the invariants broken and the difference of the event log.

Tests that check what a command prints drive a simulated cluster themselves, one
command line at a time (`sim_cluster`): the real CLI against the real manager and
agents, with the same faults and the same virtual time as a scenario folder.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import warnings
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from havm.scenario.cli_bridge import CommandResult
from havm.scenario.runner import ScenarioResult, run_folder
from havm.scenario.steps import Command, load_folder

T = TypeVar("T")


def run_scenario(folder: Path | str, real: bool = False) -> ScenarioResult:
    """Run one scenario folder (on virtual time, or with `real` on real processes)."""
    return run_folder(load_folder(Path(folder)), real=real)


def assert_scenario(folder: Path | str, real: bool = False) -> ScenarioResult:
    import pytest

    result = run_scenario(folder, real=real)
    if not result.passed:
        pytest.fail("\n".join(result.report(verbose=True)), pytrace=False)
    return result


# --- a simulated cluster a test drives one command at a time ---------------------------


class SimClusterSession:
    """A whole cluster on virtual time (sim_cluster), driven by a test step by step.

        with sim_cluster(topology_file, tmp_path) as cluster:
            created = cluster.cli("vm", "create", "web1", "--memory-mb", "512", "-o", "json")
            assert created.exit_code == 0 and created.json()["state"] == "running"
            cluster.cli("fault", "crash", "node1")
            cluster.advance(10)

    `cli` runs the real command line against the real manager app, as a scenario's
    command does; a line that starts with `fault`, `restart` or `host start` acts on the
    simulated machines, as it does in a scenario folder. Between two steps nothing runs
    and virtual time stands still, so what a test reads is what the previous step left.
    """

    def __init__(self, topology: Any, workdir: Path) -> None:
        from havm.scenario.sim_cluster import SimCluster
        from havm.scenario.virtual_loop import VirtualTimeLoop

        self.loop = VirtualTimeLoop()
        self.cluster = SimCluster(self.loop, topology, workdir)
        self._driver: Any = None

    def start(self, settle_s: float) -> None:
        from havm.scenario.sim_driver import SimDriver

        self.loop.run_until_complete(self.cluster.start())
        # One heartbeat window: the manager judges hosts once it heard them (as after `havm up`).
        self.loop.run_until_complete(asyncio.sleep(settle_s))
        self._driver = SimDriver(self.cluster)

    def now(self) -> float:
        """Virtual seconds since the cluster was up."""
        return float(self._driver.now())

    def cli(self, *argv: str) -> CommandResult:
        """`havm ARGV` (or a fault line) to its end; virtual time flows while it waits."""
        return self.wait(self.begin(*argv))

    def begin(self, *argv: str) -> asyncio.Task[CommandResult]:
        """Start `havm ARGV` without waiting: it goes on while the test advances time."""

        async def command() -> CommandResult:
            code, out, err = await self._driver.command(tuple(argv), _is_fault(argv))
            return CommandResult(code, out, err)

        return self.loop.create_task(command())

    def wait(self, pending: asyncio.Task[CommandResult]) -> CommandResult:
        return self.loop.run_until_complete(pending)

    def run(self, awaitable: Awaitable[T]) -> T:
        """Await something on the cluster's loop (a direct call to an agent, say)."""

        async def wrapped() -> T:
            return await awaitable

        return self.loop.run_until_complete(wrapped())

    def agent(self, host: str) -> Any:
        """An AgentService stub of `host`'s agent, as a tool beside the manager would
        call it (`cluster.run(cluster.agent("node1").GetInventory(...))`)."""
        from havm.v1 import agent_pb2_grpc

        return agent_pb2_grpc.AgentServiceStub(self.cluster.network.channel(self.cluster.host(host).address))

    def add_agent(self, spec: Any, volumes: Any = ()) -> str:
        """Boot an agent for a host the topology does not declare (a HostSpec, with the
        shared volumes it sees), as `havm host add` starts one on a local cluster; the
        manager learns of it only when told (`host add NAME --address ADDRESS`). Returns
        the address it serves at."""
        from havm.contract.host_config import agent_config_json, host_agent_config
        from havm.scenario.sim_cluster import SimHost

        sim = self.cluster
        address = f"{spec.name}.sim:50051"
        topology = sim.topology
        config = host_agent_config(
            spec, volumes, sim.workdir / "san", topology.timing, topology.isolation.response
        )
        host = SimHost(
            spec.name, address, sim.workdir / "hosts" / spec.name, json.loads(agent_config_json(config))
        )
        sim.hosts[spec.name] = host
        sim._boot(host)  # noqa: SLF001 - the same boot as a declared host's
        return address

    def advance(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass: heartbeats, detector, jobs, migrations."""
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.cluster.stop())
        finally:
            logging.disable(logging.CRITICAL)
            try:
                self.loop.discard_all()
                # The cluster's objects (its network's calls, the apps) hold coroutines of
                # their own: let them go now, while the loop is open to finalise them.
                del self.cluster, self._driver
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    gc.collect()
                self.loop.close()
            finally:
                logging.disable(logging.NOTSET)
            for thread in threading.enumerate():
                if thread.name == COMMAND_THREAD:
                    thread.join(timeout=5)


def _is_fault(argv: tuple[str, ...]) -> bool:
    return Command(0, " ".join(argv), argv).is_fault


# The thread virtual_loop.run_outside runs a command line in.
COMMAND_THREAD = "scenario-command"
# The manager's and the agents' own logs would drown a failing test's report.
_QUIET = {
    "manager": logging.ERROR,
    "node_agent": logging.ERROR,
    "manager.app.crash_points": logging.CRITICAL + 1,
    "node_agent.app.crash_points": logging.CRITICAL + 1,
}


@contextmanager
def sim_cluster(
    topology: Path | str | None, workdir: Path, settle_s: float = 6.0
) -> Iterator[SimClusterSession]:
    """A SimClusterSession of the topology file (the built-in default when None), up and
    settled; stopped, with every task and command thread gone, when the block ends."""
    from havm.cli.local_cluster import load_topology

    parsed, _ = load_topology(Path(topology) if topology is not None else None)
    loggers = [logging.getLogger(name) for name in _QUIET]
    levels = [logger.level for logger in loggers]
    for logger, level in zip(loggers, _QUIET.values(), strict=True):
        logger.setLevel(level)
    session = SimClusterSession(parsed, workdir)
    try:
        session.start(settle_s)
        yield session
    finally:
        try:
            session.close()
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
