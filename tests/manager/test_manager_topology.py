"""Topology parsing: the default file loads, and every bad input names its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from havm.contract.fields import TopologyError
from havm.contract.topology import IsolationSettings, PlacementSettings, parse_topology, topology_to_dict

DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[2] / "havm" / "cli" / "default_topology.yaml"


def base() -> dict[str, Any]:
    return {
        "version": 1,
        "host_defaults": {
            "profile": "hyperv-2008r2",
            "cpu": {
                "vendor": "GenuineIntel",
                "model": "Intel Xeon X5570",
                "features": ["sse3"],
                "cores": 8,
                "mhz": 2933,
            },
            "memory_mb": 32768,
            "host_reserve_mb": 2048,
            "disks": [{"name": "C", "capacity_gb": 500}],
            "networks": [{"name": "External", "bound_to": "Broadcom #1"}],
        },
        "clusters": [
            {
                "name": "cluster1",
                "profile": "hyperv-2008r2",
                "nodes": ["node1", "node2", "node3"],
                "csvs": [{"name": "Volume1", "capacity_gb": 2048}],
                "luns": [{"name": "lun1", "capacity_gb": 200, "visible_to": ["node1", "node2"]}],
            }
        ],
        "hosts": [
            {"name": "node1", "address": "127.0.0.1:50051"},
            {"name": "node2"},
            {"name": "node3"},
            {"name": "standalone1", "memory_mb": 16384},
        ],
    }


def test_default_topology_parses() -> None:
    topology = parse_topology(yaml.safe_load(DEFAULT_TOPOLOGY.read_text()))
    assert [h.name for h in topology.hosts] == ["node1", "node2", "node3", "node4", "standalone1", "library1"]
    assert topology.host("library1").profile == "library" and topology.host("library1").cluster is None
    assert topology.host("standalone1").cluster is None
    assert topology.host("node3").cluster == "cluster1"
    assert topology.cluster("cluster1").reserve == 1
    assert {v.name for v in topology.volumes_visible_to("node4")} == {"Volume1", "lun1", "lun2", "lun3"}
    # lun3 is zoned to the standalone host too, for SAN transfers across the cluster boundary.
    assert [v.name for v in topology.volumes_visible_to("standalone1")] == ["lun3"]
    assert [v.name for v in topology.volumes_visible_to("library1")] == ["lun3"]


def test_defaults_merge_and_explicit_values() -> None:
    topology = parse_topology(base())
    standalone = topology.host("standalone1")
    assert standalone.memory_mb == 16384
    assert standalone.host_reserve_mb == 2048
    assert standalone.networks[0].vlan_id == 0
    assert topology.host("node1").address == "127.0.0.1:50051"
    assert topology.host("node2").address is None
    lun = next(v for v in topology.cluster("cluster1").volumes if v.name == "lun1")
    assert lun.kind == "lun" and lun.visible_to == ("node1", "node2")
    csv = next(v for v in topology.cluster("cluster1").volumes if v.kind == "csv")
    assert csv.visible_to == ("node1", "node2", "node3")


def test_reserve_default_and_host_reserve_default() -> None:
    data = base()
    del data["host_defaults"]["host_reserve_mb"]
    topology = parse_topology(data)
    assert topology.host("node1").host_reserve_mb == 1024
    assert topology.cluster("cluster1").reserve == 1


def test_lookup_of_unknown_names_raises_key_error() -> None:
    topology = parse_topology(base())
    with pytest.raises(KeyError):
        topology.host("nope")
    with pytest.raises(KeyError):
        topology.cluster("nope")


def test_with_addresses_and_round_trip() -> None:
    topology = parse_topology(base()).with_addresses({"node2": "127.0.0.1:6000"})
    assert topology.host("node2").address == "127.0.0.1:6000"
    assert topology.host("node1").address == "127.0.0.1:50051"
    explicit = topology_to_dict(topology)
    assert "host_defaults" not in explicit
    assert parse_topology(explicit) == topology
    assert parse_topology(yaml.safe_load(yaml.safe_dump(explicit))) == topology


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value


_DELETE = object()

BAD_INPUTS = [
    # (path to change, new value, field named, words in the problem)
    (("hosts", 3, "memory_mb"), "lots", "hosts[3].memory_mb", "must be a positive integer, got 'lots'"),
    (("hosts", 3, "memory_mb"), True, "hosts[3].memory_mb", "positive integer"),
    (("hosts", 3, "memory_mb"), -5, "hosts[3].memory_mb", "positive integer"),
    (("hosts", 3, "memory_mb"), 1024, "hosts[3].memory_mb", "greater than host_reserve_mb"),
    (
        ("hosts", 1, "profile"),
        "xen",
        "hosts[1].profile",
        "must be one of hyperv-2008, hyperv-2008r2, esx, library, got 'xen'",
    ),
    (("hosts", 0, "memroy_mb"), 1, "hosts[0].memroy_mb", "unknown field"),
    (("hosts", 0, "name"), "bad name", "hosts[0].name", "must be a name"),
    (("hosts", 0, "name"), "-x", "hosts[0].name", "must be a name"),
    (("hosts", 1, "name"), "node1", "hosts[1].name", "duplicate host name 'node1'"),
    (("hosts", 0, "address"), "nowhere", "hosts[0].address", "host:port"),
    (
        ("hosts", 0, "cpu"),
        {"vendor": "Cyrix", "model": "M", "cores": 1, "mhz": 1},
        "hosts[0].cpu.vendor",
        "GenuineIntel, AuthenticAMD",
    ),
    (("host_defaults", "cpu", "cores"), 0, "host_defaults.cpu.cores", "positive integer"),
    (("host_defaults", "cpu", "vendor"), "Cyrix", "host_defaults.cpu.vendor", "must be one of"),
    (("host_defaults", "name"), "x", "host_defaults.name", "unknown field"),
    (
        ("host_defaults", "disks"),
        [{"name": "C", "capacity_gb": 1}, {"name": "C", "capacity_gb": 2}],
        "host_defaults.disks[1].name",
        "duplicate disk name",
    ),
    (("host_defaults", "networks", 0, "vlan_id"), 5000, "host_defaults.networks[0].vlan_id", "4094"),
    (
        ("host_defaults", "networks", 0, "bound_to"),
        _DELETE,
        "host_defaults.networks[0].bound_to",
        "is required",
    ),
    (("host_defaults", "profile"), _DELETE, "hosts[0].profile", "is required"),
    (("clusters", 0, "nodes", 2), "node9", "clusters[0].nodes[2]", "host 'node9' is not defined under hosts"),
    (("clusters", 0, "nodes", 1), "node1", "clusters[0].nodes[1]", "listed twice"),
    (
        ("clusters", 0, "profile"),
        "esx",
        "clusters[0].nodes[0]",
        "host 'node1' has profile hyperv-2008r2 but the cluster's profile is esx",
    ),
    (("clusters", 0, "reserve"), 3, "clusters[0].reserve", "less than the number of nodes (3)"),
    (("clusters", 0, "reserve"), -1, "clusters[0].reserve", "integer >= 0"),
    (
        ("clusters", 0, "luns", 0, "visible_to"),
        ["node1", "ghost"],
        "clusters[0].luns[0].visible_to[1]",
        "host 'ghost' is not defined under hosts",
    ),
    (("clusters", 0, "luns", 0, "name"), "Volume1", "clusters[0].luns[0].name", "duplicate volume name"),
    (("clusters", 0, "csvs", 0, "capacity_gb"), "big", "clusters[0].csvs[0].capacity_gb", "positive integer"),
    (("clusters", 0, "name"), "node1", "clusters[0].name", "already a host name"),
    (("clusters", 0, "nodez"), [], "clusters[0].nodez", "unknown field"),
    # Every integer is bounded, so nothing overflows the wire's int32/int64.
    (("host_defaults", "memory_mb"), 2**31, "host_defaults.memory_mb", "must be at most 16777216"),
    (
        ("host_defaults", "host_reserve_mb"),
        2**40,
        "host_defaults.host_reserve_mb",
        "must be at most 16777216",
    ),
    (("host_defaults", "cpu", "cores"), 1025, "host_defaults.cpu.cores", "must be at most 1024, got 1025"),
    (("host_defaults", "cpu", "mhz"), 100_001, "host_defaults.cpu.mhz", "must be at most 100000"),
    (
        ("host_defaults", "disks", 0, "capacity_gb"),
        2**21,
        "host_defaults.disks[0].capacity_gb",
        "at most 1048576",
    ),
    (("clusters", 0, "csvs", 0, "capacity_gb"), 2**63, "clusters[0].csvs[0].capacity_gb", "at most 1048576"),
    (("clusters", 0, "luns", 0, "capacity_gb"), 2**21, "clusters[0].luns[0].capacity_gb", "at most 1048576"),
    (("host_defaults", "networks", 0, "vlan_id"), 4095, "host_defaults.networks[0].vlan_id", "at most 4094"),
    (("version",), 2, "version", "must be 1, got 2"),
    (("version",), _DELETE, "version", "is required"),
    (("hosts",), [], "hosts", "at least one host"),
    (("hosts",), _DELETE, "hosts", "is required"),
    (("hosts",), "node1", "hosts", "must be a list"),
    (("extra",), 1, "extra", "unknown field"),
]


@pytest.mark.parametrize(("path", "value", "field", "problem"), BAD_INPUTS)
def test_bad_input_names_the_field(path: tuple[Any, ...], value: Any, field: str, problem: str) -> None:
    data = copy.deepcopy(base())
    _set(data, path, value)
    with pytest.raises(TopologyError) as info:
        parse_topology(data)
    assert info.value.field == field
    assert problem in info.value.problem
    assert str(info.value) == f"{field}: {info.value.problem}"


def test_duplicate_cluster_and_host_in_two_clusters() -> None:
    data = base()
    data["clusters"].append(
        {"name": "cluster1", "profile": "hyperv-2008r2", "nodes": ["standalone1"], "reserve": 0}
    )
    with pytest.raises(TopologyError, match=r"^clusters\[1\]\.name: duplicate cluster name"):
        parse_topology(data)
    data["clusters"][1]["name"] = "cluster2"
    data["clusters"][1]["nodes"] = ["node3"]
    with pytest.raises(
        TopologyError,
        match=r"^clusters\[1\]\.nodes\[0\]: host 'node3' is already a node of cluster 'cluster1'",
    ):
        parse_topology(data)


@pytest.mark.parametrize("data", [None, [], "hosts", 3])
def test_top_level_must_be_a_mapping(data: object) -> None:
    with pytest.raises(TopologyError, match="^topology: must be a mapping"):
        parse_topology(data)


@given(
    memory=st.one_of(st.integers(), st.text(), st.floats(allow_nan=False), st.booleans(), st.none()),
    reserve=st.one_of(st.integers(-10, 100_000), st.text()),
)
def test_any_memory_value_is_accepted_or_rejected_with_a_field(memory: object, reserve: object) -> None:
    data = base()
    data["hosts"][3]["memory_mb"] = memory
    data["hosts"][3]["host_reserve_mb"] = reserve
    try:
        topology = parse_topology(data)
    except TopologyError as exc:
        assert exc.field.startswith("hosts[3].")
    else:
        host = topology.host("standalone1")
        assert isinstance(host.memory_mb, int) and host.memory_mb > host.host_reserve_mb >= 0


def test_the_placement_section_sets_the_goal_and_weights_and_round_trips() -> None:
    data = base()
    assert parse_topology(data).placement == PlacementSettings()
    data["placement"] = {"goal": "resource_maximization", "memory_weight": 3, "cpu_weight": 0}
    topology = parse_topology(data)
    assert topology.placement == PlacementSettings("resource_maximization", 3.0, 0.0)
    assert parse_topology(topology_to_dict(topology)).placement == topology.placement


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"goal": "spread"}, "placement.goal: must be one of load_balancing, resource_maximization"),
        ({"memory_weight": -1}, "placement.memory_weight"),
        ({"memory_weight": 0, "cpu_weight": 0}, "placement: memory_weight and cpu_weight cannot both be 0"),
        ({"goal": "load_balancing", "typo": 1}, "placement"),
    ],
)
def test_a_bad_placement_section_names_the_field(section: dict[str, Any], message: str) -> None:
    data = base()
    data["placement"] = section
    with pytest.raises(TopologyError) as caught:
        parse_topology(data)
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_isolation_section_reaches_every_agents_settings_and_round_trips() -> None:
    data = base()
    assert parse_topology(data).isolation == IsolationSettings()
    data["isolation"] = {"timeout_s": 6, "response": "shut_down"}
    topology = parse_topology(data)
    assert topology.isolation == IsolationSettings(6.0, "shut_down")
    assert parse_topology(topology_to_dict(topology)).isolation == topology.isolation
    settings = topology.agent_settings()
    assert (settings["isolation_timeout_s"], settings["isolation_response"]) == (6.0, "shut_down")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"timeout_s": 0}, "isolation.timeout_s"),
        ({"response": "panic"}, "isolation.response: must be one of power_off, shut_down, leave_running"),
        ({"timeout_s": 5, "typo": 1}, "isolation"),
    ],
)
def test_a_bad_isolation_section_names_the_field(section: dict[str, Any], message: str) -> None:
    data = base()
    data["isolation"] = section
    with pytest.raises(TopologyError) as caught:
        parse_topology(data)
    assert str(caught.value).startswith(message), str(caught.value)


# --- VMM levels and shared volumes -----------------------------------------------------


def test_the_vmm_level_defaults_to_2008_r2_and_reads_back() -> None:
    assert parse_topology(base()).vmm_version == "2008r2"
    data = base()
    data["vmm_version"] = 2008  # unquoted in YAML, a number
    data["clusters"][0]["csvs"] = []
    topology = parse_topology(data)
    assert topology.vmm_version == "2008"
    assert parse_topology(topology_to_dict(topology)).vmm_version == "2008"


def test_an_unknown_vmm_level_is_refused_naming_the_field() -> None:
    data = base()
    data["vmm_version"] = "2012"
    with pytest.raises(TopologyError) as refused:
        parse_topology(data)
    assert refused.value.message == "vmm_version: must be one of 2008, 2008r2, got '2012'"


def test_a_windows_server_2008_cluster_with_a_csv_is_refused_naming_the_field() -> None:
    data = base()
    data["host_defaults"]["profile"] = "hyperv-2008"
    data["clusters"][0]["profile"] = "hyperv-2008"
    with pytest.raises(TopologyError) as refused:
        parse_topology(data)
    assert refused.value.field == "clusters[0].csvs"
    assert "hyperv-2008 cluster (Windows Server 2008) has no cluster shared volumes" in refused.value.message
    data["clusters"][0]["csvs"] = []
    assert parse_topology(data).cluster("cluster1").profile == "hyperv-2008"


def test_vmm_2008_supports_no_csv_even_on_a_2008_r2_cluster() -> None:
    data = base()
    data["vmm_version"] = "2008"
    with pytest.raises(TopologyError) as refused:
        parse_topology(data)
    assert refused.value.field == "clusters[0].csvs"
    assert "VMM 2008 does not support cluster shared volumes" in refused.value.message


ESX_DATACENTER = """
version: 1
host_defaults: {profile: esx, cpu: {vendor: GenuineIntel, model: X, cores: 8, mhz: 2000}, memory_mb: 8192}
clusters:
  - {name: ea, profile: esx, reserve: 0, datacenter: dc1, nodes: [e1], csvs: [{name: ds, capacity_gb: 100}]}
  - {name: eb, profile: esx, reserve: 0, datacenter: dc1, nodes: [e2], csvs: [{name: ds, capacity_gb: 100}]}
  - {name: ec, profile: esx, reserve: 0, nodes: [e3]}
