"""The cluster reserve end to end on real processes: a refusal, an override, the cluster
state the manager retains on the broker, and the reserve surviving a manager restart.

The rest of capacity runs on virtual time in tests/scenarios: the exact count the
reserve admits (reserve-admits-exactly-21-vms-of-4-gib), maintenance mode
(maintenance-*), overcommit after node failures and capacity waits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from cluster_harness import (
    LocalCluster,
    start_cluster,
    stop_cluster,
    wait_for,
)

pytestmark = pytest.mark.integration

# Three of these fill three nodes of the default topology (30,720 MB usable each).
BIG = "24000"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """The default topology: node1..node4 (30,720 MB usable each), reserve 1, standalone1."""
    local = start_cluster(tmp_path / "state")
    try:
        yield local
    finally:
        stop_cluster(local)


def cluster1(cluster: LocalCluster) -> dict:
    return cluster.json("cluster", "show", "cluster1")


def create(cluster: LocalCluster, name: str, *args: str, memory_mb: str) -> dict:
    return cluster.json("vm", "create", name, "--ha", "--memory-mb", memory_mb, *args)


def cluster_events(cluster: LocalCluster) -> list[str]:
    lines = cluster.ok("events", "-o", "json", "--last", "500").stdout.splitlines()
    return [e["detail"] for e in map(json.loads, lines) if e["kind"] == "cluster_state"]


def retained_cluster_state(cluster: LocalCluster) -> dict:
    """The retained `havm/v1/state/clusters/cluster1` message on the broker."""
    host, _, port = cluster.component("broker")["address"].rpartition(":")

    async def read() -> dict:
        async with aiomqtt.Client(
            host, int(port), identifier="capacity-test", **cluster.broker_login()
        ) as client:
            await client.subscribe("havm/v1/state/clusters/cluster1", qos=1)
            async for message in client.messages:
                # The embedded broker may hand a new subscriber other retained topics too.
                if message.topic.matches("havm/v1/state/clusters/cluster1"):
                    return json.loads(bytes(message.payload))
        raise AssertionError("no retained cluster state")

    return asyncio.run(asyncio.wait_for(read(), 10))


def test_an_override_overcommits_and_the_broker_retains_the_cluster_state(cluster: LocalCluster) -> None:
    # Three nodes full: with reserve 1, a fourth VM fits nowhere the reserve allows.
    for number, node in enumerate(("node1", "node2", "node3"), start=1):
        create(cluster, f"v{number}", "--host", node, memory_mb=BIG)
    assert cluster1(cluster)["state"] == "ok"
    refused = cluster.havm("vm", "create", "v4", "--ha", "--memory-mb", BIG)
    assert refused.code == 1 and "refused by the cluster reserve" in refused.stderr
    create(cluster, "v4", "--host", "node4", memory_mb=BIG)
    assert cluster1(cluster)["state"] == "overcommitted"
    wait_for(lambda: retained_cluster_state(cluster)["state"] == "overcommitted", what="retained state")
    cluster.ok("cluster", "set", "cluster1", "--reserve", "0")
    ok = {"state": "ok", "reserve": 0, "overcommit": None}
    wait_for(lambda: retained_cluster_state(cluster) == ok, what="the retained state ok again")
    events = cluster_events(cluster)
    assert any("ok => overcommitted" in e for e in events) and "overcommitted => ok" in events[-1]
    # The reserve set through the CLI survives a manager restart.
    cluster.ok("restart", "manager")
    assert cluster1(cluster)["reserve"] == 0
