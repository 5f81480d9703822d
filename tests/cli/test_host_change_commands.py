"""`havm host network|storage|vm|cluster-resource ...` against the agents of a simulated
cluster: what an administrator changes on a host directly, what the commands print (table and JSON),
that the manager learns of it only at its next refresh, and one sentence for every
refusal."""

from __future__ import annotations

import pytest

from havm.scenario.testing import SimClusterSession
from havm.v1 import agent_pb2

GIB = 1024**3


def manager_networks(cluster: SimClusterSession, host: str) -> dict[str, int]:
    shown = cluster.cli("host", "show", host, "-o", "json")
    assert shown.exit_code == 0, shown.stderr
    return {n["name"]: n["vlan_id"] for n in shown.json()["networks"]}


def agent_inventory(cluster: SimClusterSession, host: str) -> agent_pb2.AgentServiceGetInventoryResponse:
    request = agent_pb2.AgentServiceGetInventoryRequest()
    return cluster.run(cluster.agent(host).GetInventory(request, timeout=5))


def test_network_commands_change_the_host_and_the_manager_sees_it_after_a_refresh(
    cluster: SimClusterSession,
) -> None:
    before = manager_networks(cluster, "node2")
    assert before == {"Public": 10, "Backup": 0}

    added = cluster.cli(
        "host", "network", "add", "node2", "Backend", "--bound-to", "PCI bus 5", "--vlan", "30"
    )
    assert added.exit_code == 0, added.stderr
    assert added.stdout.splitlines()[0] == "network Backend added on host node2 (bound to PCI bus 5, VLAN 30)"
    assert "Backend" in added.stdout and "PCI bus 5" in added.stdout

    changed = cluster.cli(
        "host", "network", "set", "node2", "Public", "--vlan", "7", "--rename", "PUBLIC", "-o", "json"
    )
    assert changed.exit_code == 0, changed.stderr
    assert changed.json() | {"volumes": None} == {
        "host": "node2",
        "networks": [
            {"name": "PUBLIC", "kind": "virtual_network", "bound_to": "PCI bus 3", "vlan_id": 7},
            {"name": "Backup", "kind": "virtual_network", "bound_to": "PCI bus 4", "vlan_id": 0},
            {"name": "Backend", "kind": "virtual_network", "bound_to": "PCI bus 5", "vlan_id": 30},
        ],
        "volumes": None,
        "disconnected_vms": [],
    }
    removed = cluster.cli("host", "network", "remove", "node2", "Backup")
    assert removed.exit_code == 0, removed.stderr
    assert removed.stdout.splitlines()[0] == "network Backup removed from host node2"

    # The agent reports the change at once; the manager only once it refreshed the host.
    assert [n.name for n in agent_inventory(cluster, "node2").host.networks] == ["PUBLIC", "Backend"]
    assert manager_networks(cluster, "node2") == before
    assert cluster.cli("cluster", "refresh").exit_code == 0
    assert manager_networks(cluster, "node2") == {"PUBLIC": 7, "Backend": 30}


def test_removing_a_network_names_the_vms_it_disconnects(cluster: SimClusterSession) -> None:
    created = cluster.cli(
        "vm", "create", "web1", "--memory-mb", "512", "--host", "solo1", "--network", "Public"
    )
    assert created.exit_code == 0, created.stderr
    table = cluster.cli("host", "network", "remove", "solo1", "Public")
    assert table.exit_code == 0, table.stderr
    vm_id = cluster.cli("vm", "show", "web1", "-o", "json").json()["id"]
    assert table.stdout.splitlines()[1] == f"VMs disconnected from it: web1 ({vm_id})"
    again = cluster.cli(
        "host", "network", "add", "solo1", "Public", "--bound-to", "PCI bus 3", "--vlan", "10"
    )
    assert again.exit_code == 0, again.stderr
    removed = cluster.cli("host", "network", "remove", "solo1", "Public", "-o", "json")
    assert removed.json()["disconnected_vms"] == [{"id": vm_id, "name": "web1"}]