hosts: [{name: e1}, {name: e2}, {name: e3}]
"""


def test_esx_clusters_of_a_datacenter_share_datastores_and_know_each_other() -> None:
    topology = parse_topology(yaml.safe_load(ESX_DATACENTER))
    assert [c.datacenter for c in topology.clusters] == ["dc1", "dc1", None]
    assert topology.datacenter_peers("ea") == ("eb",) and topology.datacenter_peers("ec") == ()
    assert parse_topology(topology_to_dict(topology)) == topology


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda d: d["clusters"][2].update(csvs=[{"name": "ds", "capacity_gb": 100}]), "clusters[2].csvs",
         "volume 'ds' is also a volume of cluster 'ea'; only ESX clusters of one datacenter share"),
        (lambda d: d["clusters"][1]["csvs"][0].update(capacity_gb=200), "clusters[1].csvs",
         "datastore 'ds' is shared with cluster 'ea': it must be a CSV there too, of the same capacity"),
    ],
)  # fmt: skip
def test_a_datastore_is_shared_only_inside_a_datacenter(change, field: str, message: str) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(ESX_DATACENTER)
    change(data)
    with pytest.raises(TopologyError) as caught:
        parse_topology(data)
    assert caught.value.field == field and message in str(caught.value)


def test_only_esx_clusters_belong_to_a_datacenter() -> None:
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    data["clusters"][0]["datacenter"] = "dc1"
    with pytest.raises(TopologyError, match="a hyperv-2008r2 cluster belongs to no datacenter"):
        parse_topology(data)


def test_library_servers_form_no_cluster() -> None:
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    data["clusters"][0]["profile"] = "library"
    with pytest.raises(TopologyError) as caught:
        parse_topology(data)
    assert str(caught.value) == (
        "clusters[0].profile: library hosts form no cluster: a library server stores VMs and runs none"
    )
    # A library server listed as a node has the wrong profile for a Hyper-V cluster.
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    data["clusters"][0]["nodes"].append("library1")
    with pytest.raises(
        TopologyError, match="host 'library1' has profile library but the cluster's profile is"
    ):
        parse_topology(data)
