"""Read commands against the real manager of a simulated cluster, in table and JSON mode."""

from __future__ import annotations

import re

import pytest

from havm.scenario.testing import SimClusterSession
from havm.v1 import agent_pb2, common_pb2

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
# Virtual time 0 of the simulated cluster is 2026-01-01T00:00:00Z.
STAMP = re.compile(r"^2026-01-01T00:0\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def populated(cluster: SimClusterSession) -> SimClusterSession:
    """web1 running on node1 (CSV, network Public), db1 stopped on node3, a VM someone
    made on node1 behind the manager's back (imported at the refresh: highly available
    on local disk), esx1 in maintenance, node2 crashed and fenced, and hv1 overcommitted
    (its two nodes left cannot restart each other's big VMs)."""
    cli = cluster.cli
    for args in (
        ("vm", "create", "web1", "--ha", "--memory-mb", "2048", "--cpus", "2", "--host", "node1"),
        ("vm", "create", "db1", "--ha", "--memory-mb", "1024", "--host", "node3", "--no-start"),
        ("vm", "create", "big1", "--ha", "--memory-mb", "9000", "--host", "node1"),
        ("vm", "create", "big3", "--ha", "--memory-mb", "9000", "--host", "node3"),
        ("host", "maintenance", "start", "esx1"),
    ):
        result = (
            cli(*args, "--storage", "csv:Volume1", "--network", "Public")
            if args[1] == "create"
            else cli(*args)
        )
        assert result.exit_code == 0, (args, result.stderr)
    spec = common_pb2.VmSpec(
        id="6d1f6a9e-0000-4000-8000-00000000beef",
        name="legacy1",
        memory_mb=512,
        cpus=1,
        disk_gb=10,
        storage=common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_LOCAL_DISK, name="C"),
        networks=["Public"],
        highly_available=True,
    )
    cluster.run(cluster.agent("node1").CreateVm(agent_pb2.AgentServiceCreateVmRequest(spec=spec)))
    assert cli("cluster", "refresh", "hv1").exit_code == 0
    assert cli("fault", "crash", "node2").exit_code == 0
    cluster.advance(10)
    return cluster


def test_host_list_json_follows_the_field_contract(populated: SimClusterSession) -> None:
    result = populated.cli("host", "list", "-o", "json")
    assert result.exit_code == 0, result.stderr
    hosts = {h["name"]: h for h in result.json()}
    assert set(hosts) == {"node1", "node2", "node3", "q1", "q2", "solo1", "solo2", "esx1"}
    for host in hosts.values():
        assert HOST_FIELDS <= set(host)
    node1, node2, esx1, q1 = hosts["node1"], hosts["node2"], hosts["esx1"], hosts["q1"]
    assert node1["profile"] == "hyperv-2008r2" and esx1["profile"] == "esx" and q1["profile"] == "hyperv-2008"
    assert (node1["state"], node2["state"], esx1["state"]) == ("ok", "fenced", "maintenance")
    assert esx1["cluster"] is None and node1["cluster"] == "hv1" and q1["cluster"] == "old"
    assert node1["cpu"] == {
        "vendor": "GenuineIntel",
        "model": "Xeon E5520",
        "features": ["sse4_2", "popcnt"],
        "cores": 8,
        "mhz": 2266,
    }
    assert esx1["cpu"]["vendor"] == "AuthenticAMD"
    assert STAMP.match(node1["last_refresh"]), node1["last_refresh"]
    volumes = {v["name"]: v for v in node1["volumes"]}
    assert volumes["Volume1"]["kind"] == "csv" and volumes["Volume1"]["capacity_bytes"] == 2**40
    assert 0 < volumes["Volume1"]["free_bytes"] <= 2**40
    assert "Data" not in volumes  # the LUN only node3 sees
    assert node1["networks"][0] == {
        "name": "Public",
        "kind": "virtual_network",
        "bound_to": "PCI bus 3",
        "vlan_id": 10,
    }
    assert esx1["networks"][0]["kind"] == "port_group"
    assert (node1["memory_mb"], node1["vm_count"]) == (16384, 3)  # web1, big1 and the imported one
    # The host's reserve, web1 and big1; the imported VM is stopped and holds no memory.
    assert node1["memory_free_mb"] == 16384 - 2048 - 2048 - 9000
    assert isinstance(node1["rating"], float) and node2["rating"] == 0.0
    assert "it rejoins once it answers again" in node2["state_reason"]
    assert node1["state_reason"] == "" and node1["added_at_runtime"] is False


def test_host_list_filtered_and_as_a_table(populated: SimClusterSession) -> None:
    filtered = populated.cli("host", "list", "--cluster", "hv1", "-o", "json")
    assert filtered.exit_code == 0, filtered.stderr
    assert sorted(h["name"] for h in filtered.json()) == ["node1", "node2", "node3"]
    table = populated.cli("host", "list")
    assert table.exit_code == 0, table.stderr
    for word in (
        "NAME",
        "STATE",
        "FREE MB",
        "node1",
        "esx1",
        "fenced",
        "maintenance",
        "hyperv-2008r2",
        "esx",
    ):
        assert word in table.stdout, word


def test_host_show_json_and_table(populated: SimClusterSession) -> None:
    shown = populated.cli("host", "show", "node3", "-o", "json")
    assert shown.exit_code == 0, shown.stderr
    node3 = shown.json()
    assert HOST_FIELDS <= set(node3) and node3["name"] == "node3"
    assert [d["name"] for d in node3["disks"]] == ["C", "Data"]
    assert {(v["kind"], v["name"]) for v in node3["volumes"]} == {
        ("csv", "Volume1"),
        ("csv", "Volume2"),
        ("lun", "Data"),
    }
    table = populated.cli("host", "show", "node1")
    assert table.exit_code == 0, table.stderr
    for word in ("node1", "GenuineIntel", "Volume1", "Public", "sse4_2"):
        assert word in table.stdout, word


