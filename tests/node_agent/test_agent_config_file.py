"""The host configuration file: the wire contract's HostConfig message as JSON, read onto the
agent's core configuration; a bad file is one sentence naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agent_testkit import config_file_data, config_file_text, host_config

from havm.contract.host_config import agent_config, agent_config_json
from havm.contract.topology import parse_topology
from node_agent.adapters.config_file import host_config_from_json, host_config_to_proto
from node_agent.core.config import IsolationResponse, VolumeKind, parse_host_config
from node_agent.core.errors import ConfigError

TOPOLOGY: dict[str, Any] = {
    "version": 1,
    "host_defaults": {
        "profile": "esx",
        "cpu": {
            "vendor": "AuthenticAMD",
            "model": "Opteron 2384",
            "features": ["sse4a"],
            "cores": 4,
            "mhz": 2700,
        },
        "memory_mb": 16384,
        "disks": [{"name": "local1", "capacity_gb": 100}],
        "networks": [{"name": "VM Network", "bound_to": "vSwitch0", "vlan_id": 12}],
    },
    "clusters": [
        {
            "name": "c1",
            "profile": "esx",
            "nodes": ["e1", "e2"],
            "csvs": [{"name": "datastore1", "capacity_gb": 500}],
            "luns": [{"name": "lun1", "capacity_gb": 50, "visible_to": ["e1"]}],
        }
    ],
    "timing": {
        "heartbeat_interval_s": 0.5,
        "probe_timeout_s": 0.25,
        "isolation_timeout_s": 4,
        "stall_timeout_s": 2,
    },
    "isolation": {"response": "leave_running"},
    "hosts": [{"name": "e1"}, {"name": "e2"}, {"name": "solo", "profile": "hyperv-2008"}],
}


def test_the_file_havm_up_writes_is_the_agents_configuration(tmp_path: Path) -> None:
    topology = parse_topology(TOPOLOGY)
    text = agent_config_json(agent_config(topology, topology.host("e1"), tmp_path / "san"))
    data = json.loads(text)
    # The wire contract's names, snake_case, enums by name.
    assert data["profile"] == "PROFILE_ESX"
    assert data["timing"]["isolation_timeout_s"] == 4
    config = host_config_from_json(text)
    assert (config.name, config.cluster, config.profile.value) == ("e1", "c1", "esx")
    assert config.cpu.features == ("sse4a",) and config.cpu.cores == 4
    assert config.memory_mb == 16384 and config.host_reserve_mb == 1024
    assert [(d.name, d.capacity_gb) for d in config.disks] == [("local1", 100)]
    assert [(n.name, n.bound_to, n.vlan_id) for n in config.networks] == [("VM Network", "vSwitch0", 12)]
    assert [(v.name, v.kind, v.capacity_gb) for v in config.volumes] == [
        ("datastore1", VolumeKind.CSV, 500),
        ("lun1", VolumeKind.LUN, 50),
    ]
    assert config.san_root == str(tmp_path / "san")
    s = config.settings
    assert (s.heartbeat_interval_s, s.isolation_timeout_s, s.migration_stall_timeout_s) == (0.5, 4.0, 2.0)
    assert s.isolation_response is IsolationResponse.LEAVE_RUNNING
    solo = host_config_from_json(agent_config_json(agent_config(topology, topology.host("solo"), "san")))
    assert solo.cluster is None and solo.volumes == ()


def test_a_core_configuration_round_trips_through_the_file(tmp_path: Path) -> None:
    raw = host_config(tmp_path)
    raw["settings"] |= {
        "isolation_timeout_s": 0.6,
        "mqtt_keepalive_s": 7,
        "migration_disk_chunk_bytes": 65536,
    }
    config = parse_host_config(raw)
    assert host_config_from_json(config_file_text(raw)) == config
    assert host_config_to_proto(config).settings.guest_tick_s == 0.05


def test_defaults_fill_what_the_file_leaves_out(tmp_path: Path) -> None:
    data = config_file_data(host_config(tmp_path))
    del data["settings"], data["timing"], data["isolation_response"]
    config = host_config_from_json(json.dumps(data))
    assert config.settings.isolation_timeout_s == 15.0
    assert config.settings.isolation_response is IsolationResponse.POWER_OFF


def test_unknown_fields_are_ignored_for_newer_writers(tmp_path: Path) -> None:
    data = config_file_data(host_config(tmp_path)) | {"gpu": {"model": "none"}}
    assert host_config_from_json(json.dumps(data)).name == "node1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"profile": "PROFILE_UNSPECIFIED"},
            "profile: must be one of PROFILE_HYPERV_2008, PROFILE_HYPERV_2008R2, ",
        ),
        ({"cpu": None}, "cpu: is required"),
        ({"name": "no/slash"}, "name: 'no/slash' must be letters"),
        ({"memory_mb": 512}, "host_reserve_mb: must be less than memory_mb (512)"),
        (
            {"disks": [{"name": "C", "capacity_bytes": "1073741825"}]},
            "disks[0].capacity_bytes: must be a whole",
        ),
        (
            {"disks": [{"name": "C"}]},
            "disks[0].capacity_bytes: must be a whole number of GiB, at least 1 GiB, got 0",
        ),
        (
            {"volumes": [{"name": "v", "capacity_bytes": "1073741824"}]},
            "volumes[0].kind: must be STORAGE_KIND_CSV",
        ),
        ({"san_root": ""}, "san_root: is required when the host sees volumes"),
        ({"timing": {"heartbeat_interval_s": -1}}, "timing.heartbeat_interval_s: must be a positive number"),
        ({"timing": {"stall_timeout_s": -2}}, "timing.stall_timeout_s: must be a positive number"),
        ({"settings": {"guest_tick_s": 0}}, "settings.guest_tick_s: must be a positive number"),
        (
            {"settings": {"migration_chunk_pages": 5000}},
            "settings.migration_chunk_pages: must be at most 4096",
        ),
    ],
)
def test_a_bad_file_names_the_field_as_the_file_spells_it(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    data = config_file_data(host_config(tmp_path)) | change
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        host_config_from_json(json.dumps(data))
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('{"memory_mb": "lots"}', "memory_mb"),
        ('{"cpu": {"cores": 1.5}}', "cores"),
        ('{"settings": {"guest_tick_s": "fast"}}', "guest_tick_s"),
        ("[1, 2]", "HostConfig"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_sentence_naming_it(text: str, names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        host_config_from_json(text)
    message = str(caught.value)
    assert message.startswith("config: is not a host configuration (havm.v1.HostConfig): ")
    assert names in message and "\n" not in message
