"""When an isolated host applies its isolation response, on a real local cluster.

The response must come `isolation.timeout_s` after the host's last successful contact
with the manager or the broker, so within a second of the timeout after the network
is cut (heartbeats are echoed once a second), however long its connections still look
open. Afterwards the host rejoins without the stale copies of the VMs the cluster
restarted elsewhere, and no VM ever runs on two hosts."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cluster_harness import (
    ACTIVE_STATES,
    LocalCluster,
    active_copies,
    assert_invariant,
    inventory,
    split_brains,
    start_cluster,
    stop_cluster,
    wait_for,
)

from havm.v1 import common_pb2

# Timed: failure detection and response times are asserted, so it runs alone.
pytestmark = [pytest.mark.integration, pytest.mark.timed]

TIMEOUT_S = 6.0
# Contact resolution (a heartbeat echoed each second) and the check interval, both
# inside this tolerance.
TOLERANCE_S = 1.0
MOVING = ["timed1", "timed2"]

TOPOLOGY = f"""
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {{vendor: GenuineIntel, model: Xeon E5520, features: [sse4_2, popcnt], cores: 4, mhz: 2266}}
  memory_mb: 8192
  disks: [{{name: C, capacity_gb: 100}}]
  networks: [{{name: External, bound_to: "NIC 1"}}]
clusters:
  - name: c1
    profile: hyperv-2008r2
    reserve: 1
    nodes: [t1, t2]
    csvs: [{{name: Volume1, capacity_gb: 500}}]
isolation:
  timeout_s: {TIMEOUT_S}
  response: power_off
hosts:
  - {{name: t1}}
  - {{name: t2}}
"""


def log_time(line: str) -> float:
    """The time of an agent's log line (`2026-11-25T17:00:00.123Z LEVEL ...`)."""
    stamp = line.split(" ", 1)[0]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def lines_after(log: Path, since: float, text: str) -> list[str]:
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if text in line and line[:4].isdigit() and log_time(line) >= since
    ]


def test_the_isolation_response_comes_at_the_timeout_after_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY)
    cluster = start_cluster(tmp_path / "state", "--topology", str(path))
    try:
        check_isolation_timing(cluster)
    finally:
        stop_cluster(cluster)


def create(cluster: LocalCluster, name: str, priority: str) -> str:
    created = cluster.json(
        "vm",
        "create",
        name,
        "--ha",
        "--memory-mb",
        "256",
        "--journal-writes-per-s",
        "10",
        "--host",
        "t1",
        "--restart-priority",
        priority,
    )
    return created["id"]


def check_isolation_timing(cluster: LocalCluster) -> None:
    # The manager restarts these elsewhere (storage fencing stops t1's copies, perhaps
    # before the response); "stays" is never restarted: only the response stops it.
    ids = {name: create(cluster, name, "medium") for name in MOVING}
    ids["stays"] = create(cluster, "stays", "none")
    wait_for(
        lambda: all(cluster.guest_status("t1", vm_id).journal_last_seq > 0 for vm_id in ids.values()),
        what="journal writes on t1",
    )
    assert_invariant(cluster, "before the cut")
    agent_log = Path(cluster.component("agent:t1")["log"])

    cluster.ok("fault", "isolate", "t1", "--from", "all")
    # The relay confirms each cut by writing this file once the cut is in force.
    cut_at = (cluster.state_dir / "faultnet" / "faults.applied").stat().st_mtime
    assert time.time() - cut_at < 5, "the relay did not confirm the cut"

    # No call may reach t1 directly until it responded: it would be contact.
    deadline = cut_at + TIMEOUT_S + TOLERANCE_S + 3
    while not lines_after(agent_log, cut_at, "isolated: no management call"):
        assert not split_brains(active_copies(cluster, hosts=["t2"]))
        assert time.time() < deadline, (
            f"t1 did not respond to its isolation:\n{agent_log.read_text()[-3000:]}"
        )
        time.sleep(0.2)
    wait_for(
        lambda: lines_after(agent_log, cut_at, "VM stays: running => stopped"),
        timeout=3,
        what="t1 to power its VM off",
    )
    responded = log_time(lines_after(agent_log, cut_at, "isolated: no management call")[0])
    powered_off = log_time(lines_after(agent_log, cut_at, "VM stays: running => stopped")[0])
    delay, off_delay = responded - cut_at, powered_off - cut_at
    print(f"isolation response {delay:.2f} s after the cut, VM off {off_delay:.2f} s after it")
    assert TIMEOUT_S - TOLERANCE_S <= delay <= TIMEOUT_S + TOLERANCE_S, (
        f"response {delay:.2f} s after the cut"
    )
    assert TIMEOUT_S - TOLERANCE_S <= off_delay <= TIMEOUT_S + TOLERANCE_S, f"VM off {off_delay:.2f} s after"
    assert_invariant(cluster, "after the isolation response")
    assert not [vm.spec.id for vm in inventory(cluster, "t1") or [] if vm.state in ACTIVE_STATES]

    # The cluster restarts the others on t2; once healed, t1 rejoins holding none of them.
    wait_for(
        lambda: all(vm["host"] == "t2" and vm["state"] == "running" for vm in vms(cluster, MOVING)),
        timeout=20,
        interval=0.3,
        what="the VMs of t1 restarted on t2",
    )
    assert_invariant(cluster, "after the failover")
    cluster.ok("fault", "heal", "t1")
    wait_for(
        lambda: {h["name"]: h["state"] for h in cluster.json("host", "list")}["t1"] == "ok",
        timeout=20,
        interval=0.3,
        what="t1 ok after the heal",
    )
    assert_invariant(cluster, "after the heal")
    on_t1 = {vm.spec.id: vm.state for vm in inventory(cluster, "t1") or []}
    assert on_t1 == {ids["stays"]: common_pb2.VM_STATE_STOPPED}, on_t1
    copies = active_copies(cluster)
    assert all(list(copies.get(ids[n], {})) == ["t2"] for n in MOVING), copies
    assert ids["stays"] not in copies


def vms(cluster: LocalCluster, names: list[str]) -> list[dict]:
    listed = {vm["name"]: vm for vm in cluster.json("vm", "list")}
    return [listed[name] for name in names]
