"""Hosts joining and leaving, as pure functions: one host entry in the topology's format,
AddHost's message, the membership rules, and a reloaded topology keeping the hosts
added at runtime."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from havm.contract.fields import TopologyError
from havm.contract.hosts import host_defaults_of, host_to_dict
from havm.contract.topology import (
    Topology,
    parse_host_entry,
    parse_topology,
    seen_by_every_node,
    topology_to_dict,
    without_host,
)
from havm.v1 import common_pb2
from manager.adapters.host_config_mapping import host_spec_from_proto
from manager.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from manager.core.inventory import merge_topology, removed_from_topology
from manager.core.membership import (
    check_new_host,
    check_removable,
    host_record,
    joined,
    left,
    new_node_volumes,
)
from manager.core.model import MigrationKind, MigrationRecord, VmRecord
from manager.core.states import HostState, MigrationState, VmState

DEFAULT = Path(__file__).resolve().parents[2] / "havm" / "cli" / "default_topology.yaml"
GIB = 1024**3
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def default_data() -> dict:
    return yaml.safe_load(DEFAULT.read_text())


def default_topology():
    topology = parse_topology(default_data())
    return topology.with_addresses({h.name: f"127.0.0.1:{5000 + i}" for i, h in enumerate(topology.hosts)})


def records():
    topology = default_topology()
    return merge_topology(topology, [], [])


def new_spec(name: str = "node5", cluster: str | None = "cluster1", **entry: object):
    spec = parse_host_entry(
        {"name": name, "address": "127.0.0.1:6000", **entry}, host_defaults_of(default_data())
    )
    return replace(spec, cluster=cluster)


# --- one host entry -------------------------------------------------------------------


def test_a_host_entry_takes_the_topologys_defaults_and_its_own_values() -> None:
    spec = parse_host_entry(
        {"name": "node5", "memory_mb": 65536, "disks": [{"name": "C", "capacity_gb": 100}]},
        host_defaults_of(default_data()),
    )
    assert (spec.name, spec.profile, spec.cluster) == ("node5", "hyperv-2008r2", None)
    assert spec.memory_mb == 65536 and spec.host_reserve_mb == 2048
    assert spec.cpu.vendor == "GenuineIntel" and spec.cpu.cores == 8
    assert [(d.name, d.capacity_gb) for d in spec.disks] == [("C", 100)]
    assert spec.networks[0].name == "External" and spec.address is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "node5", "memory_mb": 0}, "host.memory_mb: must be a positive integer, got 0"),
        ({"name": "node5", "memroy_mb": 1}, "host.memroy_mb: unknown field"),
        ({"name": "bad name"}, "host.name: must be a name matching"),
        ({"name": "node5", "profile": "xen"}, "host.profile: must be one of hyperv-2008, hyperv-2008r2, esx"),
        ({"name": "node5", "address": "nowhere"}, "host.address: must be host:port"),
        ({"memory_mb": 1024}, "host.name: is required"),
        ("node5", "host: must be a mapping, got 'node5'"),
    ],
)
def test_a_bad_host_entry_names_the_field(entry: object, message: str) -> None:
    with pytest.raises(TopologyError) as caught:
        parse_host_entry(entry, host_defaults_of(default_data()))
    assert str(caught.value).startswith(message)


def test_a_bad_default_is_reported_where_it_was_written() -> None:
    with pytest.raises(TopologyError, match=r"^host_defaults\.memory_mb: must be a positive integer"):
        parse_host_entry({"name": "node5"}, {**host_defaults_of(default_data()), "memory_mb": "lots"})
    with pytest.raises(TopologyError, match=r"^host\.cpu: is required \(here or under host_defaults\)"):
        parse_host_entry({"name": "node5", "profile": "esx"}, {})


def test_a_host_entry_reads_back_what_host_to_dict_wrote() -> None:
    spec = default_topology().host("standalone1")
    assert parse_host_entry(host_to_dict(spec)) == spec


# --- AddHost's message ----------------------------------------------------------------


def host_config(**fields: object) -> common_pb2.HostConfig:
    config = common_pb2.HostConfig(
        name="node5",
        cluster="cluster1",
        profile=common_pb2.PROFILE_HYPERV_2008R2,
        cpu=common_pb2.Cpu(
            vendor="GenuineIntel", model="Intel Xeon X5570", features=["sse4_2"], cores=8, mhz=2933
        ),
        memory_mb=32768,
        host_reserve_mb=2048,
        disks=[common_pb2.LocalDisk(name="C", capacity_bytes=500 * GIB)],
        networks=[common_pb2.Network(name="External", bound_to="nic", vlan_id=0)],
        address="127.0.0.1:6000",
        migration_address="127.0.0.1:6001",
    )
    for key, value in fields.items():
        setattr(config, key, value)
    return config


def test_host_config_becomes_a_host_spec() -> None:
    spec = host_spec_from_proto(host_config())
    assert (spec.name, spec.cluster, spec.profile) == ("node5", "cluster1", "hyperv-2008r2")
    assert (spec.memory_mb, spec.host_reserve_mb) == (32768, 2048)
    assert [(d.name, d.capacity_gb) for d in spec.disks] == [("C", 500)]
    assert (spec.address, spec.migration_address) == ("127.0.0.1:6000", "127.0.0.1:6001")
    standalone = host_spec_from_proto(host_config(cluster="", migration_address=""))
    assert standalone.cluster is None and standalone.migration_address is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"memory_mb": 0}, "host.memory_mb: must be a positive integer, got 0"),
        ({"memory_mb": 1024}, "host.memory_mb: must be greater than host_reserve_mb (2048), got 1024"),
        ({"profile": common_pb2.PROFILE_UNSPECIFIED}, "host.profile: must be one of"),
        ({"name": ""}, "host.name: must be a name matching"),
        ({"cluster": "no such"}, "host.cluster: must be a name matching"),
        ({"address": "localhost"}, "host.address: must be host:port"),
    ],
)
def test_a_bad_host_config_names_the_field(fields: dict, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        host_spec_from_proto(host_config(**fields))
    assert caught.value.message.startswith(message)


def test_a_disk_must_be_whole_gibibytes() -> None:
    config = host_config()
    config.disks[0].capacity_bytes = GIB + 1
    with pytest.raises(InvalidArgumentError, match=r"^host\.disks\[0\]\.capacity_bytes: must be a whole"):
        host_spec_from_proto(config)
    config.cpu.vendor = "Cyrix"
    config.disks[0].capacity_bytes = GIB
    with pytest.raises(InvalidArgumentError, match=r"^host\.cpu\.vendor: must be one of"):
        host_spec_from_proto(config)


# --- the membership rules ---------------------------------------------------------------


def test_a_new_node_sees_every_csv_and_the_luns_every_node_sees() -> None:
    visibility = {"Volume1": ["a"], "lun1": ["a", "b"], "lun2": ["a"]}
    assert seen_by_every_node(["a", "b"], visibility, ["Volume1"]) == ["Volume1", "lun1"]

    hosts, clusters = records()
    [cluster] = clusters
    zoned = replace(
        cluster,
        visibility=tuple(
            (name, ("node1", "node2") if name == "lun2" else seen) for name, seen in cluster.visibility
        ),
    )
    assert [v.name for v in new_node_volumes(zoned)] == ["Volume1", "lun1", "lun3"]
    after = joined(zoned, "node5")
    assert after.nodes == ("node1", "node2", "node3", "node4", "node5")
    assert after.visible_to("lun1") == ("node1", "node2", "node3", "node4", "node5")
    assert after.visible_to("lun2") == ("node1", "node2")
    assert left(after, "node5") == zoned


def test_a_new_host_is_checked_against_the_hosts_and_clusters() -> None:
    hosts, clusters = records()
    assert check_new_host(new_spec(), hosts, clusters) == clusters[0]
    assert check_new_host(new_spec(cluster=None), hosts, clusters) is None
    cases = [
        (new_spec("node1"), AlreadyExistsError, "host node1 already exists"),
        (new_spec("cluster1", cluster=None), AlreadyExistsError, "cluster1 is the name of a cluster"),
        (new_spec(cluster="cluster9"), NotFoundError, "cluster cluster9 does not exist"),
        (
            new_spec(profile="esx"),
            FailedPreconditionError,
            "host node5 runs esx but cluster cluster1 runs hyperv-2008r2",
        ),
        (replace(new_spec(), address=None), InvalidArgumentError, "host.address: is required"),
        (
            replace(new_spec(), address=hosts[0].address),
            InvalidArgumentError,
            f"host.address: {hosts[0].address} is already the address of host node1",
        ),
    ]
    for spec, error, message in cases:
        with pytest.raises(error) as caught:
            check_new_host(spec, hosts, clusters)
        assert message in caught.value.message, spec


def vm(name: str, host: str | None, highly_available: bool = True, **kw: object) -> VmRecord:
    return VmRecord(
        id=f"id-{name}",
        name=name,
        host=host,
        state=VmState.RUNNING,
        highly_available=highly_available,
        memory_mb=512,
        cpus=1,
        disk_gb=10,
        storage=None,
        **kw,
    )


def migration(vm_name: str, source: str, destination: str, state: MigrationState) -> MigrationRecord:
    return MigrationRecord(
        id=f"m-{vm_name}",
        vm_id=f"id-{vm_name}",
        vm_name=vm_name,
        kind=MigrationKind.LIVE,
        state=state,
        source=source,
        destination=destination,
        created_at=NOW,
        updated_at=NOW,
    )


def test_a_host_is_removable_only_when_nothing_depends_on_it() -> None:
    hosts, clusters = records()
    [cluster] = clusters
    node2 = next(h for h in hosts if h.name == "node2")
    check_removable(node2, cluster, [vm("web1", "node1")], [])

    with pytest.raises(FailedPreconditionError) as caught:
        check_removable(node2, cluster, [vm("web2", "node2"), vm("web1", "node2"), vm("x", "node3")], [])
    assert caught.value.message == (
        "host node2 cannot be removed: VMs web1 and web2 are placed on it; move or delete them first"
    )
    with pytest.raises(FailedPreconditionError, match="VM db1 is placed on it; move or delete it first"):
        check_removable(node2, cluster, [vm("db1", None, failover_from="node2")], [])
    with pytest.raises(FailedPreconditionError, match="a migration of VM web1 to or from it is under way"):
        check_removable(node2, cluster, [], [migration("web1", "node1", "node2", MigrationState.QUEUED)])
    check_removable(node2, cluster, [], [migration("web1", "node1", "node2", MigrationState.COMPLETED)])
    with pytest.raises(FailedPreconditionError, match="being failed over"):
        check_removable(replace(node2, state=HostState.FENCING), cluster, [], [])


def test_a_cluster_keeps_more_nodes_than_its_reserve() -> None:
    hosts, clusters = records()
    node1 = hosts[0]
    two = replace(clusters[0], nodes=("node1", "node2"), reserve=1)
    with pytest.raises(FailedPreconditionError) as caught:
        check_removable(node1, two, [], [])
    assert "must absorb 1 node failure and would keep 1 node" in caught.value.message
    check_removable(node1, replace(two, reserve=0), [], [])
    with pytest.raises(FailedPreconditionError, match="it is the last node of cluster cluster1"):
        check_removable(node1, replace(two, nodes=("node1",), reserve=0), [], [])


# --- a reloaded topology keeps the hosts added at runtime -----------------------------------


def added_records():
    """The default topology's records with node5 added to cluster1 and solo2 standalone."""
    hosts, [cluster] = records()
    node5 = host_record(new_spec(), new_node_volumes(cluster), added_at_runtime=True)
    solo2 = host_record(replace(new_spec("solo2", cluster=None), address="127.0.0.1:6002"), (), True)
    return [*hosts, node5, solo2], [joined(cluster, "node5")]


