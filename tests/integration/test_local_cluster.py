"""The default local cluster end to end, through the `havm` command line: the issue's
acceptance scenario, plus crash recovery of the manager and of one agent."""

from __future__ import annotations

import time
import uuid

import pytest
from cluster_harness import LocalCluster, alive, wait_for

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

pytestmark = pytest.mark.integration

CLUSTER_NODES = {"node1", "node2", "node3", "node4"}


def vm(cluster: LocalCluster, name: str) -> dict:
    return cluster.json("vm", "show", name)


def test_every_host_is_ok(default_cluster: LocalCluster) -> None:
    hosts = default_cluster.json("host", "list")
    assert {h["name"] for h in hosts} == CLUSTER_NODES | {"standalone1", "library1"}
    assert all(h["state"] == "ok" for h in hosts), hosts
    by_name = {h["name"]: h for h in hosts}
    assert by_name["standalone1"]["cluster"] is None
    assert by_name["node1"]["cluster"] == "cluster1"
    assert by_name["node1"]["profile"] == "hyperv-2008r2"
    assert by_name["node1"]["memory_mb"] == 32768
    assert (by_name["library1"]["profile"], by_name["library1"]["rating"]) == ("library", 0)
    assert by_name["library1"]["capabilities"]["library_server"] is True
    assert 0 < by_name["node1"]["memory_free_mb"] <= 32768
    clusters = default_cluster.json("cluster", "list")
    assert [(c["name"], set(c["nodes"]), c["reserve"], c["state"]) for c in clusters] == [
        ("cluster1", CLUSTER_NODES, 1, "ok")
    ]


def test_ha_and_non_ha_placement(default_cluster: LocalCluster) -> None:
    web = default_cluster.json("vm", "create", "web1", "--ha", "--memory-mb", "2048")
    assert web["host"] in CLUSTER_NODES and web["ha"] is True
    assert web["storage"].startswith("csv:")
    db = default_cluster.json("vm", "create", "db1", "--memory-mb", "1024")
    assert db["host"] == "standalone1" and db["ha"] is False
    for name in ("web1", "db1"):
        shown = vm(default_cluster, name)
        assert shown["state"] == "running" and shown["status"] == "ok", shown

    refused = default_cluster.havm("vm", "create", "app1", "--memory-mb", "512", "--host", "node2")
    assert refused.code == 1
    assert "--ha" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "app1" not in {v["name"] for v in default_cluster.json("vm", "list")}

    duplicate = default_cluster.havm("vm", "create", "web1", "--ha", "--memory-mb", "512")
    assert duplicate.code == 1 and "web1" in duplicate.stderr


def test_save_restore_keeps_memory_and_journal(default_cluster: LocalCluster) -> None:
    created = default_cluster.json(
        "vm", "create", "saver", "--ha", "--memory-mb", "512", "--journal-writes-per-s", "20"
    )
    time.sleep(0.5)
    default_cluster.ok("vm", "save", "saver")
    saved = vm(default_cluster, "saver")
    assert saved["state"] == "saved"
    before = default_cluster.guest_status(saved["host"], created["id"])
    assert before.journal_last_seq > 0
    default_cluster.ok("vm", "restore", "saver")
    assert vm(default_cluster, "saver")["state"] == "running"
    after = default_cluster.guest_status(saved["host"], created["id"])
    assert after.memory_digest and after.journal_last_seq >= before.journal_last_seq
    # The digest at restore equals the one at save; the guest then dirties memory again,
    # so compare right after a pause.
    default_cluster.ok("vm", "pause", "saver")
    paused = default_cluster.guest_status(saved["host"], created["id"])
    time.sleep(0.3)
    still = default_cluster.guest_status(saved["host"], created["id"])
    assert (paused.memory_digest, paused.journal_last_seq) == (
        still.memory_digest,
        still.journal_last_seq,
    ), "a paused guest changed its memory or wrote to its disk"
    default_cluster.ok("vm", "resume", "saver")
    default_cluster.ok("vm", "shutdown", "saver")
    assert vm(default_cluster, "saver")["state"] == "stopped"
    default_cluster.ok("vm", "delete", "saver", "--yes")
    gone = default_cluster.havm("vm", "show", "saver")
    assert gone.code == 1 and "saver" in gone.stderr


def test_memory_that_does_not_fit_is_refused(default_cluster: LocalCluster) -> None:
    # standalone1 has 16 GiB with 2 GiB kept for the parent partition.
    default_cluster.json("vm", "create", "big1", "--memory-mb", "9000", "--no-start")
    default_cluster.json("vm", "create", "big2", "--memory-mb", "9000", "--no-start")
    default_cluster.ok("vm", "start", "big1")
    refused = default_cluster.havm("vm", "start", "big2")
    assert refused.code == 1, refused.stdout
    assert "memory" in refused.stderr and "Traceback" not in refused.stderr
    assert vm(default_cluster, "big2")["state"] == "stopped"
    default_cluster.ok("vm", "stop", "big1")
    for name in ("big1", "big2"):
        default_cluster.ok("vm", "delete", name, "--yes")


