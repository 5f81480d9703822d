"""Read commands against the fake manager, in table and JSON mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from havm_runner import run_many

from havm.cli.context import ClusterContext, Component, write_context

HOST_FIELDS = {
    "name",
    "cluster",
    "profile",
    "state",
    "address",
    "memory_mb",
    "memory_free_mb",
    "vm_count",
    "rating",
    "cpu",
    "disks",
    "networks",
    "volumes",
    "last_refresh",
    "state_reason",
    "added_at_runtime",
}
VM_FIELDS = {
    "id",
    "name",
    "host",
    "state",
    "ha",
    "status",
    "status_reasons",
    "memory_mb",
    "cpus",
    "disk_gb",
    "storage",
    "networks",
    "imported",
    "reason",
    "created_at",
    "processor_compatibility",
    "migration_id",
}
CLUSTER_FIELDS = {"name", "profile", "nodes", "reserve", "state", "volumes"}
JOB_FIELDS = {"id", "kind", "target", "state", "progress", "message", "error", "created_at", "updated_at"}


def test_host_list_json_follows_the_field_contract(havm):
    result = havm("host", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    hosts = {h["name"]: h for h in result.json()}
    assert set(hosts) == {"node1", "node2", "esx1"}
    for host in hosts.values():
        assert HOST_FIELDS <= set(host)
    node1, node2, esx1 = hosts["node1"], hosts["node2"], hosts["esx1"]
    assert node1["profile"] == "hyperv-2008r2" and esx1["profile"] == "esx"
    assert node1["state"] == "ok" and node2["state"] == "not_responding" and esx1["state"] == "maintenance"
    assert esx1["cluster"] is None and node1["cluster"] == "hv1"
    assert node1["cpu"] == {
        "vendor": "GenuineIntel",
        "model": "Xeon E5520",
        "features": ["sse4_2", "popcnt"],
        "cores": 8,
        "mhz": 2266,
    }
    assert node1["last_refresh"] == "2023-11-14T22:13:20Z" and esx1["last_refresh"] is None
    assert node1["volumes"][0] == {
        "name": "Volume1",
        "kind": "csv",
        "capacity_bytes": 2**40,
        "free_bytes": 2**39,
    }
    assert node1["networks"][0]["kind"] == "virtual_network" and esx1["networks"][0]["kind"] == "port_group"
    assert node1["rating"] == 4.5
    assert node2["state_reason"] == "no heartbeat for 5 s and the probe failed"


def test_host_list_filtered_and_as_a_table(havm):
    filtered, result = run_many(havm, [("host", "list", "--cluster", "hv1", "-o", "json"), ("host", "list")])
    assert filtered.returncode == 0, filtered.stderr
    assert sorted(h["name"] for h in filtered.json()) == ["node1", "node2"]
    assert result.returncode == 0, result.stderr
    for word in ("NAME", "STATE", "node1", "node2", "esx1", "not_responding", "hyperv-2008r2", "12288"):
        assert word in result.stdout


def test_host_show_json_and_table(havm):
    shown, table = run_many(havm, [("host", "show", "node1", "-o", "json"), ("host", "show", "node1")])
    assert shown.returncode == 0, shown.stderr
    assert HOST_FIELDS <= set(shown.json()) and shown.json()["name"] == "node1"
    assert table.returncode == 0, table.stderr
    for word in ("node1", "GenuineIntel", "Volume1", "Public", "sse4_2"):
        assert word in table.stdout


def test_vm_list_json_follows_the_field_contract(havm):
    result = havm("vm", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    vms = {v["name"]: v for v in result.json()}
    assert VM_FIELDS <= set(vms["web1"]) and VM_FIELDS <= set(vms["db1"])
    web1, db1 = vms["web1"], vms["db1"]
    assert web1["state"] == "running" and web1["ha"] is True and web1["storage"] == "csv:Volume1"
    assert web1["host"] == "node1" and web1["status"] == "ok" and web1["created_at"] == "2023-11-14T22:15:00Z"
    assert db1["host"] is None and db1["state"] == "stopped" and db1["storage"] == "local:C"
    assert db1["status"] == "unsupported_cluster_configuration"
    assert db1["status_reasons"] == ["its files are on local disk C, not on cluster storage"]
    assert db1["imported"] is True and db1["created_at"] is None


def test_vm_list_filters_by_host_and_renders_a_table(havm):
    filtered, table = run_many(havm, [("vm", "list", "--host", "node1", "-o", "json"), ("vm", "list")])
    assert [v["name"] for v in filtered.json()] == ["web1"]
    assert table.returncode == 0, table.stderr
    for word in ("web1", "db1", "running", "csv:Volume1", "unsupported_cluster_configuration"):
        assert word in table.stdout


def test_vm_show(havm):
    shown, table = run_many(havm, [("vm", "show", "web1", "-o", "json"), ("vm", "show", "db1")])
    assert shown.returncode == 0 and shown.json()["id"] == "vm-1"
    assert table.returncode == 0, table.stderr
    assert "not on cluster storage" in table.stdout


def test_cluster_list_and_show(havm):
    listed, shown, *tables = run_many(
        havm,
        [
            ("cluster", "list", "-o", "json"),
            ("cluster", "show", "hv1", "-o", "json"),
            ("cluster", "list"),
            ("cluster", "show", "hv1"),
        ],
    )
    assert listed.returncode == 0, listed.stderr
    clusters = {c["name"]: c for c in listed.json()}
    assert CLUSTER_FIELDS <= set(clusters["hv1"])
    assert clusters["hv1"]["state"] == "overcommitted" and clusters["old"]["state"] == "ok"
    assert clusters["hv1"]["nodes"] == ["node1", "node2"] and clusters["hv1"]["reserve"] == 1
    assert clusters["old"]["profile"] == "hyperv-2008"
    assert clusters["hv1"]["volumes"][0]["name"] == "Volume1"
    assert shown.json() == clusters["hv1"]
    for table in tables:
        assert table.returncode == 0 and "hv1" in table.stdout and "overcommitted" in table.stdout


def test_job_list_show_and_limit(havm):
    listed, limited, shown, *tables = run_many(
        havm,
        [
            ("job", "list", "-o", "json"),
            ("job", "list", "--limit", "1", "-o", "json"),
            ("job", "show", "job-1", "-o", "json"),
            ("job", "list"),
            ("job", "show", "job-2"),
        ],
    )
    assert listed.returncode == 0, listed.stderr
    jobs = listed.json()
    assert all(JOB_FIELDS <= set(j) for j in jobs)
    by_id = {j["id"]: j for j in jobs}
    assert by_id["job-1"]["state"] == "completed" and by_id["job-1"]["error"] is None
    assert by_id["job-2"]["state"] == "failed" and "4096 MB" in by_id["job-2"]["error"]
    assert len(limited.json()) == 1
    assert shown.json()["kind"] == "refresh" and shown.json()["progress"] == 100
    for table in tables:
        assert table.returncode == 0 and "job-2" in table.stdout


def test_status_without_context_shows_the_manager(havm):
    result, table = run_many(havm, [("status", "-o", "json"), ("status",)])
    assert result.returncode == 0, result.stderr
    status = result.json()
    assert status["components"] == []
    assert status["manager"]["version"] == "0.1.0-fake"
    assert status["manager"]["hosts_total"] == 3 and status["manager"]["clusters"][0]["name"] == "hv1"
    assert table.returncode == 0 and "hosts 1/3 ok" in table.stdout


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_status_lists_local_processes_from_the_context_file(havm_bare, manager, tmp_path: Path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    write_context(
        ClusterContext(
            state_dir=str(state_dir),
            topology=str(state_dir / "topology.yaml"),
            components={
                "manager": Component("manager", manager.address, pid=os.getpid()),
                "agent:node1": Component("agent:node1", "127.0.0.1:7001", pid=_dead_pid()),
            },
        )
    )
    result = havm_bare("--state-dir", str(state_dir), "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    components = {c["name"]: c for c in result.json()["components"]}
    assert components["manager"]["alive"] is True and components["manager"]["address"] == manager.address
    assert components["agent:node1"]["alive"] is False
    table = havm_bare("status", env={"HAVM_STATE_DIR": str(state_dir)})
    assert table.returncode == 0, table.stderr
    assert "agent:node1" in table.stdout and "0.1.0-fake" in table.stdout