def test_vm_list_json_follows_the_field_contract(populated: SimClusterSession) -> None:
    result = populated.cli("vm", "list", "-o", "json")
    assert result.exit_code == 0, result.stderr
    vms = {v["name"]: v for v in result.json()}
    assert set(vms) == {"web1", "db1", "big1", "big3", "legacy1"}
    for vm in vms.values():
        assert VM_FIELDS <= set(vm)
    web1, db1, legacy1 = vms["web1"], vms["db1"], vms["legacy1"]
    assert web1["state"] == "running" and web1["ha"] is True and web1["storage"] == "csv:Volume1"
    assert (web1["host"], web1["status"], web1["cpus"], web1["networks"]) == ("node1", "ok", 2, ["Public"])
    assert STAMP.match(web1["created_at"]) and web1["imported"] is False and web1["migration_id"] is None
    assert (db1["host"], db1["state"]) == ("node3", "stopped")
    assert legacy1["imported"] is True and legacy1["host"] == "node1" and legacy1["storage"] == "local:C"
    assert legacy1["status"] == "unsupported_cluster_configuration"
    assert legacy1["status_reasons"] == [
        {
            "cause": "local_storage",
            "detail": "its files are on local disk C, which no other host can see",
            "subject": "local_disk:C",
        }
    ]
    assert legacy1["ignored_reasons"] == []


def test_vm_list_filters_by_host_and_renders_a_table(populated: SimClusterSession) -> None:
    filtered = populated.cli("vm", "list", "--host", "node3", "-o", "json")
    assert filtered.exit_code == 0, filtered.stderr
    assert sorted(v["name"] for v in filtered.json()) == ["big3", "db1"]
    table = populated.cli("vm", "list")
    assert table.exit_code == 0, table.stderr
    for word in ("web1", "db1", "running", "stopped", "csv:Volume1", "unsupported_cluster_configuration"):
        assert word in table.stdout, word
    # The cause's mark, beside the status.
    assert "[local_storage]" in " ".join(table.stdout.split()), table.stdout


def test_vm_show(populated: SimClusterSession) -> None:
    shown = populated.cli("vm", "show", "web1", "-o", "json")
    listed = {v["name"]: v for v in populated.cli("vm", "list", "-o", "json").json()}
    assert shown.exit_code == 0 and shown.json()["id"] == listed["web1"]["id"]
    table = populated.cli("vm", "show", "legacy1")
    assert table.exit_code == 0, table.stderr
    assert "which no other host can see" in table.stdout


def test_cluster_list_and_show(populated: SimClusterSession) -> None:
    listed = populated.cli("cluster", "list", "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    clusters = {c["name"]: c for c in listed.json()}
    assert set(clusters) == {"hv1", "old"}
    assert CLUSTER_FIELDS <= set(clusters["hv1"])
    assert clusters["hv1"]["state"] == "overcommitted" and clusters["old"]["state"] == "ok"
    assert clusters["hv1"]["nodes"] == ["node1", "node2", "node3"] and clusters["hv1"]["reserve"] == 1
    assert clusters["old"]["profile"] == "hyperv-2008"
    assert [v["name"] for v in clusters["hv1"]["volumes"]] == ["Volume1", "Volume2", "Data"]
    shown = populated.cli("cluster", "show", "hv1", "-o", "json")
    assert shown.exit_code == 0 and shown.json() == clusters["hv1"]
    for table in (populated.cli("cluster", "list"), populated.cli("cluster", "show", "hv1")):
        assert table.exit_code == 0 and "hv1" in table.stdout and "overcommitted" in table.stdout


def test_job_list_show_and_limit(cluster: SimClusterSession) -> None:
    cli = cluster.cli
    assert cli("vm", "create", "solo1", "--memory-mb", "4096", "--host", "esx1", "--no-start").exit_code == 0
    assert cli("vm", "create", "solo2", "--memory-mb", "4096", "--host", "esx1").exit_code == 0
    assert cli("vm", "start", "solo1").exit_code == 1  # esx1 has no room left for it
    assert cli("cluster", "refresh", "hv1").exit_code == 0
    listed = cli("job", "list", "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    jobs = listed.json()
    assert all(JOB_FIELDS <= set(j) for j in jobs)
    assert [(j["kind"], j["target"], j["state"]) for j in jobs] == [
        ("refresh", "hv1", "completed"),
        ("start_vm", "solo1", "failed"),
        ("create_vm", "solo2", "completed"),
        ("create_vm", "solo1", "completed"),
    ]
    refresh, failed = jobs[0], jobs[1]
    assert refresh["error"] is None and refresh["message"] == "Refreshed cluster hv1: 3 of 3 host(s) ok"
    assert "not enough memory on esx1 to start solo1: needs 4096 MB" in failed["error"]
    limited = cli("job", "list", "--limit", "1", "-o", "json")
    assert [j["id"] for j in limited.json()] == [refresh["id"]]
    shown = cli("job", "show", refresh["id"], "-o", "json")
    assert shown.exit_code == 0 and shown.json() == refresh and shown.json()["progress"] == 100
    for table in (cli("job", "list"), cli("job", "show", failed["id"])):
        assert table.exit_code == 0 and failed["id"] in table.stdout
