"""Helpers to run real node agent processes on loopback and talk to them over gRPC."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

AGENT_SERVICE = "havm.v1.AgentService"
START_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 5.0
# The agent is up within a fraction of a second: do not let the client's default
# reconnect backoff (one second) decide how long a test waits.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 100),
]


def open_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def host_config(tmp: Path, name: str = "node1", **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "cluster": "cluster1",
        "profile": "hyperv-2008r2",
        "cpu": {
            "vendor": "GenuineIntel",
            "model": "Intel Xeon X5570",
            "features": ["sse3", "sse4_2", "popcnt"],
            "cores": 8,
            "mhz": 2933,
        },
        "memory_mb": 8192,
        "host_reserve_mb": 2048,
        "disks": [{"name": "C", "capacity_gb": 500}],
        "networks": [{"name": "External", "bound_to": "Broadcom BCM5709C #1", "vlan_id": 0}],
        "volumes": [
            {"name": "Volume1", "kind": "csv", "capacity_gb": 2048},
            {"name": "lun1", "kind": "lun", "capacity_gb": 200},
        ],
        "san_root": str(tmp / "san"),
        "settings": {
            "guest_tick_s": 0.05,
            "shutdown_grace_s": 0.1,
            "status_interval_s": 0.5,
            "heartbeat_interval_s": 0.2,
        },
    }
    config.update(overrides)
    return config


def config_file_text(raw: dict[str, Any]) -> str:
    """The file an agent process reads for `raw` (host_config's form): the wire
    contract's HostConfig message as JSON, as `havm up` writes it."""
    from google.protobuf import json_format

    from node_agent.adapters.config_file import host_config_to_proto
    from node_agent.core.config import parse_host_config

    message = host_config_to_proto(parse_host_config(raw))
    return json_format.MessageToJson(message, preserving_proto_field_name=True) + "\n"


def config_file_data(raw: dict[str, Any]) -> dict[str, Any]:
    """The file's JSON as data, to spoil one field of it."""
    import json

    data: dict[str, Any] = json.loads(config_file_text(raw))
    return data


def vm_spec(
    vm_id: str = "vm-1",
    name: str = "web1",
    memory_mb: int = 1024,
    storage: tuple[int, str] = (common_pb2.STORAGE_KIND_CSV, "Volume1"),
    disk_gb: int = 10,
    writes_per_s: float = 40.0,
    **extra: Any,
) -> common_pb2.VmSpec:
    spec = common_pb2.VmSpec(
        id=vm_id,
        name=name,
        memory_mb=memory_mb,
        cpus=extra.pop("cpus", 1),
        disk_gb=disk_gb,
        storage=common_pb2.StorageLocation(kind=storage[0], name=storage[1]),
        networks=extra.pop("networks", ["External"]),
        workload=common_pb2.GuestWorkload(dirty_rate_mb_per_s=4.0, journal_writes_per_s=writes_per_s),
        **extra,
    )
    return spec


@dataclass
class Agent:
    """One running agent process and clients for it."""

    proc: subprocess.Popen[bytes]
    address: str
    state_dir: Path
    config_path: Path
    log_path: Path
    channel: grpc.Channel
    stub: agent_pb2_grpc.AgentServiceStub = field(init=False)
    health: health_pb2_grpc.HealthStub = field(init=False)

    def __post_init__(self) -> None:
        self.stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # Calls

    def inventory(self) -> agent_pb2.AgentServiceGetInventoryResponse:
        return self.stub.GetInventory(agent_pb2.AgentServiceGetInventoryRequest(), timeout=CALL_TIMEOUT_S)

    def create(self, spec: common_pb2.VmSpec) -> common_pb2.VmRuntime:
        return self.stub.CreateVm(agent_pb2.AgentServiceCreateVmRequest(spec=spec), timeout=CALL_TIMEOUT_S).vm

    def take_over(self, spec: common_pb2.VmSpec, generation: int) -> common_pb2.VmRuntime:
        request = agent_pb2.AgentServiceCreateVmRequest(
            spec=spec, take_over=True, lease_generation=generation
        )
        return self.stub.CreateVm(request, timeout=CALL_TIMEOUT_S).vm

    def operate(self, vm_id: str, operation: int) -> common_pb2.VmRuntime:
        request = agent_pb2.AgentServiceOperateVmRequest(vm_id=vm_id, operation=operation)
        return self.stub.OperateVm(request, timeout=CALL_TIMEOUT_S).vm

    def get(self, vm_id: str) -> common_pb2.VmRuntime:
        return self.stub.GetVm(agent_pb2.AgentServiceGetVmRequest(vm_id=vm_id), timeout=CALL_TIMEOUT_S).vm

    def delete(self, vm_id: str) -> None:
        self.stub.DeleteVm(agent_pb2.AgentServiceDeleteVmRequest(vm_id=vm_id), timeout=CALL_TIMEOUT_S)

    def guest(self, vm_id: str) -> agent_pb2.AgentServiceGetGuestStatusResponse:
        request = agent_pb2.AgentServiceGetGuestStatusRequest(vm_id=vm_id)
        return self.stub.GetGuestStatus(request, timeout=CALL_TIMEOUT_S)

    # Process control

    def wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            try:
                reply = self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"agent not SERVING after {START_TIMEOUT_S} s:\n{self.log()}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.channel.close()


def agent_command(config: Path, state_dir: Path, listen: str, broker: str | None = None) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "node_agent",
        "--insecure",
        "--config",
        str(config),
        "--state-dir",
        str(state_dir),
        "--listen",
        listen,
    ]
    if broker:
        argv += ["--broker", broker]
    return argv


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class InProcessNode:
    """An agent's host and AgentService running in the test's own event loop."""

    host: Any  # node_agent.app.host.VmHost
    server: Any  # node_agent.adapters.grpc_server.AgentServer

    @property
    def name(self) -> str:
        return self.host.config.name


async def start_in_process_nodes(
    tmp: Path, settings: dict[str, Any], names: tuple[str, ...] = ("node1", "node2")
) -> list[InProcessNode]:
    """Agents in this process over real gRPC on loopback, each with its state directory."""
    from node_agent.adapters.files import HostFiles
    from node_agent.adapters.grpc_server import AgentServer
    from node_agent.app.host import VmHost
    from node_agent.core.config import parse_host_config

    started: list[InProcessNode] = []
    for name in names:
        raw = host_config(tmp, name)
        raw["settings"] |= settings
        config = parse_host_config(raw)
        files = HostFiles(config, tmp / "hosts" / name)
        files.prepare()
        state_dir = tmp / "state" / name
        state_dir.mkdir(parents=True, exist_ok=True)
        host = VmHost(config, files, state_dir=state_dir)
        server = AgentServer(host, "127.0.0.1:0")
        await server.start()
        started.append(InProcessNode(host, server))
    return started


async def stop_in_process_nodes(nodes: list[InProcessNode]) -> None:
    for node in nodes:
        await node.server.stop(0)
        await node.host.stop()
