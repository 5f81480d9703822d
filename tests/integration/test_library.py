"""The VM library end to end: real agents (a library server among them), the real CLI.

A stopped or saved VM is stored in the library (`vm store`) and deployed from it onto a
host (`vm deploy`): by SAN where the LUN its files are on is zoned to both, over the
network otherwise. The library server runs no VM, its contents outlive the manager's
and its own restarts, and every test checks that the journal on the VM's disk is the
one it had, where the agents hold the VM, and that no VM is active on two hosts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_harness import LocalCluster, assert_invariant, inventory, topology_cluster, wait_for
from test_migration import journal, vm, vm_dir
from test_transfers import create, passthrough_journal, written

from node_agent.adapters.files import read_journal_records

pytestmark = [pytest.mark.integration, pytest.mark.robustness, pytest.mark.xdist_group("library")]

# c1: a two-node Windows Server 2008 R2 cluster; san1 is zoned to its nodes, standalone
# host s1 (which has a second local disk, D) and library server lib1. lib1 keeps VMs on
# its share MSSCVMMLibrary.
TOPOLOGY = """
version: 1
host_defaults:
  profile: hyperv-2008r2
  cpu: {vendor: GenuineIntel, model: Xeon X5570, features: [sse3, ssse3, sse4_1, sse4_2, popcnt, vmx, nx, lm],
        cores: 8, mhz: 2933}
  memory_mb: 8192
  host_reserve_mb: 1024
  disks: [{name: C, capacity_gb: 200}]
  networks: [{name: External, bound_to: "NIC 1"}]
clusters:
  - name: c1
    profile: hyperv-2008r2
    reserve: 0
    nodes: [n1, n2]
    csvs: [{name: Volume1, capacity_gb: 500}]
    luns:
      - {name: san1, capacity_gb: 100, visible_to: [n1, n2, s1, lib1]}