def test_manager_kill9_loses_nothing(default_cluster: LocalCluster) -> None:
    default_cluster.json("vm", "create", "keep1", "--ha", "--memory-mb", "256")
    before = {v["name"]: v for v in default_cluster.json("vm", "list")}
    jobs_before = {j["id"] for j in default_cluster.json("job", "list", "--limit", "500")}
    default_cluster.kill9("manager")
    others = [c for n, c in default_cluster.context()["components"].items() if n != "manager"]

    default_cluster.ok("up", "--detach")  # starts only what is missing
    assert all(alive(c["pid"]) for c in others)
    after = {v["name"]: v for v in default_cluster.json("vm", "list")}
    assert set(after) == set(before)
    for name, record in before.items():
        assert after[name]["host"] == record["host"]
        assert after[name]["state"] == record["state"], name
    assert after["keep1"]["state"] == "running"
    jobs_after = {j["id"] for j in default_cluster.json("job", "list", "--limit", "500")}
    assert jobs_before <= jobs_after


def test_agent_kill9_finds_its_vms_again(default_cluster: LocalCluster) -> None:
    # A VM of the standalone host: nothing fails it over, so the host's own recovery
    # is what brings it back.
    created = default_cluster.json(
        "vm", "create", "crashy", "--memory-mb", "256", "--journal-writes-per-s", "50"
    )
    host = created["host"]
    assert host == "standalone1"
    time.sleep(0.4)
    acknowledged = default_cluster.guest_status(host, created["id"]).journal_last_seq
    default_cluster.kill9(f"agent:{host}")
    failed = ("not_responding", "fencing", "fenced")
    wait_for(
        lambda: {h["name"]: h["state"] for h in default_cluster.json("host", "list")}[host] in failed,
        what=f"{host} to be judged failed",
    )
    shown = vm(default_cluster, "crashy")
    assert shown["state"] == "unknown" and shown["host"] == host, shown

    default_cluster.ok("host", "start", host)
    wait_for(
        lambda: {h["name"]: h["state"] for h in default_cluster.json("host", "list")}[host] == "ok",
        what=f"{host} to rejoin",
    )
    wait_for(lambda: vm(default_cluster, "crashy")["state"] == "running", what="crashy running")
    first = default_cluster.guest_status(host, created["id"])
    assert first.journal_last_seq >= acknowledged, "an acknowledged write was lost in the crash"
    wait_for(
        lambda: default_cluster.guest_status(host, created["id"]).journal_last_seq > first.journal_last_seq,
        what="the journal to grow after the restart",
    )
    status = default_cluster.guest_status(host, created["id"])
    # Sequence numbers are dense: no write was repeated or lost across the crash.
    assert status.journal_writes == status.journal_last_seq


def test_an_idle_guest_writes_nothing(default_cluster: LocalCluster) -> None:
    created = default_cluster.json(
        "vm",
        "create",
        "idle1",
        "--ha",
        "--memory-mb",
        "256",
        "--dirty-rate-mb-s",
        "0",
        "--journal-writes-per-s",
        "0",
    )
    first = default_cluster.guest_status(created["host"], created["id"])
    time.sleep(0.5)
    later = default_cluster.guest_status(created["host"], created["id"])
    assert later.state == first.state and later.journal_last_seq == 0
    assert later.memory_digest == first.memory_digest


def test_a_vm_made_behind_the_managers_back_is_imported(default_cluster: LocalCluster) -> None:
    spec = common_pb2.VmSpec(
        id=str(uuid.uuid4()),
        name="rogue1",
        memory_mb=128,
        cpus=1,
        disk_gb=1,
        storage=common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_LOCAL_DISK, name="C"),
        highly_available=False,
    )
    with default_cluster.channel("agent:node3") as channel:
        agent_pb2_grpc.AgentServiceStub(channel).CreateVm(
            agent_pb2.AgentServiceCreateVmRequest(spec=spec), timeout=5
        )
    default_cluster.ok("cluster", "refresh")
    rogue = vm(default_cluster, "rogue1")
    assert rogue["imported"] is True and rogue["host"] == "node3" and rogue["id"] == spec.id
    assert rogue["state"] == "stopped"
    # Deleting an imported VM removes it from its host too.
    default_cluster.ok("vm", "delete", "rogue1", "--yes")
    default_cluster.ok("cluster", "refresh")
    assert "rogue1" not in {v["name"] for v in default_cluster.json("vm", "list")}
