"""Shared fixtures of the manager tests.

The repository root goes first on sys.path so that `manager` is this tree's package
(and not the `tests/manager` folder, which Python would otherwise take for a
namespace package of the same name).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
)

# These imports need the path set above.
from typing import AsyncIterator, Callable, Iterator  # noqa: E402

import grpc  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from havm.v1 import manager_pb2_grpc  # noqa: E402
from manager_fake_agent import FakeAgent, FakeHost  # noqa: E402
from manager_testkit import CLUSTER_NODES, VOLUMES, ManagerProcess, topology_for  # noqa: E402



@pytest.fixture
async def fake_agents() -> AsyncIterator[dict[str, FakeAgent]]:
    """Three cluster nodes sharing Volume1 and lun1, and one standalone host."""
    agents = {
        name: FakeAgent(FakeHost(name, cluster="cluster1", volumes=VOLUMES)) for name in CLUSTER_NODES
    }
    agents["standalone1"] = FakeAgent(FakeHost("standalone1", memory_mb=16384))
    try:
        for agent in agents.values():
            await agent.start()
        yield agents
    finally:
        for agent in agents.values():
            await agent.stop()


@pytest.fixture
def topology_file(tmp_path: Path) -> Callable[[dict[str, FakeAgent]], Path]:
    def write(agents: dict[str, FakeAgent]) -> Path:
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
    fake_agents: dict[str, FakeAgent],
    topology_file: Callable[[dict[str, FakeAgent]], Path],
    tmp_path: Path,
    manager_processes: list[ManagerProcess],
) -> AsyncIterator[ManagerProcess]:
    proc = ManagerProcess(topology_file(fake_agents), tmp_path / "state")
    manager_processes.append(proc)
    await proc.start()
    yield proc


@pytest.fixture
async def stub(manager: ManagerProcess) -> AsyncIterator[manager_pb2_grpc.ManagerServiceStub]:
    async with grpc.aio.insecure_channel(manager.address) as channel:
        yield manager_pb2_grpc.ManagerServiceStub(channel)
