"""Benchmark: failure detection and failover time across container boundaries, on the
compose cluster of deploy/compose.yaml (broker, manager and five agents, each its own
container on the heartbeat, management and migration networks).

    .venv/bin/python bench/container_failover.py [--runs 3] [--vms 4]

It brings the compose cluster up (`havm up --runtime compose`, the image must be built:
scripts/build-images), and then, per run and for each fault on a node that holds
`--vms` highly available VMs:

- crash: the node's container killed (`podman kill`, as `havm fault crash` does; the
  broker sees its connections close and publishes the host's last will);
- power-off: the container paused (`podman pause`, as `havm fault power-off` does;
  nothing closes: only missed heartbeats and a failed probe reveal it).

The engine is called directly, so that the moment of the fault is known to a few
milliseconds rather than after a CLI's start. From that moment it measures detection (the manager's event
that the host is `not_responding`) and failover (every HA VM that was on the node runs
on another node, as the manager reports it), checks inside every live agent container
that no VM runs twice, starts the node again (`havm host start`) and waits until it is
`ok`. Prints each figure and the median. The cluster is removed at the end
(`havm down --volumes`), whatever happened.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "containers"))
from container_testkit import assert_no_vm_runs_twice  # noqa: E402

from havm.cli.containers import ContainerEngine  # noqa: E402
from havm.ports import free_port  # noqa: E402
from havm.v1 import common_pb2, manager_pb2, manager_pb2_grpc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HAVM = [sys.executable, "-m", "havm.cli.main"]
AGENTS = ["node1", "node2", "node3", "node4", "standalone1"]
NODES = ["node1", "node2", "node3", "node4"]


class Events:
    """The manager's host-state events as they arrive, with the manager's own stamps."""

    def __init__(self, stub: manager_pb2_grpc.ManagerServiceStub) -> None:
        self.events: list[manager_pb2.Event] = []
        self._stream = stub.WatchEvents(manager_pb2.WatchEventsRequest(follow=True))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for reply in self._stream:
                self.events.append(reply.event)
        except grpc.RpcError:
            pass

    def not_responding_at(self, host: str, after: float, timeout: float = 30) -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for event in list(self.events):
                stamp = event.time.ToNanoseconds() / 1e9
                if event.host == host and "=> not_responding" in event.detail and stamp >= after:
                    return stamp
            time.sleep(0.01)
        raise SystemExit(f"no not_responding event for {host}")

    def close(self) -> None:
        self._stream.cancel()


def havm(state: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [*HAVM, "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(f"havm {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def vms(stub: manager_pb2_grpc.ManagerServiceStub) -> dict[str, manager_pb2.Vm]:
    return {vm.name: vm for vm in stub.ListVms(manager_pb2.ListVmsRequest(), timeout=10).vms}


def wait_failover(stub: manager_pb2_grpc.ManagerServiceStub, host: str, names: list[str]) -> float:
    deadline = time.time() + 60
    while time.time() < deadline:
        now = vms(stub)
        if all(now[n].host != host and now[n].state == common_pb2.VM_STATE_RUNNING for n in names):
            return time.time()
        time.sleep(0.02)
    raise SystemExit(f"the VMs of {host} did not all run elsewhere within 60 s")


def wait_ok(stub: manager_pb2_grpc.ManagerServiceStub, host: str) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        hosts = {h.name: h.state for h in stub.ListHosts(manager_pb2.ListHostsRequest(), timeout=10).hosts}
        if hosts[host] == manager_pb2.HOST_STATE_OK:
            return
        time.sleep(0.1)
    raise SystemExit(f"{host} was not ok again within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vms", type=int, default=4, help="HA VMs on the node that fails")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="havm-bench-"))
    port = free_port()
    env = {"HAVM_MANAGER_PORT": str(port)}
    started = time.time()
    havm(state, env, "up", "--runtime", "compose", "--detach")
    print(f"compose cluster healthy in {time.time() - started:.1f} s")
    figures: dict[str, list[tuple[float, float]]] = {"crash": [], "power-off": []}
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = manager_pb2_grpc.ManagerServiceStub(channel)
    events = Events(stub)
    engine = ContainerEngine("podman")
    try:
        for run in range(args.runs):
            for fault in figures:
                node = NODES[(run * 2 + list(figures).index(fault)) % len(NODES)]
                names = [f"b{run}-{fault}-{i}" for i in range(args.vms)]
                for name in names:
                    havm(state, env, "vm", "create", name, "--ha", "--memory-mb", "256", "--host", node)
                t0 = time.time()
                (engine.kill if fault == "crash" else engine.pause)(node)
                failover = wait_failover(stub, node, names) - t0
                detected = events.not_responding_at(node, t0) - t0
                assert_no_vm_runs_twice([a for a in AGENTS if a != node], f"after the {fault} of {node}")
                figures[fault].append((detected, failover))
                print(
                    f"run {run + 1} {fault:<9} {node}: detected {detected:.3f} s, failover {failover:.3f} s"
                )
                for name in names:
                    havm(state, env, "vm", "stop", name)
                    havm(state, env, "vm", "delete", name, "--yes")
                if fault == "power-off":
                    engine.kill(node)  # powered on again: the paused memory is lost
                havm(state, env, "host", "start", node)
                wait_ok(stub, node)
        for fault, pairs in figures.items():
            detected = statistics.median(p[0] for p in pairs)
            failover = statistics.median(p[1] for p in pairs)
            print(
                f"{fault:<9} median over {len(pairs)}: detected {detected:.3f} s, "
                f"{args.vms} HA VMs running elsewhere {failover:.3f} s"
            )
    finally:
        events.close()
        channel.close()
        havm(state, env, "down", "--volumes")


if __name__ == "__main__":
    main()
