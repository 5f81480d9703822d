"""Shared fixtures of the manager tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from manager_testkit import HOSTS, ManagerProcess, topology_data, topology_for

from havm.contract.topology import parse_topology
from havm.scenario.sim_agent import LoopbackAgent
from havm.v1 import manager_pb2_grpc


@pytest.fixture
async def loopback_agents(tmp_path: Path) -> AsyncIterator[dict[str, LoopbackAgent]]:
    """The real agent of the three cluster nodes (sharing Volume1 and lun1 on one SAN
    directory) and of the standalone host, each behind a real gRPC server on loopback."""
    topology = parse_topology(topology_data(dict.fromkeys(HOSTS)))
    san = tmp_path / "san"
    san.mkdir()
    agents = {h: LoopbackAgent.for_host(topology, h, san, tmp_path / "hosts" / h) for h in HOSTS}
    try:
        for agent in agents.values():
            await agent.start()
        yield agents
    finally:
        for agent in agents.values():
            await agent.stop()


@pytest.fixture
def topology_file(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """The manager's topology file naming each agent's address."""

    def write(agents: dict[str, Any]) -> Path:
        path = tmp_path / "topology.yaml"
        path.write_text(yaml.safe_dump(topology_for(agents)))
        return path

    return write


@pytest.fixture
def manager_processes() -> Iterator[list[ManagerProcess]]:
    """Every manager process a test starts is killed when the test ends."""
    started: list[ManagerProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.kill9()


@pytest.fixture
async def manager(
    request: pytest.FixtureRequest,
    loopback_agents: dict[str, LoopbackAgent],
    topology_file: Callable[[dict[str, Any]], Path],
    tmp_path: Path,
    manager_processes: list[ManagerProcess],
) -> AsyncIterator[ManagerProcess]:
    """`python -m manager` over the loopback agents; a test parametrizing it indirectly
    gives the seconds between its periodic refreshes (default 0.5)."""
    interval = getattr(request, "param", 0.5)
    proc = ManagerProcess(topology_file(loopback_agents), tmp_path / "state", refresh_interval_s=interval)
    manager_processes.append(proc)
    await proc.start()
    yield proc


@pytest.fixture
async def stub(manager: ManagerProcess) -> AsyncIterator[manager_pb2_grpc.ManagerServiceStub]:
    async with grpc.aio.insecure_channel(manager.address) as channel:
        yield manager_pb2_grpc.ManagerServiceStub(channel)
