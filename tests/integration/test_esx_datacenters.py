"""ESX clusters in vCenter datacenters, end to end: VMotion of running VMs between the
clusters of one datacenter (over a datastore both see, or with Storage VMotion in the
same operation), the refusal across datacenters, and Storage VMotion on one host.

Every move is checked where the manager and the agents have the VM, by its journal
(one unbroken run of writes that went on after the move) and by the invariant that no
VM is active on two hosts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_harness import LocalCluster, assert_invariant, topology_cluster
from test_migration import assert_journal_continuous, journal_length, migrate, vm

pytestmark = pytest.mark.integration

# dc1 holds clusters ea (e1, e2) and eb (e3, e4), which share datastore shared1; dc2
# holds ec (e5). Every host has the same processor and port group.
TOPOLOGY = """
version: 1
host_defaults:
  profile: esx
  cpu: {vendor: GenuineIntel, model: Xeon X5570, features: [sse3, ssse3, sse4_1, sse4_2, vmx, nx, lm],
        cores: 8, mhz: 2933}
  memory_mb: 8192
  host_reserve_mb: 1024
  disks: [{name: local1, capacity_gb: 100}]
  networks: [{name: VM Network, bound_to: vmnic0}]
clusters:
  - name: ea
    profile: esx
    reserve: 0
    datacenter: dc1
    nodes: [e1, e2]
    csvs: [{name: shared1, capacity_gb: 500}, {name: dsa, capacity_gb: 500}]
  - name: eb
    profile: esx
    reserve: 0
    datacenter: dc1
    nodes: [e3, e4]
    csvs: [{name: shared1, capacity_gb: 500}, {name: dsb, capacity_gb: 500}]
  - name: ec
    profile: esx
    reserve: 0
    datacenter: dc2
    nodes: [e5]
    csvs: [{name: dsc, capacity_gb: 500}]
hosts:
  - {name: e1}
  - {name: e2}
  - {name: e3}
  - {name: e4}
  - {name: e5}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    with topology_cluster(tmp_path_factory.mktemp("datacenters"), TOPOLOGY) as local:
        yield local


def running(cluster: LocalCluster, name: str, host: str, datastore: str) -> int:
    """A running HA VM on `host`'s `datastore` whose guest writes to its journal; how many
    writes it had made when this returns."""
    cluster.ok(
        "vm", "create", name, "--ha", "--memory-mb", "128", "--disk-gb", "1", "--host", host,
        "--storage", f"csv:{datastore}", "--journal-writes-per-s", "50", "--dirty-rate-mb-s", "5",
    )  # fmt: skip
    return journal_length(cluster, name)


def test_clusters_show_their_datacenter(cluster: LocalCluster) -> None:
    clusters = {c["name"]: c["datacenter"] for c in cluster.json("cluster", "list", "-o", "json")}
    assert clusters == {"ea": "dc1", "eb": "dc1", "ec": "dc2"}


def test_vmotion_between_clusters_of_a_datacenter_over_a_shared_datastore(cluster: LocalCluster) -> None:
    before = running(cluster, "v1", "e1", "shared1")
    moved = migrate(cluster, "v1", "--to", "e3")
    assert (moved["kind"], moved["state"], moved["storage"]) == ("live", "completed", None), moved["error"]
    record = vm(cluster, "v1")
    assert (record["host"], record["state"], record["storage"], record["ha"]) == (
        "e3",
        "running",
        "csv:shared1",
        True,
    )
    assert_journal_continuous(cluster, "v1", before)
    assert_invariant(cluster, "after VMotion between clusters")


def test_vmotion_with_storage_vmotion_where_no_datastore_is_shared(cluster: LocalCluster) -> None:
    before = running(cluster, "v2", "e2", "dsa")
    moved = migrate(cluster, "v2", "--to", "e4")
    assert (moved["kind"], moved["state"]) == ("storage", "completed")
    record = vm(cluster, "v2")
    # dsa is not eb's: the disk went to a datastore e4 sees, the roomier of dsb and shared1.
    assert (record["host"], record["state"]) == ("e4", "running")
    assert record["storage"] in ("csv:dsb", "csv:shared1"), record["storage"]
    assert_journal_continuous(cluster, "v2", before)
    assert_invariant(cluster, "after VMotion with Storage VMotion")


def test_vmotion_across_datacenters_is_refused(cluster: LocalCluster) -> None:
    running(cluster, "v3", "e1", "dsa")
    refused = cluster.havm("vm", "migrate", "v3", "--to", "e5")
    assert refused.code == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (
        "error: VM v3 cannot move from cluster ea (datacenter dc1) to cluster ec (datacenter dc2): "
        "VMotion moves running VMs between the ESX clusters of one datacenter"
    )
    assert vm(cluster, "v3")["host"] == "e1"


def test_storage_vmotion_on_one_esx_host(cluster: LocalCluster) -> None:
    before = running(cluster, "v4", "e2", "shared1")
    result = cluster.havm("vm", "migrate-storage", "v4", "--to", "e2:dsa", "-o", "json")
    assert result.code == 0, result.stderr
    moved = result.json()
    assert (moved["kind"], moved["source"], moved["destination"]) == ("storage", "e2", "e2")
    assert moved["bytes"] > 0
    record = vm(cluster, "v4")
    assert (record["host"], record["state"], record["storage"]) == ("e2", "running", "csv:dsa")
    assert_journal_continuous(cluster, "v4", before)
    assert_invariant(cluster, "after Storage VMotion")
