"""Hosts added to and removed from a running local cluster, through the `havm` command
line, on real processes: the new agent runs, is a node of its cluster, takes HA VMs,
survives a manager restart, and leaves no process behind when removed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, alive, start_cluster, stop_cluster, wait_dead, wait_for

# Hosts added at runtime through faults, restarts and failover: in the robustness phase
# (scripts/test), its tests on one worker: they share a cluster.
pytestmark = [pytest.mark.integration, pytest.mark.robustness, pytest.mark.xdist_group("host_admin")]

TOPOLOGY = """
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Intel Xeon X5570, features: [sse3, sse4_2], cores: 4, mhz: 2933}
  memory_mb: 8192
  host_reserve_mb: 1024
  disks: [{name: C, capacity_gb: 100}]
  networks: [{name: External, bound_to: "nic 1"}]
clusters:
  - name: cluster1
    profile: hyperv-2008r2
    reserve: 1
    nodes: [node1, node2]
    csvs: [{name: Volume1, capacity_gb: 500}]
    luns: [{name: lun1, capacity_gb: 50}, {name: lun2, capacity_gb: 50, visible_to: [node1]}]
hosts:
  - {name: node1}
  - {name: node2}
  - {name: standalone1}
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    topology = tmp_path / "topology.yaml"
    topology.write_text(TOPOLOGY)
    local = start_cluster(tmp_path / "state", "--topology", str(topology))
    try:
        yield local
    finally:
        stop_cluster(local)


def hosts(cluster: LocalCluster) -> dict[str, dict]:
    return {h["name"]: h for h in cluster.json("host", "list")}


def test_a_host_added_at_runtime_joins_takes_vms_survives_a_restart_and_leaves(cluster: LocalCluster) -> None:
    added = cluster.json("host", "add", "node5", "--cluster", "cluster1", "--memory-mb", "16384")
    assert (added["name"], added["cluster"], added["state"], added["memory_mb"]) == (
        "node5",
        "cluster1",
        "ok",
        16384,
    )
    # The new node sees the CSV and the LUN every node sees, not the one zoned to node1.
    assert [v["name"] for v in added["volumes"]] == ["Volume1", "lun1"]
    node5 = hosts(cluster)["node5"]
    assert node5["state"] == "ok" and node5["profile"] == "hyperv-2008r2"
    assert cluster.json("cluster", "show", "cluster1")["nodes"] == ["node1", "node2", "node5"]
    agent = cluster.component("agent:node5")
    assert alive(agent["pid"]) and alive(cluster.component("faultnet:node5")["pid"])

    vm = cluster.json("vm", "create", "web5", "--ha", "--memory-mb", "256", "--host", "node5")
    assert (vm["host"], vm["state"], vm["storage"]) == ("node5", "running", "csv:Volume1")
    refused = cluster.havm("host", "remove", "node5")
    assert refused.code == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (
        "error: host node5 cannot be removed: VM web5 is placed on it; move or delete it first"
    )
    assert alive(agent["pid"])

    cluster.ok("restart", "manager")
    wait_for(lambda: hosts(cluster)["node5"]["state"] == "ok", what="node5 ok after the restart")
    assert hosts(cluster)["node5"]["cluster"] == "cluster1"
    assert cluster.json("vm", "show", "web5")["host"] == "node5"

    cluster.ok("vm", "stop", "web5")
    cluster.ok("vm", "delete", "web5", "--yes")
    removed = cluster.ok("host", "remove", "node5")
    assert removed.stdout.strip() == "host node5 removed and its agent stopped"
    wait_dead(agent["pid"], timeout=5)
    assert "node5" not in hosts(cluster)
    assert "agent:node5" not in cluster.context()["components"]
    assert cluster.json("cluster", "show", "cluster1")["nodes"] == ["node1", "node2"]


def test_bad_additions_are_one_sentence_and_start_nothing_that_stays(cluster: LocalCluster) -> None:
    before = set(cluster.context()["components"])
    for args, message in [
        (("node1", "--cluster", "cluster1"), "error: host node1 already exists"),
        (("node6", "--cluster", "cluster9"), "error: cluster cluster9 does not exist"),
        (
            ("node6", "--cluster", "cluster1", "--profile", "esx"),
            "error: host node6 runs esx but cluster cluster1 runs hyperv-2008r2",
        ),
        (
            ("node6", "--memory-mb", "512"),
            "error: host node6: host.memory_mb: must be greater than host_reserve_mb",
        ),
    ]:
        result = cluster.havm("host", "add", *args)
        assert result.code == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert set(cluster.context()["components"]) == before
    assert set(hosts(cluster)) == {"node1", "node2", "standalone1"}


def test_a_topology_host_removed_stays_removed_and_an_added_one_comes_back_after_up(
    cluster: LocalCluster,
) -> None:
    cluster.ok("host", "add", "solo2", "--memory-mb", "4096")
    refused = cluster.havm("host", "remove", "node2")  # cluster1 would keep 1 node for a reserve of 1
    assert refused.code == 1 and "lower the reserve first" in refused.stderr
    cluster.ok("host", "remove", "standalone1")
    cluster.kill9("manager")
    cluster.kill9("agent:solo2")
    cluster.ok("up", "--detach")  # starts only what is missing: the manager and solo2's agent
    wait_for(lambda: hosts(cluster).get("solo2", {}).get("state") == "ok", what="solo2 back")
    assert set(hosts(cluster)) == {"node1", "node2", "solo2"}
    assert "agent:standalone1" not in cluster.context()["components"]
    assert cluster.context()["removed_hosts"] == ["standalone1"]


def test_an_added_host_is_judged_and_failed_over_like_any_other(cluster: LocalCluster) -> None:
    cluster.ok("host", "add", "node5", "--cluster", "cluster1")
    vm = cluster.json("vm", "create", "web5", "--ha", "--memory-mb", "256", "--host", "node5")
    assert vm["host"] == "node5"
    cluster.ok("fault", "crash", "node5")
    wait_for(lambda: hosts(cluster)["node5"]["state"] == "fenced", what="node5 fenced", timeout=30)
    moved = cluster.json("vm", "show", "web5")
    assert (
        moved["state"] == "running" and moved["host"] in {"node1", "node2"} and moved["failover_count"] == 1
    )
    cluster.ok("host", "start", "node5")
    wait_for(lambda: hosts(cluster)["node5"]["state"] == "ok", what="node5 back", timeout=30)
    assert cluster.json("vm", "show", "web5")["host"] != "node5"


def test_an_added_hosts_heartbeat_path_can_be_cut_and_healed(cluster: LocalCluster) -> None:
    cluster.ok("host", "add", "node5", "--cluster", "cluster1")
    cluster.ok("fault", "isolate", "node5", "--from", "heartbeat")
    try:
        wait_for(lambda: hosts(cluster)["node5"]["state"] == "isolated", what="node5 isolated", timeout=10)
        assert hosts(cluster)["node1"]["state"] == "ok"
    finally:
        cluster.ok("fault", "heal", "node5")
    wait_for(lambda: hosts(cluster)["node5"]["state"] == "ok", what="node5 ok again", timeout=15)