def test_a_reload_keeps_hosts_added_at_runtime_and_their_membership() -> None:
    topology = default_topology()
    hosts, clusters = added_records()
    hosts = [replace(h, state=HostState.OK, state_reason="") if h.name == "node5" else h for h in hosts]
    assert removed_from_topology(topology, hosts, clusters, []) == ([], [])

    merged_hosts, [cluster] = merge_topology(topology, hosts, clusters)
    by_name = {h.name: h for h in merged_hosts}
    assert set(by_name) == {"node1", "node2", "node3", "node4", "standalone1", "library1", "node5", "solo2"}
    assert by_name["node5"] == next(h for h in hosts if h.name == "node5")  # kept as it was
    assert by_name["node5"].added_at_runtime and not by_name["node1"].added_at_runtime
    assert cluster.nodes == ("node1", "node2", "node3", "node4", "node5")
    for volume in ("Volume1", "lun1", "lun2"):
        assert "node5" in cluster.visible_to(volume)
    assert by_name["solo2"].cluster is None


def test_a_reload_applies_the_topologys_zoning_to_hosts_added_at_runtime() -> None:
    data = default_data()
    data["clusters"][0]["luns"][1]["visible_to"] = ["node1", "node2"]
    topology = parse_topology(data)
    hosts, clusters = added_records()
    _, [cluster] = merge_topology(topology, hosts, clusters)
    assert "node5" in cluster.visible_to("lun1") and "node5" not in cluster.visible_to("lun2")


