"""Moves across the cluster boundary end to end: real agents, the real CLI.

A stopped or saved VM enters a cluster, leaves it or changes hosts outside one by SAN
transfer (the LUN's ownership moves, nothing is copied) or by network transfer (the
files stream agent to agent), and becomes highly available on the way in or stops
being so on the way out. Every test checks where the manager and the agents have the
VM, that its journal on disk is the one it had before the move, and that no VM is
active on two hosts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cluster_harness import LocalCluster, assert_invariant, inventory, topology_cluster, wait_for
from test_migration import finish, journal, migrate, start_migration, vm, vm_dir

from node_agent.adapters.files import read_journal_records

pytestmark = [pytest.mark.integration, pytest.mark.robustness, pytest.mark.xdist_group("transfers")]

# c1: a Windows Server 2008 R2 cluster. san1, san3 and pt1 (a disk to pass through) are
# zoned to every node and to standalone host s1; san2 to s1 and two of the three nodes;
# lun1 to the nodes only. s2 sees no LUN.
TOPOLOGY = """
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon X5570, features: [sse3, ssse3, sse4_1, sse4_2, popcnt, vmx, nx, lm],
        cores: 8, mhz: 2933}
  memory_mb: 8192
  host_reserve_mb: 1024
  disks: [{name: C, capacity_gb: 200}, {name: D, capacity_gb: 200}]
  networks: [{name: External, bound_to: "NIC 1"}]
migration:
  stall_timeout_s: 3
  # Slow enough that a transfer of a few hundred MB can be cut in the middle.
  bandwidth_mb_per_s: 300
clusters:
  - name: c1
    profile: hyperv-2008r2
    reserve: 1
    nodes: [n1, n2, n3]
    csvs: [{name: Volume1, capacity_gb: 500}]
    luns:
      - {name: san1, capacity_gb: 100, visible_to: [n1, n2, n3, s1]}
      - {name: san2, capacity_gb: 100, visible_to: [n1, n2, s1]}
      - {name: san3, capacity_gb: 100, visible_to: [n1, n2, n3, s1]}
      - {name: pt1, capacity_gb: 100, visible_to: [n1, n2, n3, s1]}
      - {name: lun1, capacity_gb: 100}
hosts:
  - {name: n1}
  - {name: n2}
  - {name: n3}
  - {name: s1}
  - {name: s2}
