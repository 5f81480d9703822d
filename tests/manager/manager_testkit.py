"""Helpers of the manager's tests: their topology, the manager process and waiting."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from havm.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
CLUSTER_NODES = ("node1", "node2", "node3")
HOSTS = (*CLUSTER_NODES, "standalone1")


def topology_data(addresses: Mapping[str, str | None], nodes: tuple[str, ...] = CLUSTER_NODES) -> dict:
    """The manager tests' topology: cluster1 of `nodes` sharing Volume1 and lun1, and the
    hosts of `addresses` (a host not in `nodes` is standalone, with 16 GiB). A host whose
    address is None has none here (the simulated cluster gives its own)."""
    hosts: list[dict] = []
    for name, address in addresses.items():
        entry: dict = {"name": name}
        if address is not None:
            entry["address"] = address
        if name not in nodes:
            entry["memory_mb"] = 16384
        hosts.append(entry)
    return {
        "version": 1,
        "host_defaults": {
            "profile": "hyperv-2008r2",
            "cpu": {
                "vendor": "GenuineIntel",
                "model": "Intel Xeon X5570",
                "features": ["sse4_2"],
                "cores": 8,
                "mhz": 2933,
            },
            "memory_mb": 32768,
            "host_reserve_mb": 2048,
            "disks": [{"name": "C", "capacity_gb": 500}],
            "networks": [{"name": "External", "bound_to": "nic"}],
        },
        "clusters": [
            {
                "name": "cluster1",
                "profile": "hyperv-2008r2",
                "reserve": 1,
                "nodes": list(nodes),
                "csvs": [{"name": "Volume1", "capacity_gb": 2048}],
                "luns": [{"name": "lun1", "capacity_gb": 200}],
            }
        ],
        "hosts": hosts,
    }


def topology_for(agents: Mapping[str, Any]) -> dict:
    """`topology_data` for agents that each have an `address`."""
    return topology_data({name: agent.address for name, agent in agents.items()})


class ManagerProcess:
    """`python -m manager` as a real child process on a free loopback port."""

    def __init__(
        self,
        topology: Path,
        state_dir: Path,
        refresh_interval_s: float = 0.5,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.extra_args = extra_args
        self.topology = topology
        self.state_dir = state_dir
        self.port = free_port()
        self.refresh_interval_s = refresh_interval_s
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir / "manager.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [
            PYTHON,
            "-m",
            "manager",
            "--topology",
            str(self.topology),
            "--state-dir",
            str(self.state_dir),
            "--listen",
            self.address,
            "--refresh-interval",
            str(self.refresh_interval_s),
            "--insecure",
            *self.extra_args,
        ]

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv(), stderr=log, stdout=log, cwd=str(REPO_ROOT))
        log.close()
        await self.wait_serving()

    async def wait_serving(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                assert self.process is not None and self.process.poll() is None, self.log()
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"manager not serving after {timeout} s\n{self.log()}")
                await asyncio.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)

    async def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        for _ in range(100):
            if self.process.poll() is not None:
                return self.process.returncode
            await asyncio.sleep(0.05)
        self.kill9()
        raise AssertionError("manager did not stop on SIGTERM")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "") -> None:
    """Wait until `check()` is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {what}")
        await asyncio.sleep(0.05)