def test_a_reload_still_forgets_topology_hosts_it_no_longer_declares() -> None:
    data = default_data()
    data["hosts"] = [h for h in data["hosts"] if h["name"] != "node4"]
    data["clusters"][0]["nodes"].remove("node4")
    for lun in data["clusters"][0]["luns"]:
        if "visible_to" in lun:
            lun["visible_to"].remove("node4")
    topology = parse_topology(data)
    hosts, clusters = added_records()
    assert removed_from_topology(topology, hosts, clusters, []) == (["node4"], [])
    merged_hosts, [cluster] = merge_topology(topology, [h for h in hosts if h.name != "node4"], clusters)
    assert cluster.nodes == ("node1", "node2", "node3", "node5")


def test_a_host_added_at_runtime_to_a_cluster_the_topology_dropped_stops_the_load() -> None:
    data = default_data()
    data["clusters"] = []
    hosts, clusters = added_records()
    with pytest.raises(FailedPreconditionError, match="cluster cluster1 was removed but host node5"):
        removed_from_topology(parse_topology(data), hosts, clusters, [])


def test_a_host_the_topology_declares_later_becomes_a_topology_host() -> None:
    data = default_data()
    data["hosts"].append({"name": "node5"})
    data["clusters"][0]["nodes"].append("node5")
    hosts, clusters = added_records()
    merged_hosts, [cluster] = merge_topology(parse_topology(data), hosts, clusters)
    node5 = next(h for h in merged_hosts if h.name == "node5")
    assert not node5.added_at_runtime
    assert cluster.nodes.count("node5") == 1


