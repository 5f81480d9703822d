"""A full partition healed: every node of a three-node cluster cut from everything at
once, each applying its isolation response, then all healed together. Every host must
rejoin as `ok` and every HA VM run exactly once again, with the no-two-copies
invariant checked throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_harness import (
    LocalCluster,
    active_copies,
    assert_invariant,
    start_cluster,
    stop_cluster,
    wait_for,
)

pytestmark = pytest.mark.integration

NODES = ["p1", "p2", "p3"]
ISOLATION_TIMEOUT_S = 6

TOPOLOGY = f"""
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {{vendor: GenuineIntel, model: Xeon E5520, features: [sse4_2, popcnt], cores: 4, mhz: 2266}}
  memory_mb: 8192
  disks: [{{name: C, capacity_gb: 100}}]
  networks: [{{name: External, bound_to: "NIC 1"}}]
isolation: {{timeout_s: {ISOLATION_TIMEOUT_S}, response: power_off}}
clusters:
  - name: c1
    profile: hyperv-2008r2
    reserve: 0
    nodes: [p1, p2, p3]
    csvs: [{{name: Volume1, capacity_gb: 500}}]
hosts:
  - {{name: p1}}
  - {{name: p2}}
  - {{name: p3}}
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    (tmp_path / "topology.yaml").write_text(TOPOLOGY)
    local = start_cluster(tmp_path / "state", "--topology", str(tmp_path / "topology.yaml"))
    try:
        yield local
    finally:
        stop_cluster(local)


def hosts(cluster: LocalCluster) -> dict[str, str]:
    return {h["name"]: h["state"] for h in cluster.json("host", "list")}


def ha_vms_running_once(cluster: LocalCluster) -> list[str]:
    """What is still wrong: HA VMs not running exactly once where the manager says."""
    copies = active_copies(cluster)
    problems = []
    for vm in cluster.json("vm", "list"):
        running = list(copies.get(vm["id"], {}))
        if running != [vm["host"]] or vm["state"] != "running":
            problems.append(f"{vm['name']}: {vm['state']} on {vm['host']}, active on {running}")
    return problems


def test_a_full_partition_heals_with_every_host_ok_and_every_vm_running_once(cluster: LocalCluster) -> None:
    for i, node in enumerate(NODES):
        cluster.ok("vm", "create", f"part{i}", "--ha", "--memory-mb", "256", "--host", node)
    for node in NODES:
        cluster.ok("fault", "isolate", node, "--from", "all")
    cut_at = time.monotonic()
    # Until every isolation response has fired and the manager has judged every host.
    # The agents are left alone meanwhile: a direct call would count as contact.
    time.sleep(max(0.0, ISOLATION_TIMEOUT_S + 3 - (time.monotonic() - cut_at)))
    wait_for(
        lambda: all(state in ("fenced", "fencing", "not_responding") for state in hosts(cluster).values()),
        timeout=10,
        interval=0.3,
        what="every node judged down",
    )
    assert not any(active_copies(cluster, NODES).values()), "a VM still runs after the isolation responses"
    assert_invariant(cluster, "during the partition")
    for node in NODES:
        cluster.ok("fault", "heal", node)
    assert_invariant(cluster, "right after the heal")
    wait_for(
        lambda: all(state == "ok" for state in hosts(cluster).values()),
        timeout=30,
        interval=0.3,
        what=f"every host ok again (now {hosts(cluster)})",
    )
    wait_for(lambda: not ha_vms_running_once(cluster), timeout=30, interval=0.3, what="every HA VM running")
    assert not ha_vms_running_once(cluster), ha_vms_running_once(cluster)
    assert_invariant(cluster, "after the recovery")
    cluster.ok("cluster", "refresh")  # a refresh later: nobody falls back to fenced
    assert set(hosts(cluster).values()) == {"ok"}, hosts(cluster)