hosts:
  - {name: n1}
  - {name: n2}
  - {name: s1, disks: [{name: C, capacity_gb: 200}, {name: D, capacity_gb: 20}]}
  - name: lib1
    profile: library
    disks: [{name: MSSCVMMLibrary, capacity_gb: 500}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    with topology_cluster(tmp_path_factory.mktemp("library"), TOPOLOGY) as local:
        yield local


def move(cluster: LocalCluster, command: str, name: str, *args: str) -> dict:
    """`havm vm store|deploy -o json`: the completed transfer."""
    result = cluster.havm("vm", command, name, *args, "-o", "json", timeout=90)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    figures = result.json()
    assert figures["state"] == "completed", figures
    return figures


def library(cluster: LocalCluster) -> dict[str, dict]:
    return {row["name"]: row for row in cluster.json("library", "list")}


def held_by(cluster: LocalCluster, host: str, vm_id: str) -> bool:
    return any(v.spec.id == vm_id for v in inventory(cluster, host) or [])


def test_store_and_deploy_over_the_network_across_restarts(cluster: LocalCluster) -> None:
    create(cluster, "l1", "s1", "--no-start")
    before = written(cluster, "l1")  # saved, with memory and journal worth keeping
    records = journal(cluster, before)

    stored = move(cluster, "store", "l1")
    assert (stored["kind"], stored["destination"], stored["highly_available_after"]) == (
        "network_transfer",
        "lib1",
        False,
    )
    assert stored["bytes"] > 0
    listed = library(cluster)["l1"]
    assert (listed["library"], listed["state"], listed["storage"]) == (
        "lib1",
        "saved",
        "local:MSSCVMMLibrary",
    )
    assert listed["path"] == "\\\\lib1\\MSSCVMMLibrary\\l1"
    assert not held_by(cluster, "s1", before["id"]) and held_by(cluster, "lib1", before["id"])
    share = cluster.state_dir / "hosts" / "lib1" / "disks" / "MSSCVMMLibrary"
    assert share.is_dir() and any(share.iterdir()), "the library share is a directory of the state directory"
    # A library server runs nothing: the refusal names the way out.
    refused = cluster.havm("vm", "restore", "l1")
    assert refused.code == 1 and "vm deploy l1 --to HOST" in refused.stderr, refused.stderr

    # The library outlives the manager and its own server.
    cluster.kill9("manager")
    cluster.ok("up", "--detach")
    assert library(cluster)["l1"]["state"] == "saved"
    cluster.kill9("agent:lib1")
    cluster.ok("up", "--detach")
    assert library(cluster)["l1"]["state"] == "saved"
    assert held_by(cluster, "lib1", before["id"])

    refused = cluster.havm("vm", "deploy", "l1", "--to", "n1")
    assert refused.code == 1 and "--make-ha" in refused.stderr, refused.stderr
    deployed = move(cluster, "deploy", "l1", "--to", "n1", "--make-ha")
    assert (deployed["kind"], deployed["source"], deployed["highly_available_after"]) == (
        "network_transfer",
        "lib1",
        True,
    )
    record = vm(cluster, "l1")
    assert (record["host"], record["state"], record["ha"], record["storage"]) == (
        "n1",
        "saved",
        True,
        "csv:Volume1",
    )
    assert journal(cluster, record) == records  # the same disk, byte for byte where it counts
    assert "l1" not in library(cluster) and not held_by(cluster, "lib1", record["id"])
    cluster.ok("vm", "restore", "l1")  # the saved memory came along
    assert_invariant(cluster, "after a deployment from the library")
    cluster.ok("vm", "stop", "l1")
    cluster.ok("vm", "delete", "l1", "--yes")


def test_store_and_deploy_by_san_copy_nothing(cluster: LocalCluster) -> None:
    create(cluster, "l2", "n2", "--ha", "--storage", "lun:san1", "--no-start")
    before = written(cluster, "l2", rest="stop")
    records = journal(cluster, before)

    stored = move(cluster, "store", "l2")
    assert (stored["kind"], stored["bytes"], stored["highly_available_after"]) == ("san_transfer", 0, False)
    assert library(cluster)["l2"]["storage"] == "lun:san1"
    groups = [g["vm"] for g in cluster.json("cluster", "groups", "c1", "-o", "json")]
    assert "l2" not in groups, "a VM in the library is no cluster's"

    deployed = move(cluster, "deploy", "l2", "--to", "s1")
    assert (deployed["kind"], deployed["bytes"], deployed["highly_available_after"]) == (
        "san_transfer",
        0,
        False,
    )
    record = vm(cluster, "l2")
    assert (record["host"], record["state"], record["ha"]) == ("s1", "stopped", False)
    assert journal(cluster, record) == records
    assert vm_dir(cluster, record).is_dir()
    assert not held_by(cluster, "lib1", record["id"]) and held_by(cluster, "s1", record["id"])
    assert_invariant(cluster, "after a SAN deployment")
    cluster.ok("vm", "delete", "l2", "--yes")


def test_the_library_refuses_what_it_cannot_do_and_says_why(cluster: LocalCluster) -> None:
    create(cluster, "l3", "s1")  # running
    cases = [
        (("vm", "store", "l3"), "stopped or saved"),
        (("vm", "store", "l3", "--library", "s1"), "is not a library server"),
        (("vm", "store", "l3", "--library", "nope"), "library server nope does not exist"),
        (("vm", "deploy", "l3", "--to", "n1"), "is not stored in the library"),
        (("vm", "migrate-storage", "l3", "--to", "lib1"), "runs no VM"),
        (("vm", "create", "l4", "--memory-mb", "256", "--host", "lib1"), "is a library server"),
    ]
    for args, words in cases:
        result = cluster.havm(*args)
        assert result.code != 0 and words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    cluster.ok("vm", "stop", "l3")
    move(cluster, "store", "l3")
    refused = cluster.havm("vm", "deploy", "l3", "--to", "lib1")
    assert refused.code == 1 and "it is a library server, which runs no VM" in refused.stderr, refused.stderr
    rated = {r["host"]: r for r in cluster.json("vm", "place", "--memory-mb", "256")["ratings"]}
    assert rated["lib1"]["stars"] == 0
    assert [r["code"] for r in rated["lib1"]["reasons"]] == ["library_server"]
    cluster.ok("vm", "delete", "l3", "--yes")
    assert "l3" not in library(cluster)
    assert_invariant(cluster, "after the refusals")


def test_a_local_pass_through_disk_is_converted_before_the_vm_is_stored(cluster: LocalCluster) -> None:
    create(cluster, "l5", "s1", "--no-start")
    cluster.ok("vm", "attach-disk", "l5", "--passthrough", "local:D")
    cluster.ok("vm", "start", "l5")
    wait_for(lambda: len(passthrough_journal(cluster, "s1", "D")) >= 5, what="journal writes to disk D")
    cluster.ok("vm", "stop", "l5")
    written_to_d = passthrough_journal(cluster, "s1", "D")
    refused = cluster.havm("vm", "store", "l5")
    assert refused.code == 1 and "havm vm convert-disk l5 local:D" in refused.stderr, refused.stderr

    cluster.ok("vm", "convert-disk", "l5", "local:D")
    stored = move(cluster, "store", "l5")
    assert stored["kind"] == "network_transfer"
    record = vm(cluster, "l5")
    assert (record["host"], [d["file"] for d in record["data_disks"]]) == ("lib1", ["local-D.vhd"])
    in_library = vm_dir(cluster, record) / "local-D.vhd"
    assert [(e.seq, e.generation) for e in read_journal_records(in_library)] == written_to_d

    move(cluster, "deploy", "l5", "--to", "s1")
    record = vm(cluster, "l5")
    assert (record["host"], record["passthrough_disks"]) == ("s1", [])
    back = vm_dir(cluster, record) / "local-D.vhd"
    assert [(e.seq, e.generation) for e in read_journal_records(back)] == written_to_d
    cluster.ok("vm", "start", "l5")
    assert_invariant(cluster, "after the converted VM came back from the library")
    cluster.ok("vm", "stop", "l5")
    cluster.ok("vm", "delete", "l5", "--yes")