# --- a topology without one of its hosts ---------------------------------------------------


def test_a_topology_without_a_host_drops_it_everywhere() -> None:
    data = default_data()
    data["clusters"][0]["luns"][0]["visible_to"] = ["node3", "node4"]
    data["clusters"][0]["reserve"] = 3
    smaller = without_host(parse_topology(data), "node4")
    assert [h.name for h in smaller.hosts] == ["node1", "node2", "node3", "standalone1", "library1"]
    cluster = smaller.cluster("cluster1")
    assert cluster.nodes == ("node1", "node2", "node3") and cluster.reserve == 2
    assert {v.name: v.visible_to for v in cluster.volumes}["lun1"] == ("node3",)
    assert parse_topology(topology_to_dict(smaller)) == smaller  # still a valid topology
    with pytest.raises(TopologyError, match="no host named 'node9'"):
        without_host(smaller, "node9")


def test_a_topology_keeps_a_host_and_a_node() -> None:
    one = parse_topology(
        {
            "version": 1,
            "host_defaults": host_defaults_of(default_data()),
            "clusters": [{"name": "c", "profile": "hyperv-2008r2", "reserve": 0, "nodes": ["n1"]}],
            "hosts": [{"name": "n1"}, {"name": "s1"}],
        }
    )
    with pytest.raises(TopologyError, match="'n1' is the last node"):
        without_host(one, "n1")
    with pytest.raises(TopologyError, match="'s1' is the last host"):
        without_host(without_host(Topology(clusters=(), hosts=one.hosts), "n1"), "s1")