"""
MIB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    with topology_cluster(tmp_path_factory.mktemp("transfers"), TOPOLOGY) as local:
        yield local


def create(cluster: LocalCluster, name: str, host: str, *options: str) -> dict:
    cluster.ok("vm", "create", name, "--memory-mb", "256", "--disk-gb", "1", "--host", host, *options)
    return vm(cluster, name)


def written(cluster: LocalCluster, name: str, rest: str = "save") -> dict:
    """Start the VM until its guest has written to its journal, then save it (or turn it
    off, `rest="stop"`): a VM at rest with memory and disk worth keeping."""
    cluster.ok("vm", "start", name)
    record = vm(cluster, name)
    wait_for(lambda: len(journal(cluster, record)) >= 3, what=f"journal writes of {name}")
    cluster.ok("vm", rest, name)
    return vm(cluster, name)


def groups(cluster: LocalCluster) -> list[str]:
    return [g["vm"] for g in cluster.json("cluster", "groups", "c1", "-o", "json")]


def on_agent(cluster: LocalCluster, host: str, vm_id: str):  # type: ignore[no-untyped-def]
    return next((v for v in inventory(cluster, host) or [] if v.spec.id == vm_id), None)


def test_a_vm_created_on_a_cluster_node_is_made_highly_available_when_asked(cluster: LocalCluster) -> None:
    refused = cluster.havm("vm", "create", "m1", "--memory-mb", "256", "--host", "n1", "--no-start")
    assert refused.code == 1 and "--make-ha" in refused.stderr, refused.stderr
    made = create(cluster, "m1", "n1", "--make-ha", "--no-start")
    assert (made["host"], made["ha"], made["status"]) == ("n1", True, "ok")
    # A setting does not change it: the move does, and the refusal says which.
    for flag, way in (("--no-ha", "--to STANDALONE_HOST"), ("--ha", "--make-ha")):
        result = cluster.havm("vm", "set", "m1", flag)
        assert result.code == 1 and way in result.stderr and "Traceback" not in result.stderr, result.stderr
    cluster.ok("vm", "delete", "m1", "--yes")


def test_san_transfer_into_the_cluster_and_out_again(cluster: LocalCluster) -> None:
    create(cluster, "x1", "s1", "--storage", "lun:san1", "--no-start")
    before = written(cluster, "x1")
    records = journal(cluster, before)
    refused = cluster.havm("vm", "migrate", "x1", "--to", "n2")
    assert refused.code == 1 and "--make-ha" in refused.stderr, refused.stderr

    moved = migrate(cluster, "x1", "--to", "n2", "--make-ha")
    assert (moved["kind"], moved["bytes"], moved["highly_available_after"]) == ("san_transfer", 0, True)
    assert moved["duration_ms"] < 1000
    record = vm(cluster, "x1")
    assert (record["host"], record["state"], record["ha"], record["status"]) == ("n2", "saved", True, "ok")
    assert "x1" in groups(cluster)
    assert on_agent(cluster, "s1", record["id"]) is None
    assert on_agent(cluster, "n2", record["id"]).spec.highly_available
    assert journal(cluster, record) == records  # the same files: nothing was copied
    cluster.ok("vm", "restore", "x1")  # the saved state came along
    assert_invariant(cluster, "after the SAN transfer in")

    cluster.ok("vm", "save", "x1")
    out = migrate(cluster, "x1", "--to", "s1")
    assert (out["kind"], out["highly_available_after"]) == ("san_transfer", False)
    record = vm(cluster, "x1")
    assert (record["host"], record["ha"], record["state"]) == ("s1", False, "saved")
    assert "x1" not in groups(cluster)
    assert on_agent(cluster, "n2", record["id"]) is None
    cluster.ok("vm", "delete", "x1", "--yes")


def test_san_is_refused_when_a_node_cannot_see_the_lun_and_auto_copies_instead(cluster: LocalCluster) -> None:
    create(cluster, "x2", "s1", "--storage", "lun:san2", "--no-start")
    records = journal(cluster, written(cluster, "x2"))
    refused = cluster.havm("vm", "migrate", "x2", "--to", "n1", "--make-ha", "--transfer", "san")
    assert refused.code == 1
    assert "not every node of cluster c1 sees: n3 does not see it" in refused.stderr, refused.stderr
    assert vm(cluster, "x2")["host"] == "s1"

    moved = migrate(cluster, "x2", "--to", "n1", "--make-ha")
    assert moved["kind"] == "network_transfer" and moved["bytes"] > 0
    record = vm(cluster, "x2")
    assert (record["host"], record["storage"], record["ha"], record["state"]) == (
        "n1",
        "csv:Volume1",
        True,
        "saved",
    )
    assert journal(cluster, record) == records
    cluster.ok("vm", "restore", "x2")
    assert_invariant(cluster, "after the network transfer in")
    cluster.ok("vm", "stop", "x2")
    cluster.ok("vm", "delete", "x2", "--yes")


def test_out_of_a_csv_san_is_refused_and_auto_goes_over_the_network(cluster: LocalCluster) -> None:
    create(cluster, "x3", "n3", "--ha", "--no-start")
    records = journal(cluster, written(cluster, "x3"))
    refused = cluster.havm("vm", "migrate", "x3", "--to", "s1", "--transfer", "san")
    assert refused.code == 1 and "CSV volume Volume1" in refused.stderr, refused.stderr
    running = cluster.havm("vm", "restore", "x3")
    assert running.code == 0
    refused = cluster.havm("vm", "migrate", "x3", "--to", "s1")
    assert refused.code == 1 and "stopped or saved" in refused.stderr, refused.stderr
    cluster.ok("vm", "save", "x3")

    moved = migrate(cluster, "x3", "--to", "s1", "--storage", "D")
    assert (moved["kind"], moved["highly_available_after"]) == ("network_transfer", False)
    record = vm(cluster, "x3")
    assert (record["host"], record["storage"], record["ha"]) == ("s1", "local:D", False)
    assert journal(cluster, record)[: len(records)] == records
    assert "x3" not in groups(cluster)
    assert not (cluster.state_dir / "san" / "csv" / "Volume1" / record["id"]).exists()
    cluster.ok("vm", "delete", "x3", "--yes")


def test_a_network_transfer_cut_in_the_middle_leaves_the_vm_whole_where_it_was(cluster: LocalCluster) -> None:
    create(cluster, "x4", "s2", "--no-start", "--disk-gb", "4")
    record = written(cluster, "x4", rest="stop")
    disk = vm_dir(cluster, vm(cluster, "x4")) / "disk0.vhd"
    # Written data beyond the journal makes the copy long enough to cut it: 1.5 GiB at the
    # topology's 300 MB/s, about five seconds, whatever else the machine is doing.
    block = os.urandom(MIB)
    with disk.open("r+b") as handle:
        handle.seek(1024 * MIB)
        for _ in range(1536):
            handle.write(block)
    records = journal(cluster, vm(cluster, "x4"))
    process = start_migration(cluster, "x4", "--to", "s1")
    migration = wait_for(
        lambda: vm(cluster, "x4")["migration_id"], timeout=20, interval=0.05, what="the copy"
    )
    wait_for(
        lambda: cluster.json("migration", "show", migration)["bytes"] > 0,
        interval=0.05,
        what="bytes on the way",
    )
    cluster.ok("fault", "crash", "s1")
    code, _out, err = finish(process)
    assert code == 1 and "whole on s2" in err, err
    after = vm(cluster, "x4")
    assert (after["host"], after["state"]) == ("s2", "stopped")
    assert journal(cluster, after) == records and disk.exists()
    cluster.ok("host", "start", "s1")
    wait_for(lambda: cluster.json("host", "show", "s1", "-o", "json")["state"] == "ok", what="s1 back")
    assert on_agent(cluster, "s1", record["id"]) is None  # nothing half-copied stays
    assert_invariant(cluster, "after the cut transfer")
    cluster.ok("vm", "delete", "x4", "--yes")


def test_a_san_pass_through_disk_moves_with_its_vm_and_a_local_one_is_refused(cluster: LocalCluster) -> None:
    create(cluster, "x5", "s1", "--storage", "lun:san3", "--no-start")
    cluster.ok("vm", "attach-disk", "x5", "--passthrough", "lun:pt1")
    moved = migrate(cluster, "x5", "--to", "n1", "--make-ha")
    assert moved["kind"] == "san_transfer"
    record = vm(cluster, "x5")
    assert (record["host"], record["passthrough_disks"], record["status"]) == ("n1", ["lun:pt1"], "ok")
    assert [d.name for d in on_agent(cluster, "n1", record["id"]).spec.passthrough_disks] == ["pt1"]
    [group] = [g for g in cluster.json("cluster", "groups", "c1", "-o", "json") if g["vm"] == "x5"]
    assert {"Cluster Disk san3", "Cluster Disk pt1"} <= {r["name"] for r in group["resources"]}
    moved = migrate(cluster, "x5", "--to", "s1")
    assert (moved["kind"], vm(cluster, "x5")["passthrough_disks"]) == ("san_transfer", ["lun:pt1"])
    cluster.ok("vm", "detach-disk", "x5", "--passthrough", "lun:pt1")
    cluster.ok("vm", "attach-disk", "x5", "--passthrough", "local:D")
    refused = cluster.havm("vm", "migrate", "x5", "--to", "n1", "--make-ha")
    assert refused.code == 1 and "pass-through disk D is a local disk of host s1" in refused.stderr, (
        refused.stderr
    )
    assert "havm vm detach-disk x5 --passthrough local:D" in refused.stderr
    assert vm(cluster, "x5")["host"] == "s1"
    cluster.ok("vm", "delete", "x5", "--yes")


def passthrough_journal(cluster: LocalCluster, host: str, disk: str) -> list[tuple[int, int]]:
    """(seq, lease generation) of the journal a guest wrote to local disk `disk` of `host`,
    passed through to it."""
    image = cluster.state_dir / "hosts" / host / "disks" / disk / "passthrough.img"
    return [(entry.seq, entry.generation) for entry in read_journal_records(image)]


def test_a_local_pass_through_disk_is_converted_and_then_the_vm_moves(cluster: LocalCluster) -> None:
    create(cluster, "x6", "s1", "--storage", "lun:san3", "--no-start")
    cluster.ok("vm", "attach-disk", "x6", "--passthrough", "local:D")
    cluster.ok("vm", "start", "x6")
    wait_for(lambda: len(passthrough_journal(cluster, "s1", "D")) >= 5, what="journal writes to the disk D")
    refused = cluster.havm("vm", "convert-disk", "x6", "local:D")
    assert refused.code == 1 and "the VM stopped" in refused.stderr, refused.stderr
    cluster.ok("vm", "stop", "x6")
    written = passthrough_journal(cluster, "s1", "D")
    assert written == journal(cluster, vm(cluster, "x6")), "the guest writes every record to both disks"
    refused = cluster.havm("vm", "migrate", "x6", "--to", "n1", "--make-ha")
    assert refused.code == 1 and "havm vm convert-disk x6 local:D" in refused.stderr, refused.stderr

    job = cluster.json("vm", "convert-disk", "x6", "local:D")
    assert job["state"] == "completed" and "converted to virtual disk local-D.vhd" in job["message"], job
    record = vm(cluster, "x6")
    assert record["passthrough_disks"] == []
    assert [(d["file"], d["converted_from"]) for d in record["data_disks"]] == [("local-D.vhd", "local:D")]
    converted = vm_dir(cluster, record) / "local-D.vhd"
    assert [(e.seq, e.generation) for e in read_journal_records(converted)] == written
    assert passthrough_journal(cluster, "s1", "D") == written  # the physical disk keeps its data

    moved = migrate(cluster, "x6", "--to", "n1", "--make-ha")
    assert moved["kind"] == "san_transfer"
    record = vm(cluster, "x6")
    assert (record["host"], record["ha"], record["status"]) == ("n1", True, "ok")
    assert [d.file for d in on_agent(cluster, "n1", record["id"]).spec.data_disks] == ["local-D.vhd"]
    assert [(e.seq, e.generation) for e in read_journal_records(vm_dir(cluster, record) / "local-D.vhd")] == (
        written
    )
    cluster.ok("vm", "start", "x6")  # the guest runs on with its converted disk beside its system disk
    assert_invariant(cluster, "after the converted VM moved")
    cluster.ok("vm", "stop", "x6")
    cluster.ok("vm", "delete", "x6", "--yes")