def test_storage_commands_make_a_lun_visible_and_keep_one_that_holds_a_vm(cluster: SimClusterSession) -> None:
    added = cluster.cli("host", "storage", "add", "node2", "Data", "--kind", "lun", "--capacity-gb", "512")
    assert added.exit_code == 0, added.stderr
    assert added.stdout.splitlines()[0] == "LUN Data (512 GB) now visible to host node2"
    csv = cluster.cli(
        "host", "storage", "add", "node2", "Volume3", "--kind", "csv", "--capacity-gb", "64", "-o", "json"
    )
    assert csv.exit_code == 0, csv.stderr
    volumes = {(v["kind"], v["name"]): v["capacity_bytes"] // GIB for v in csv.json()["volumes"]}
    assert volumes == {
        ("csv", "Volume1"): 1024,
        ("csv", "Volume2"): 1024,
        ("lun", "Data"): 512,
        ("csv", "Volume3"): 64,
    }

    vm = cluster.cli("host", "vm", "create", "node2", "adm1", "--storage", "lun:Data")
    assert vm.exit_code == 0, vm.stderr
    refused = cluster.cli("host", "storage", "remove", "node2", "Data")
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == (
        "error: LUN Data holds VM adm1 of host node2; move or delete them before the host stops seeing it\n"
    )
    gone = cluster.cli("host", "storage", "remove", "node2", "Volume3", "--kind", "csv", "-o", "json")
    assert gone.exit_code == 0, gone.stderr
    assert ("csv", "Volume3") not in {(v["kind"], v["name"]) for v in gone.json()["volumes"]}


def test_host_vm_create_makes_vms_the_manager_finds_at_its_refresh_and_may_share_a_lun(
    cluster: SimClusterSession,
) -> None:
    first = cluster.cli(
        *("host", "vm", "create", "node3", "adm1", "--storage", "lun:Data", "--memory-mb", "512"),
        *("--network", "Public", "--start", "-o", "json"),
    )
    assert first.exit_code == 0, first.stderr
    shown = first.json()
    assert {k: shown[k] for k in ("name", "host", "state", "memory_mb", "cpus", "disk_gb", "networks")} == {
        "name": "adm1",
        "host": "node3",
        "state": "running",
        "memory_mb": 512,
        "cpus": 1,
        "disk_gb": 20,
        "networks": ["Public"],
    }
    assert shown["storage"] == "lun:Data"
    # A second VM on the same LUN: the host allows it (only the manager would refuse).
    second = cluster.cli("host", "vm", "create", "node3", "adm2", "--storage", "lun:Data", "--ha")
    assert second.exit_code == 0, second.stderr
    assert second.stdout.startswith("VM adm2 created on host node3 (stopped), id ")
    # The default storage is the host's first local disk.
    third = cluster.cli("host", "vm", "create", "node3", "adm3", "-o", "json")
    assert third.json()["storage"] == "local:C"

    assert cluster.cli("vm", "list", "-o", "json").json() == []
    assert cluster.cli("cluster", "refresh").exit_code == 0
    found = {vm["name"]: vm["state"] for vm in cluster.cli("vm", "list", "-o", "json").json()}
    assert found == {"adm1": "running", "adm2": "stopped", "adm3": "stopped"}


@pytest.mark.parametrize(
    "argv, sentence",
    [
        (
            ("network", "remove", "node2", "public"),
            "host node2 has no virtual network named 'public' (names are compared exactly: it has 'Public')",
        ),
        (
            ("network", "add", "node2", "Public", "--bound-to", "x"),
            "host node2 already has a virtual network named",
        ),
        (
            ("network", "add", "node2", "N", "--bound-to", "x", "--vlan", "4095"),
            "network.vlan_id: must be between 0",
        ),
        (("network", "set", "node2", "Public", "--vlan", "-1"), "vlan_id: must be between 0 and 4094"),
        (("network", "set", "node2", "Public"), "give at least one of --bound-to, --vlan or --rename"),
        (("network", "set", "node2", "Public", "--rename", "Backup"), "new_name: host node2 already has"),
        (
            ("network", "add", "node2", "N", "--bound-to", "x", "--vlan", "99999999999"),
            "--vlan: 99999999999 is out",
        ),
        (
            ("storage", "add", "node2", "L", "--kind", "disk", "--capacity-gb", "5"),
            "--kind: must be csv or lun",
        ),
        (
            ("storage", "add", "node2", "L", "--kind", "lun", "--capacity-gb", "0"),
            "--capacity-gb: must be a positive",
        ),
        (
            ("storage", "add", "node2", "my lun", "--kind", "lun", "--capacity-gb", "5"),
            "volume.name: 'my lun' must",
        ),
        (
            ("storage", "add", "q1", "V", "--kind", "csv", "--capacity-gb", "5"),
            "host q1 runs hyperv-2008, which has",
        ),
        (("storage", "remove", "node2", "Nope"), "host node2 sees no CSV volume or LUN named 'Nope'"),
        (
            ("vm", "create", "node2", "x", "--network", "Nope"),
            "spec.networks: host node2 has no virtual network",
        ),
        (("network", "add", "nodeX", "N", "--bound-to", "x"), "host nodeX does not exist"),
        (
            ("vm", "create", "node2", "x", "--passthrough", "csv:Volume1"),
            "--passthrough: CSV volume Volume1 is a volume, not a disk to pass through; "
            "give lun:NAME or local:NAME",
        ),
        (
            ("vm", "create", "node2", "x", "--passthrough", "disk:Z"),
            "--passthrough: 'disk:Z' is not lun:NAME",
        ),
        (
            ("vm", "create", "node2", "x", "--passthrough", "lun:Data"),
            "spec.passthrough_disks[0]: host node2 cannot see LUN Data",
        ),
        (
            ("vm", "create", "node2", "x", "--passthrough", "local:C"),
            "spec.passthrough_disks[0]: local disk C holds the files of VM x itself",
        ),
        (("vm", "create", "node2", "x", "--iso", "x" * 261), "spec.iso_image: the path has 261 characters"),
        (
            ("cluster-resource", "add", "node2", "nope", "R", "--type", "T"),
            "host node2 has no VM named 'nope'",
        ),
        (("cluster-resource", "remove", "node2", "nope", "R"), "host node2 has no VM named 'nope'"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_code_1(cluster: SimClusterSession, argv, sentence: str) -> None:
    result = cluster.cli("host", *argv)
    assert (result.exit_code, result.stdout) == (1, ""), result.stdout
    assert result.stderr.startswith(f"error: {sentence}"), result.stderr
    assert result.stderr.count("\n") == 1


def test_host_vm_create_passes_disks_through_and_inserts_an_iso(cluster: SimClusterSession) -> None:
    created = cluster.cli(
        *("host", "vm", "create", "node3", "db1", "--storage", "csv:Volume1", "--memory-mb", "512"),
        *(
            "--passthrough",
            "lun:Data",
            "--passthrough",
            "local:Data",
            "--iso",
            r"C:\iso\sql.iso",
            "-o",
            "json",
        ),
    )
    assert created.exit_code == 0, created.stderr
    shown = created.json()
    assert shown["passthrough_disks"] == ["lun:Data", "local:Data"]
    assert (shown["iso_image"], shown["cluster_resources"]) == (r"C:\iso\sql.iso", [])
    plain = cluster.cli("host", "vm", "create", "node3", "web1", "-o", "json").json()
    assert (plain["passthrough_disks"], plain["iso_image"]) == ([], None)
    # Only one VM may have a disk passed through.
    again = cluster.cli("host", "vm", "create", "node3", "db2", "--passthrough", "lun:Data")
    assert (again.exit_code, again.stdout) == (1, "")
    assert again.stderr == (
        "error: spec.passthrough_disks[0]: LUN Data is already passed through to VM db1 on host node3\n"
    )
    vms = agent_inventory(cluster, "node3").vms
    assert sorted((v.spec.name, [d.name for d in v.spec.passthrough_disks]) for v in vms) == [
        ("db1", ["Data", "Data"]),
        ("web1", []),
    ]


def test_cluster_resource_commands_change_a_vms_group_on_its_host(cluster: SimClusterSession) -> None:
    made = cluster.cli("host", "vm", "create", "node2", "db1", "--storage", "csv:Volume1", "--ha")
    assert made.exit_code == 0, made.stderr
    assert cluster.cli("host", "vm", "create", "node2", "web1").exit_code == 0

    added = cluster.cli(
        "host", "cluster-resource", "add", "node2", "db1", "Replication db1", "--type", "Replication Service"
    )
    assert added.exit_code == 0, added.stderr
    lines = added.stdout.splitlines()
    assert lines[0] == (
        "resource Replication db1 (Replication Service) added to the cluster group of VM db1 on host node2"
    )
    assert "Replication db1" in added.stdout and "Replication Service" in added.stdout

    second = cluster.cli(
        "host",
        "cluster-resource",
        "add",
        "node2",
        "db1",
        "Backup agent",
        "--type",
        "Generic Service",
        "-o",
        "json",
    )
    assert second.exit_code == 0, second.stderr
    vm_id = second.json()["vm_id"]
    assert second.json() == {
        "host": "node2",
        "vm": "db1",
        "vm_id": vm_id,
        "cluster_resources": [
            {"name": "Replication db1", "type": "Replication Service"},
            {"name": "Backup agent", "type": "Generic Service"},
        ],
    }
    refusals = [
        (
            ("add", "node2", "web1", "R", "--type", "T"),
            "VM web1 is not highly available: it has no cluster group",
        ),
        (
            ("add", "node2", "db1", "BACKUP AGENT", "--type", "T"),
            "the cluster group of VM db1 already has a resource named 'Backup agent'",
        ),
        (
            ("add", "node2", "db1", "Virtual Machine db1", "--type", "T"),
            "resource.name: 'Virtual Machine db1' is one of the cluster group's own resources",
        ),
        (("add", "node2", "db1", "R", "--type", ""), "resource.type: is required"),
        (("remove", "node2", "db1", "Nope"), "the cluster group of VM db1 has no resource named 'Nope'"),
    ]
    for argv, sentence in refusals:
        result = cluster.cli("host", "cluster-resource", *argv)
        assert (result.exit_code, result.stdout) == (1, ""), result.stdout
        assert result.stderr.startswith(f"error: {sentence}") and result.stderr.count("\n") == 1, (
            result.stderr
        )

    removed = cluster.cli(
        "host", "cluster-resource", "remove", "node2", vm_id, "Replication db1", "-o", "json"
    )
    assert removed.exit_code == 0, removed.stderr
    assert removed.json()["cluster_resources"] == [{"name": "Backup agent", "type": "Generic Service"}]
    table = cluster.cli("host", "cluster-resource", "remove", "node2", "db1", "Backup agent")
    assert (
        table.stdout.splitlines()[0]
        == "resource Backup agent removed from the cluster group of VM db1 on host node2"
    )
    kept = [vm for vm in agent_inventory(cluster, "node2").vms if vm.spec.name == "db1"]
    assert [list(vm.spec.cluster_resources) for vm in kept] == [[]]
