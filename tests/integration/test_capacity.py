"""Capacity end to end through the CLI on real processes: the cluster reserve on the
default cluster (fill, refusal, override, reserve changed, a node failure), and
maintenance mode (live, a failed evacuation, save, stop, a host that is not ok). Every
test that injects a fault checks that no VM runs on two hosts and no HA VM is lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiomqtt
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

GIB4 = "4096"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """The default topology: node1..node4 (30,720 MB usable each), reserve 1, standalone1."""
    local = start_cluster(tmp_path / "state")
    try:
        yield local
    finally:
        stop_cluster(local)


def vms(cluster: LocalCluster) -> dict[str, dict]:
    return {vm["name"]: vm for vm in cluster.json("vm", "list")}


def cluster1(cluster: LocalCluster) -> dict:
    return cluster.json("cluster", "show", "cluster1")


def host_state(cluster: LocalCluster, name: str) -> str:
    return cluster.json("host", "show", name)["state"]


def create(cluster: LocalCluster, name: str, *args: str, memory_mb: str = GIB4) -> dict:
    return cluster.json("vm", "create", name, "--ha", "--memory-mb", memory_mb, *args)


def cluster_events(cluster: LocalCluster) -> list[str]:
    lines = cluster.ok("events", "-o", "json", "--last", "500").stdout.splitlines()
    return [e["detail"] for e in map(json.loads, lines) if e["kind"] == "cluster_state"]


def retained_cluster_state(cluster: LocalCluster) -> dict:
    """The retained `havm/v1/state/clusters/cluster1` message on the broker."""
    host, _, port = cluster.component("broker")["address"].rpartition(":")

    async def read() -> dict:
        async with aiomqtt.Client(host, int(port), identifier="capacity-test") as client:
            await client.subscribe("havm/v1/state/clusters/cluster1", qos=1)
            async for message in client.messages:
                # The embedded broker may hand a new subscriber other retained topics too.
                if message.topic.matches("havm/v1/state/clusters/cluster1"):
                    return json.loads(bytes(message.payload))
        raise AssertionError("no retained cluster state")

    return asyncio.run(asyncio.wait_for(read(), 10))


def assert_no_ha_vm_lost(cluster: LocalCluster, names: list[str]) -> None:
    """Each of these HA VMs runs on exactly one agent, where the manager records it."""
    copies = active_copies(cluster)
    records = vms(cluster)
    for name in names:
        vm = records[name]
        running = list(copies.get(vm["id"], {}))
        assert running == [vm["host"]] and vm["state"] == "running", (name, running, vm["state"], vm["host"])


def test_the_reserve_admits_exactly_21_vms_of_4_gib_and_an_override_overcommits(
    cluster: LocalCluster,
) -> None:
    # Any three nodes hold 21 VMs of 4 GiB, so with reserve 1 the 22nd is refused.
    # Four creates at a time: placement counts a VM being created as running.
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: create(cluster, f"v{i}"), range(1, 22)))
    assert cluster1(cluster)["state"] == "ok"
    place = cluster.json("vm", "place", "--memory-mb", GIB4, "--ha")
    assert place["best_host"] is None
    for rating in place["ratings"]:
        assert rating["stars"] == 0
        codes = [r["code"] for r in rating["reasons"] if r["blocking"]]
        assert codes == (["would_overcommit"] if rating["cluster"] else ["not_cluster_node"]), rating
    refused = cluster.havm("vm", "create", "v22", "--ha", "--memory-mb", GIB4)
    assert refused.code == 1 and "Traceback" not in refused.stderr
    assert "refused by the cluster reserve" in refused.stderr and "failed" in refused.stderr
    assert "--host" in refused.stderr and "v22" not in vms(cluster)
    # The administrator overrides by naming a node; the job says what it did.
    create(cluster, "v22", "--host", "node4")
    job = cluster.json("job", "list", "--limit", "1")[0]
    assert "overriding the reserve; cluster cluster1 is now overcommitted" in job["message"]
    shown = cluster1(cluster)
    assert shown["state"] == "overcommitted"
    assert len(shown["overcommit"]["failed_nodes"]) == 1 and shown["overcommit"]["unplaced_vms"]
    assert "could not restart on any other node" in shown["overcommit"]["detail"]
    wait_for(lambda: retained_cluster_state(cluster)["state"] == "overcommitted", what="retained state")
    # Bad input is one sentence; a lower reserve makes the cluster ok again.
    bad = cluster.havm("cluster", "set", "cluster1", "--reserve", "4")
    assert bad.code == 1 and bad.stderr.strip() == (
        "error: reserve: must be from 0 to 3 for cluster cluster1 (4 nodes), got 4"
    )
    cluster.ok("cluster", "set", "cluster1", "--reserve", "0")
    shown = cluster1(cluster)
    assert (shown["reserve"], shown["state"], shown["overcommit"]) == (0, "ok", None)
    events = cluster_events(cluster)
    assert any("ok => overcommitted" in e for e in events) and "overcommitted => ok" in events[-1]
    assert retained_cluster_state(cluster) == {"state": "ok", "reserve": 0, "overcommit": None}
    # The reserve set through the CLI survives a manager restart.
    cluster.ok("restart", "manager")
    assert cluster1(cluster)["reserve"] == 0


def test_maintenance_live_evacuates_by_rating_and_stop_moves_nothing_back(cluster: LocalCluster) -> None:
    names = [f"m{i}" for i in range(6)]
    for name in names:
        create(cluster, name, "--host", "node1", memory_mb="512")
    create(cluster, "off", "--host", "node1", "--no-start", memory_mb="1024")
    job = cluster.json("host", "maintenance", "start", "node1")
    assert job["state"] == "completed", job
    assert job["message"] == "Host node1 is in maintenance mode: 6 VM(s) live-migrated, 0 saved"
    steps = {s["vm"]: s for s in job["steps"]}
    assert set(steps) == set(names)
    assert all(s["outcome"] == "live_migrated" for s in steps.values())
    placed = {name: vm["host"] for name, vm in vms(cluster).items()}
    # Spread by rating over the other nodes, as the steps said.
    assert {placed[n] for n in names} == {"node2", "node3", "node4"}
    assert all(placed[n] == steps[n]["host"] for n in names)
    assert placed["off"] == "node1" and vms(cluster)["off"]["state"] == "stopped"
    assert_invariant(cluster, "after the evacuation")
    assert_no_ha_vm_lost(cluster, names)
    assert host_state(cluster, "node1") == "maintenance"
    # The hosts' free memory is right as soon as the migrations end, not at the next refresh.
    assert cluster.json("host", "show", "node1")["memory_free_mb"] == 30720
    assert sum(cluster.json("host", "show", h)["memory_free_mb"] for h in ("node2", "node3", "node4")) == (
        3 * 30720 - 6 * 512
    )
    rating = next(
        r
        for r in cluster.json("vm", "place", "--memory-mb", "512", "--ha")["ratings"]
        if r["host"] == "node1"
    )
    assert rating["stars"] == 0 and rating["reasons"][0]["code"] == "maintenance"
    refused = cluster.havm("vm", "create", "x", "--ha", "--memory-mb", "512", "--host", "node1")
    assert refused.code == 1 and "node1 is in maintenance mode" in refused.stderr
    refused = cluster.havm("vm", "migrate", "m0", "--to", "node1")
    assert refused.code == 1 and "maintenance" in refused.stderr
    refused = cluster.havm("vm", "start", "off")
    assert refused.code == 1 and "maintenance" in refused.stderr
    stop = cluster.json("host", "maintenance", "stop", "node1")
    assert stop["state"] == "completed" and "nothing moved back" in stop["message"]
    assert host_state(cluster, "node1") == "ok"
    assert {name: vm["host"] for name, vm in vms(cluster).items()} == placed


def test_maintenance_fails_when_a_live_migration_fails_and_keeps_what_moved(cluster: LocalCluster) -> None:
    for name in ("big", "small"):
        create(cluster, name, "--host", "node1", memory_mb="2048" if name == "big" else "1024")
    # node2..node4 are empty: the largest VM goes to node2 (first by name), the next to node3.
    cluster.ok("fault", "isolate", "node3", "--from", "migration")
    try:
        failed = cluster.havm("host", "maintenance", "start", "node1", "-o", "json", timeout=90)
    finally:
        cluster.ok("fault", "heal", "node3")
    assert failed.code == 1 and "Traceback" not in failed.stderr
    job = failed.json()
    assert job["state"] == "failed"
    assert job["error"].startswith(
        "host node1 did not enter maintenance mode: live migration to node3 of VM small"
    )
    steps = {s["vm"]: (s["outcome"], s["host"]) for s in job["steps"]}
    assert steps == {"big": ("live_migrated", "node2"), "small": ("failed", "node3")}
    assert host_state(cluster, "node1") == "ok"
    placed = vms(cluster)
    assert placed["big"]["host"] == "node2" and placed["small"]["host"] == "node1"  # nothing moved back
    assert_invariant(cluster, "after the failed evacuation")
    assert_no_ha_vm_lost(cluster, ["big", "small"])
