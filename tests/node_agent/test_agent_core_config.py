"""Validation of the host configuration file: every problem names its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from agent_testkit import host_config

from node_agent.core.config import AgentSettings, IsolationResponse, Profile, VolumeKind, parse_host_config
from node_agent.core.errors import ConfigError


@pytest.fixture
def raw(tmp_path: Path) -> dict[str, Any]:
    return host_config(tmp_path)


def test_valid_config(raw: dict[str, Any]) -> None:
    config = parse_host_config(raw)
    assert config.name == "node1" and config.cluster == "cluster1"
    assert config.profile is Profile.HYPERV_2008R2
    assert config.cpu.cores == 8 and config.cpu.features == ("sse3", "sse4_2", "popcnt")
    assert config.vm_memory_mb == 8192 - 2048
    assert [v.kind for v in config.volumes] == [VolumeKind.CSV, VolumeKind.LUN]
    assert config.settings.guest_tick_s == 0.05
    assert config.settings.grpc_stop_grace_s == AgentSettings().grpc_stop_grace_s


def test_standalone_host_without_settings_gets_defaults(raw: dict[str, Any]) -> None:
    raw.update(cluster=None, volumes=[])
    del raw["settings"], raw["san_root"]
    config = parse_host_config(raw)
    assert config.cluster is None and config.san_root is None
    assert config.settings == AgentSettings()


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    node: Any = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is KeyError:
        del node[keys[-1]]
    elif isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("cpu.cores", 0, "cpu.cores: must be a positive integer"),
        ("cpu.cores", True, "cpu.cores: must be a positive integer"),
        ("cpu.mhz", "fast", "cpu.mhz: must be a positive integer"),
        ("cpu.vendor", "", "cpu.vendor: must be a non-empty string"),
        ("cpu.features", "sse3", "cpu.features: must be a list of strings"),
        ("cpu", KeyError, "cpu: must be an object"),
        ("name", KeyError, "name: must be a non-empty string"),
        ("name", "node 1", "name: 'node 1' must be letters"),
        ("profile", "hyperv-2012", "profile: must be one of hyperv-2008, hyperv-2008r2, esx"),
        ("memory_mb", -1, "memory_mb: must be a positive integer"),
        ("host_reserve_mb", 8192, "host_reserve_mb: must be less than memory_mb"),
        ("host_reserve_mb", -5, "host_reserve_mb: must not be negative"),
        ("disks.0.capacity_gb", 0, "disks[0].capacity_gb: must be a positive integer"),
        ("disks", {"C": 1}, "disks: must be a list"),
        ("networks.0.vlan_id", 5000, "networks[0].vlan_id: must be between 0 and 4094"),
        ("volumes.1.kind", "nfs", "volumes[1].kind: must be 'csv' or 'lun'"),
        ("san_root", KeyError, "san_root: is required when the host sees volumes"),
        ("settings.guest_tick_s", 0, "settings.guest_tick_s: must be a positive number"),
        ("settings.shutdown_grace_s", "x", "settings.shutdown_grace_s: must be a number"),
        (
            "settings.max_guest_rate",
            float("inf"),
            "settings.max_guest_rate: must be a finite number, got inf",
        ),
        ("settings.guest_tick_s", float("nan"), "settings.guest_tick_s: must be a finite number, got nan"),
    ],
)
def test_field_errors_name_the_field(raw: dict[str, Any], path: str, value: Any, message: str) -> None:
    _set(raw, path, value)
    with pytest.raises(ConfigError) as info:
        parse_host_config(raw)
    assert info.value.message.startswith(message), info.value.message


def test_duplicate_disk_is_refused(raw: dict[str, Any]) -> None:
    raw["disks"].append(copy.deepcopy(raw["disks"][0]))
    with pytest.raises(ConfigError, match="disks: 'C' is listed twice"):
        parse_host_config(raw)


def test_not_an_object() -> None:
    with pytest.raises(ConfigError, match="config: must be an object"):
        parse_host_config([1, 2])


def test_zero_shutdown_grace_is_allowed(raw: dict[str, Any]) -> None:
    raw["settings"]["shutdown_grace_s"] = 0
    assert parse_host_config(raw).settings.shutdown_grace_s == 0.0


def test_esx_networks_are_port_groups(raw: dict[str, Any]) -> None:
    raw["profile"] = "esx"
    assert parse_host_config(raw).profile.network_term == "port group"


def test_ha_settings_defaults_and_isolation_response(raw: dict[str, Any]) -> None:
    defaults = AgentSettings()
    assert defaults.heartbeat_interval_s == 1.0
    assert defaults.mqtt_keepalive_s == 3
    assert defaults.isolation_timeout_s == 15.0
    assert defaults.isolation_response is IsolationResponse.POWER_OFF
    raw["settings"] = {"isolation_response": "leave_running", "isolation_timeout_s": 1.5}
    settings = parse_host_config(raw).settings
    assert settings.isolation_response is IsolationResponse.LEAVE_RUNNING
    assert settings.isolation_timeout_s == 1.5
    raw["settings"] = {"isolation_response": "reboot"}
    with pytest.raises(ConfigError) as caught:
        parse_host_config(raw)
    assert caught.value.message == (
        "settings.isolation_response: must be one of power_off, shut_down, leave_running, got 'reboot'"
    )
