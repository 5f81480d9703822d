"""Benchmark: failure detection latency and failover time of a 4-node cluster with 25
highly available VMs per node.

    .venv/bin/python bench/failover.py [--runs 5] [--vms-per-node 25]

Each run starts a fresh local cluster (`havm up --detach`), creates the VMs through the
manager's gRPC API, then injects two failures one after the other, each on a node that
still holds VMs:

- a process crash (SIGKILL of the agent: the broker publishes its last will), and
- a silent power-off (SIGSTOP: only missed heartbeats and a failed probe reveal it).

For each it measures, from the moment of the fault: detection (the manager's event
that the host is `not_responding`) and failover (every HA VM that was on the host is
running on another node). Prints median and p99 per measure over all runs. Targets:
crash detected in <= 0.5 s; power-off detected in <= interval x threshold + 0.5 s
(5.5 s by default); failover within detection + 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from havm.v1 import common_pb2, manager_pb2, manager_pb2_grpc

HAVM = [sys.executable, "-m", "havm.cli.main"]
# The manager's default heartbeat window (1 s x 5) plus a margin.
JUDGING_AFTER_S = 6.0
TOPOLOGY = """
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon X5570, features: [sse4_2, popcnt], cores: 16, mhz: 2933}
  memory_mb: 32768
  host_reserve_mb: 2048
  disks: [{name: C, capacity_gb: 500}]
  networks: [{name: External, bound_to: "NIC 1"}]
clusters:
  - name: cluster1
    profile: hyperv-2008r2
    reserve: 1
    nodes: [node1, node2, node3, node4]
    csvs: [{name: Volume1, capacity_gb: 8192}]
hosts:
  - {name: node1}
  - {name: node2}
  - {name: node3}
  - {name: node4}
"""


class EventLog:
    """Every event the manager streams, with the time it was received."""

    def __init__(self, stub: manager_pb2_grpc.ManagerServiceStub) -> None:
        self.events: list[tuple[float, manager_pb2.Event]] = []
        self._stream = stub.WatchEvents(manager_pb2.WatchEventsRequest(follow=True))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for reply in self._stream:
                self.events.append((time.time(), reply.event))
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self._stream.cancel()

    def first(self, after: float, host: str, text: str) -> float | None:
        for received, event in list(self.events):
            if (
                received >= after
                and event.host == host
                and event.kind == "host_state"
                and text in event.detail
            ):
                # The manager's own stamp on the verdict: the same clock as this process's.
                return event.time.ToNanoseconds() / 1e9
        return None


def havm(state: Path, *args: str) -> str:
    result = subprocess.run([*HAVM, "--state-dir", str(state), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"havm {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def create_vms(stub: manager_pb2_grpc.ManagerServiceStub, per_node: int) -> None:
    def create(node: int, index: int) -> None:
        request = manager_pb2.CreateVmRequest(
            name=f"vm-{node}-{index}",
            memory_mb=256,
            disk_gb=1,
            highly_available=True,
            host=f"node{node}",
            workload=common_pb2.GuestWorkload(dirty_rate_mb_per_s=0.1, journal_writes_per_s=1),
        )
        job = stub.CreateVm(request, timeout=60).job
        for update in stub.WatchJob(manager_pb2.WatchJobRequest(id=job.id), timeout=120):
            job = update.job
        if job.state != manager_pb2.JOB_STATE_COMPLETED:
            raise SystemExit(f"creating {request.name} failed: {job.error}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda args: create(*args), [(n, i) for n in range(1, 5) for i in range(per_node)]))


def vms_on(stub: manager_pb2_grpc.ManagerServiceStub, host: str) -> set[str]:
    return {vm.name for vm in stub.ListVms(manager_pb2.ListVmsRequest(), timeout=10).vms if vm.host == host}


def wait_failover(
    stub: manager_pb2_grpc.ManagerServiceStub, host: str, names: set[str], timeout: float
) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        vms = {vm.name: vm for vm in stub.ListVms(manager_pb2.ListVmsRequest(), timeout=10).vms}
        if all(vms[n].host != host and vms[n].state == common_pb2.VM_STATE_RUNNING for n in names):
            return time.time()
        time.sleep(0.02)
    raise SystemExit(f"the VMs of {host} did not all run elsewhere within {timeout} s")


def inject(state: Path, stub, events: EventLog, host: str, sig: signal.Signals) -> tuple[float, float, int]:
    names = vms_on(stub, host)
    pid = json.loads((state / "cluster.json").read_text())["components"][f"agent:{host}"]["pid"]
    t0 = time.time()
    os.kill(pid, sig)
    done = wait_failover(stub, host, names, timeout=30)
    detected = None
    while detected is None and time.time() < t0 + 30:
        detected = events.first(t0, host, "=> not_responding")
        time.sleep(0.01)
    if detected is None:
        raise SystemExit(f"no not_responding event for {host}")
    if sig == signal.SIGSTOP:
        os.kill(pid, signal.SIGKILL)  # release the frozen host; the run's cluster ends soon
    return detected - t0, done - t0, len(names)


def one_run(per_node: int) -> dict[str, tuple[float, float, int]]:
    with tempfile.TemporaryDirectory(prefix="havm-bench-") as tmp:
        state, topology = Path(tmp) / "state", Path(tmp) / "topology.yaml"
        topology.write_text(TOPOLOGY)
        havm(state, "up", "--detach", "--topology", str(topology))
        up_at = time.monotonic()
        try:
            address = json.loads((state / "cluster.json").read_text())["components"]["manager"]["address"]
            with grpc.insecure_channel(address) as channel:
                stub = manager_pb2_grpc.ManagerServiceStub(channel)
                create_vms(stub, per_node)
                events = EventLog(stub)
                # A few heartbeats of every host since the VMs started, and past the first
                # heartbeat window after the manager connected to the broker: until then
                # it judges no host, by design.
                time.sleep(max(1.5, JUDGING_AFTER_S - (time.monotonic() - up_at)))
                results = {"crash": inject(state, stub, events, "node1", signal.SIGKILL)}
                time.sleep(1.0)
                results["power-off"] = inject(state, stub, events, "node2", signal.SIGSTOP)
                events.close()
                return results
        finally:
            subprocess.run([*HAVM, "--state-dir", str(state), "down"], capture_output=True)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vms-per-node", type=int, default=25)
    args = parser.parse_args()
    measures: dict[str, list[float]] = {}
    for run in range(args.runs):
        for fault, (detection, failover, count) in one_run(args.vms_per_node).items():
            measures.setdefault(f"{fault} detection", []).append(detection)
            measures.setdefault(f"{fault} failover", []).append(failover)
            print(
                f"run {run + 1} {fault}: detected {detection:.3f} s, "
                + f"{count} VMs running elsewhere {failover:.3f} s"
            )
    for name, values in measures.items():
        print(
            f"{name:<20} median {statistics.median(values):.3f} s  p99 {p99(values):.3f} s  (n={len(values)})"
        )


if __name__ == "__main__":
    main()
