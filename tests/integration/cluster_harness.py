"""A real local cluster for integration tests: `havm up --detach` in a temporary state
directory, driven through the `havm` command line, stopped with `havm down`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from havm.contract.broker_access import password as broker_password
from havm.contract.heartbeat_auth import read_secret_file
from havm.contract.identity import MANAGER_NAME, IdentityFile, read_identity_file, sync_channel
from havm.scenario.cli_bridge import run_cli
from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

HAVM = [sys.executable, "-m", "havm.cli.main"]
# Commands that start or stop the cluster's processes run as the console script would,
# in a process of their own, so that what they start is never a child of the test.
# Every other command runs in the test's own process: the same CLI code talking real
# gRPC to the real manager, without a Python interpreter's start-up per command
# (tests/integration/test_console_script.py covers the console script itself).
OWN_PROCESS = {
    ("up",),
    ("down",),
    ("restart",),
    ("fault",),
    ("scenario",),
    ("host", "add"),
    ("host", "start"),
}
INVENTORY_TIMEOUT_S = 1.0
# A copy in one of these states holds the VM's memory and may write its disk.
ACTIVE_STATES = {common_pb2.VM_STATE_RUNNING, common_pb2.VM_STATE_PAUSED, common_pb2.VM_STATE_STARTING}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@dataclass
class LocalCluster:
    state_dir: Path

    def havm(self, *args: str, timeout: float = 60) -> Result:
        if not _needs_own_process(args) and threading.current_thread() is threading.main_thread():
            ran = run_cli(["--state-dir", str(self.state_dir), *args])
            return Result(ran.exit_code, ran.stdout, ran.stderr)
        proc = subprocess.run(
            [*HAVM, "--state-dir", str(self.state_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, timeout: float = 60) -> Result:
        result = self.havm(*args, timeout=timeout)
        assert result.code == 0, f"havm {' '.join(args)} exited {result.code}: {result.stderr}"
        assert "Traceback" not in result.stderr
        return result

    def json(self, *args: str):
        return self.ok(*args, "-o", "json").json()

    def context(self) -> dict:
        return json.loads((self.state_dir / "cluster.json").read_text())

    def identity(self, role: str = "admin") -> IdentityFile | None:
        """An identity `havm up` issued (None for a cluster started with --insecure)."""
        path = self.state_dir / "pki" / "clients" / f"{role}.pem"
        if self.context().get("security") != "mutual_tls":
            return None
        return read_identity_file(path)

    def broker_login(self, user: str = "reader") -> dict[str, str]:
        """aiomqtt.Client's keyword arguments to log in to the cluster's broker as `user`
        (`reader` reads everything and publishes nothing)."""
        secret = read_secret_file(self.state_dir / "secrets" / "heartbeat-secret")
        return {"username": user, "password": broker_password(secret, user) or ""}

    def channel(self, name: str, role: str = "admin", address: str | None = None) -> grpc.Channel:
        """A channel to the manager or an agent ("agent:HOST"), as a client of `role`."""
        peer = MANAGER_NAME if name == "manager" else name.split(":", 1)[1]
        return sync_channel(address or self.component(name)["address"], self.identity(role), peer)

    def component(self, name: str) -> dict:
        return self.context()["components"][name]

    def link(self, name: str) -> str:
        """Where the fault relay listens for a path ("heartbeat:HOST" or "management:HOST")."""
        links = json.loads((self.state_dir / "faultnet" / "links.json").read_text())
        return links[name]["listen"]

    def kill9(self, name: str) -> None:
        pid = self.component(name)["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)

    def guest_status(self, host: str, vm_id: str) -> agent_pb2.AgentServiceGetGuestStatusResponse:
        with self.channel(f"agent:{host}") as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            return stub.GetGuestStatus(agent_pb2.AgentServiceGetGuestStatusRequest(vm_id=vm_id), timeout=5)

    def running_pids(self) -> list[int]:
        pids = [c["pid"] for c in self.context()["components"].values() if c["pid"]]
        return [p for p in pids if alive(p)]


def _needs_own_process(args: tuple[str, ...]) -> bool:
    words = tuple(a for a in args if not a.startswith("-"))
    return words[:1] in OWN_PROCESS or words[:2] in OWN_PROCESS


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.02)


def wait_for(predicate, timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def start_cluster(state_dir: Path, *extra: str) -> LocalCluster:
    cluster = LocalCluster(state_dir)
    result = cluster.havm("up", "--detach", *extra, timeout=90)
    if result.code != 0:
        cluster.havm("down", timeout=60)
        raise AssertionError(f"havm up failed ({result.code}):\n{result.stdout}\n{result.stderr}")
    return cluster


@contextlib.contextmanager
def topology_cluster(directory: Path, topology: str) -> Iterator[LocalCluster]:
    """A cluster `havm up` starts in `directory` from the topology text; down at the end."""
    path = directory / "topology.yaml"
    path.write_text(topology)
    local = start_cluster(directory / "state", "--topology", str(path))
    try:
        yield local
    finally:
        stop_cluster(local)


def stop_cluster(cluster: LocalCluster) -> None:
    pids = [c["pid"] for c in cluster.context()["components"].values() if c["pid"]]
    result = cluster.havm("down", timeout=90)
    assert result.code == 0, result.stderr
    for pid in pids:
        wait_dead(pid, timeout=5)


# ------------------------------------------------- the no-two-copies invariant


def agent_names(cluster: LocalCluster) -> list[str]:
    return [name.split(":", 1)[1] for name in cluster.context()["components"] if name.startswith("agent:")]


def inventory(cluster: LocalCluster, host: str) -> list[common_pb2.VmRuntime] | None:
    """What the agent itself runs, asked directly (past the fault relay); None when it
    does not answer (crashed, frozen, powered off)."""
    component = cluster.component(f"agent:{host}")
    if not component.get("pid") or not alive(component["pid"]):
        return None
    try:
        with cluster.channel(f"agent:{host}") as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            response = stub.GetInventory(
                agent_pb2.AgentServiceGetInventoryRequest(), timeout=INVENTORY_TIMEOUT_S
            )
    except grpc.RpcError:
        return None
    return list(response.vms)


def active_copies(cluster: LocalCluster, hosts: list[str] | None = None) -> dict[str, dict[str, int]]:
    """VM id -> {host: lease generation} of the agents (all, or `hosts`) that run (or
    pause, or start) a copy."""
    copies: dict[str, dict[str, int]] = {}
    for host in agent_names(cluster) if hosts is None else hosts:
        for vm in inventory(cluster, host) or []:
            if vm.state in ACTIVE_STATES:
                copies.setdefault(vm.spec.id, {})[host] = vm.lease_generation
    return copies


def assert_invariant(cluster: LocalCluster, context: str = "") -> None:
    """No VM is active on two hosts, as far as the agents that answer tell.

    A copy holding an older lease generation than another copy of the same VM is already
    fenced: storage refuses its writes and its next write stops it (for a few
    milliseconds after a takeover it may still be listed as running). Two copies holding
    the same generation, or two holding the newest one, are a split brain."""
    doubles = split_brains(active_copies(cluster))
    assert not doubles, f"VMs active on more than one host {context} (host: lease generation): {doubles}"


def split_brains(copies: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The VMs of `active_copies` whose copies break the invariant (see assert_invariant)."""
    doubles = {}
    for vm, held in copies.items():
        newest = max(held.values())
        if len(held) != len(set(held.values())) or list(held.values()).count(newest) > 1:
            doubles[vm] = held
    return doubles
