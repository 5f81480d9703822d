"""Fault injection on a real local cluster: each fault does to the processes and the
network what it says, and the cluster comes back from it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest
from cluster_harness import LocalCluster, alive, start_cluster, stop_cluster, wait_for

# In the robustness phase (scripts/test), its tests on one worker: they share a cluster.
pytestmark = [pytest.mark.integration, pytest.mark.robustness, pytest.mark.xdist_group("faults")]

TOPOLOGY = """
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon E5520, features: [sse4_2, popcnt], cores: 4, mhz: 2266}
  memory_mb: 8192
  disks: [{name: C, capacity_gb: 100}]
  networks: [{name: External, bound_to: "NIC 1"}]
clusters:
  - name: c1
    profile: hyperv-2008r2
    nodes: [n1, n2, n3]
    csvs: [{name: Volume1, capacity_gb: 500}]
hosts:
  - {name: n1}
  - {name: n2}
  - {name: n3}
  - {name: solo}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> LocalCluster:
    directory = tmp_path_factory.mktemp("faults")
    topology = directory / "topology.yaml"
    topology.write_text(TOPOLOGY)
    local = start_cluster(directory / "state", "--topology", str(topology))
    try:
        yield local
    finally:
        stop_cluster(local)


def states(cluster: LocalCluster) -> dict[str, str]:
    return {h["name"]: h["state"] for h in cluster.json("host", "list")}


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_cut_management_path_and_its_heal(cluster: LocalCluster) -> None:
    cluster.ok("fault", "isolate", "n1", "--from", "management")
    cluster.ok("cluster", "refresh")
    assert states(cluster)["n1"] == "not_responding"
    cluster.ok("fault", "heal", "n1")
    cluster.ok("cluster", "refresh")
    assert states(cluster)["n1"] == "ok"


def test_power_off_stops_the_host_silently_and_host_start_boots_a_new_one(cluster: LocalCluster) -> None:
    before = cluster.component("agent:n2")["pid"]
    cluster.ok("fault", "power-off", "n2")
    assert process_state(before) == "T", "a powered-off host's process is stopped, not gone"
    refused = cluster.havm("fault", "thaw", "n2")
    assert refused.code == 1 and "host start n2" in refused.stderr
    cluster.ok("host", "start", "n2")
    after = cluster.component("agent:n2")["pid"]
    assert after != before and alive(after) and not alive(before)
    cluster.ok("cluster", "refresh")
    assert states(cluster)["n2"] == "ok"


def test_freeze_and_thaw_resume_the_same_process(cluster: LocalCluster) -> None:
    pid = cluster.component("agent:n3")["pid"]
    cluster.ok("fault", "freeze", "n3")
    assert process_state(pid) == "T"
    cluster.ok("fault", "thaw", "n3")
    assert process_state(pid) in "RS" and cluster.component("agent:n3")["pid"] == pid
    again = cluster.havm("fault", "thaw", "n3")
    assert again.code == 1 and "not frozen" in again.stderr


def test_crash_and_start_a_host(cluster: LocalCluster) -> None:
    pid = cluster.component("agent:solo")["pid"]
    cluster.ok("fault", "crash", "solo")
    assert not alive(pid)
    cluster.ok("host", "start", "solo")
    cluster.ok("cluster", "refresh")
    # The crash may have been judged (fenced) by the time the new agent answers: the
    # host rejoins once the manager has heard the new boot, a moment later.
    wait_for(lambda: states(cluster)["solo"] == "ok", timeout=15, what="solo back in service")
    running = cluster.havm("host", "start", "solo")
    assert running.code == 1 and "already running" in running.stderr


def test_manager_crash_and_restart_keeps_the_vms(cluster: LocalCluster) -> None:
    cluster.json("vm", "create", "keeper", "--ha", "--memory-mb", "256")
    cluster.ok("fault", "crash-manager")
    assert cluster.havm("vm", "list").code == 1
    cluster.ok("restart", "manager")
    cluster.ok("cluster", "refresh")
    assert cluster.json("vm", "show", "keeper")["state"] == "running"


def test_broker_crash_and_restart_the_agents_come_back_online(cluster: LocalCluster) -> None:
    cluster.ok("fault", "crash-broker")
    cluster.ok("restart", "broker")
    address = cluster.component("broker")["address"]
    host, port = address.rsplit(":", 1)

    async def online_hosts() -> set[str]:
        seen: dict[str, str] = {}
        async with aiomqtt.Client(
            host, int(port), identifier="test-faults", **cluster.broker_login()
        ) as client:
            await client.subscribe("havm/v1/hosts/+/status", qos=1)
            try:
                async with asyncio.timeout(15):
                    async for message in client.messages:
                        seen[str(message.topic).split("/")[3]] = json.loads(message.payload)["state"]
                        if sum(state == "online" for state in seen.values()) == 4:
                            break
            except TimeoutError:
                pass
        return {h for h, state in seen.items() if state == "online"}

    # The new broker knows nothing: every agent must reconnect and publish again.
    assert asyncio.run(online_hosts()) == {"n1", "n2", "n3", "solo"}


@pytest.mark.parametrize(
    "args, sentence",
    [
        (("fault", "crash", "nohost"), "no host named nohost"),
        (("fault", "isolate", "n1", "--from", "power"), "--from"),
        (("restart", "scheduler"), "scheduler"),
        (("fault", "crash-at", "nohost", "migration-source-paused"), "no host named nohost"),
        (("fault", "crash-at", "n1", "somewhere"), "somewhere"),
        (("fault", "crash-manager-at", "somewhere"), "somewhere"),
    ],
)
def test_bad_fault_requests_are_one_line(cluster: LocalCluster, args: tuple[str, ...], sentence: str) -> None:
    result = cluster.havm(*args)
    assert result.code in (1, 2) and sentence in result.stderr and "Traceback" not in result.stderr


def test_no_cluster_no_fault(tmp_path: Path) -> None:
    result = LocalCluster(tmp_path).havm("fault", "crash", "n1")
    assert result.code == 1 and "havm up" in result.stderr


def test_events_as_json_lines(cluster: LocalCluster) -> None:
    cluster.ok("fault", "isolate", "n3", "--from", "heartbeat")
    try:
        wait_for(lambda: states(cluster)["n3"] == "isolated", what="n3 isolated", timeout=20)
    finally:
        cluster.ok("fault", "heal", "n3")
    wait_for(lambda: states(cluster)["n3"] == "ok", what="n3 ok again", timeout=20)
    lines = cluster.ok("events", "--last", "200", "-o", "json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    fields = {"time", "kind", "host", "vm", "cluster", "detail", "old_state", "new_state"}
    assert events and all(set(e) == fields for e in events)
    changes = [
        (e["old_state"], e["new_state"]) for e in events if e["kind"] == "host_state" and e["host"] == "n3"
    ]
    assert any(new == "isolated" for _, new in changes) and ("isolated", "ok") in changes, changes
    assert all(e["old_state"] is None and e["new_state"] is None for e in events if e["kind"] == "detector")
    assert not any(e["kind"] == "failover" and e["host"] == "n3" for e in events)
