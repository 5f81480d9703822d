"""The host configuration file: the wire contract's HostConfig message, as JSON, onto the
agent's core HostConfig.

`havm up` writes the file with `google.protobuf.json_format` from the topology
(havm.contract.host_config); the agent reads it back the same way and maps it here
onto its core configuration, whose rules (core.config) stay the one judge of a host.
A wrong file ends the agent with one sentence naming the field as the file spells it
(`disks[0].capacity_bytes`, `timing.isolation_timeout_s`), never a traceback.

Of the cluster's timing section the agent acts on the heartbeat interval, the
isolation timeout and the stall timeout; the rules that tie them to the manager's
values are checked where the topology is read, before any file is written.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from havm.v1 import common_pb2
from node_agent.core.config import AgentSettings, CpuSpec, HostConfig, VolumeKind, parse_host_config
from node_agent.core.errors import ConfigError

GIB = 1024**3
PROFILE_FROM_PROTO = {
    common_pb2.PROFILE_HYPERV_2008: "hyperv-2008",
    common_pb2.PROFILE_HYPERV_2008R2: "hyperv-2008r2",
    common_pb2.PROFILE_ESX: "esx",
    common_pb2.PROFILE_LIBRARY: "library",
}
PROFILE_TO_PROTO = {name: value for value, name in PROFILE_FROM_PROTO.items()}
VOLUME_KIND_FROM_PROTO = {common_pb2.STORAGE_KIND_CSV: "csv", common_pb2.STORAGE_KIND_LUN: "lun"}
ISOLATION_RESPONSE_FROM_PROTO = {
    common_pb2.ISOLATION_RESPONSE_POWER_OFF: "power_off",
    common_pb2.ISOLATION_RESPONSE_SHUT_DOWN: "shut_down",
    common_pb2.ISOLATION_RESPONSE_LEAVE_RUNNING: "leave_running",
}
# The core's settings the file's timing section sets, by the name the file gives them.
TIMING_SETTINGS = {
    "heartbeat_interval_s": "heartbeat_interval_s",
    "isolation_timeout_s": "isolation_timeout_s",
    "stall_timeout_s": "migration_stall_timeout_s",
}
_FILE_FIELD = {f"settings.{core}": f"timing.{name}" for name, core in TIMING_SETTINGS.items()}


def host_config_from_json(text: str) -> HostConfig:
    """The host configuration the file's text describes; ConfigError naming the field.
    Unknown fields are ignored so that newer writers of the file do not break older agents."""
    message = common_pb2.HostConfig()
    try:
        json_format.Parse(text, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ConfigError("config", f"is not a host configuration (havm.v1.HostConfig): {exc}") from None
    _check_enum_names(json.loads(text), message)
    return host_config_from_proto(message)


def _check_enum_names(data: dict[str, Any], message: common_pb2.HostConfig) -> None:
    """An enum name the agent does not know reads as unset (a newer writer's value);
    where that leaves a required value unset, the name the file gave is the error."""
    if message.profile == common_pb2.PROFILE_UNSPECIFIED and data.get("profile") not in (
        None,
        0,
        "PROFILE_UNSPECIFIED",
    ):
        allowed = ", ".join(common_pb2.Profile.Name(p) for p in PROFILE_FROM_PROTO)
        raise ConfigError("profile", f"must be one of {allowed}, got {data['profile']!r}")
    raw_volumes = data.get("volumes")
    for i, volume in enumerate(message.volumes):
        raw = raw_volumes[i] if isinstance(raw_volumes, list) and i < len(raw_volumes) else {}
        given = raw.get("kind") if isinstance(raw, dict) else None
        if volume.kind == common_pb2.STORAGE_KIND_UNSPECIFIED and given not in (
            None,
            0,
            "STORAGE_KIND_UNSPECIFIED",
        ):
            raise ConfigError(
                f"volumes[{i}].kind", f"must be STORAGE_KIND_CSV or STORAGE_KIND_LUN, got {given!r}"
            )


def host_config_from_proto(message: common_pb2.HostConfig) -> HostConfig:
    """The message onto the core configuration, checked by the core's rules and the
    timing section's; ConfigError naming the field as the file spells it."""
    raw = _core_form(message)
    try:
        return parse_host_config(raw)
    except ConfigError as exc:
        field = _FILE_FIELD.get(exc.field, exc.field)
        raise ConfigError(field, exc.problem) from None


def _enum_name(wrapper: Any, value: int) -> str:
    """The name of an enum value, or the number itself for one the enum does not name."""
    try:
        return str(wrapper.Name(value))
    except ValueError:
        return str(value)


def _core_form(m: common_pb2.HostConfig) -> dict[str, Any]:
    if m.profile not in PROFILE_FROM_PROTO:
        allowed = ", ".join(common_pb2.Profile.Name(p) for p in PROFILE_FROM_PROTO)
        raise ConfigError(
            "profile", f"must be one of {allowed}, got {_enum_name(common_pb2.Profile, m.profile)}"
        )
    if not m.HasField("cpu"):
        raise ConfigError("cpu", "is required")
    volumes = []
    for i, v in enumerate(m.volumes):
        if v.kind not in VOLUME_KIND_FROM_PROTO:
            given = _enum_name(common_pb2.StorageKind, v.kind)
            field = f"volumes[{i}].kind"
            raise ConfigError(field, f"must be STORAGE_KIND_CSV or STORAGE_KIND_LUN, got {given}")
        volumes.append(
            {
                "name": v.name,
                "kind": VOLUME_KIND_FROM_PROTO[v.kind],
                "capacity_gb": _whole_gib(v.capacity_bytes, f"volumes[{i}].capacity_bytes"),
            }
        )
    settings: dict[str, Any] = {field.name: value for field, value in m.settings.ListFields()}
    if m.HasField("timing"):
        settings.update(_timing_settings(m.timing))
    if m.isolation_response != common_pb2.ISOLATION_RESPONSE_UNSPECIFIED:
        if m.isolation_response not in ISOLATION_RESPONSE_FROM_PROTO:
            raise ConfigError("isolation_response", f"unknown value {m.isolation_response}")
        settings["isolation_response"] = ISOLATION_RESPONSE_FROM_PROTO[m.isolation_response]
    return {
        "name": m.name,
        "cluster": m.cluster or None,
        "profile": PROFILE_FROM_PROTO[m.profile],
        "cpu": {
            "vendor": m.cpu.vendor,
            "model": m.cpu.model,
            "features": list(m.cpu.features),
            "cores": m.cpu.cores,
            "mhz": m.cpu.mhz,
        },
        "memory_mb": m.memory_mb,
        "host_reserve_mb": m.host_reserve_mb,
        "disks": [
            {"name": d.name, "capacity_gb": _whole_gib(d.capacity_bytes, f"disks[{i}].capacity_bytes")}
            for i, d in enumerate(m.disks)
        ],
        "networks": [{"name": n.name, "bound_to": n.bound_to, "vlan_id": n.vlan_id} for n in m.networks],
        "volumes": volumes,
        "san_root": m.san_root or None,
        "settings": settings,
        "heartbeat_key": m.heartbeat_key,
        "migration_peer_clusters": list(m.migration_peer_clusters),
    }


def _timing_settings(t: common_pb2.Timing) -> dict[str, float]:
    """The agent's settings the timing section sets; a value left at 0 keeps the default.
    The rules between the section's values were checked where the topology was read
    (the manager's values among them); the agent checks the values it acts on."""
    settings: dict[str, float] = {}
    for name, core in TIMING_SETTINGS.items():
        value = getattr(t, name)
        if value != 0:
            settings[core] = value
    return settings


def _whole_gib(capacity_bytes: int, field: str) -> int:
    if capacity_bytes < GIB or capacity_bytes % GIB:
        raise ConfigError(field, f"must be a whole number of GiB, at least 1 GiB, got {capacity_bytes}")
    return capacity_bytes // GIB


def cpu_to_pb(cpu: CpuSpec) -> common_pb2.Cpu:
    return common_pb2.Cpu(
        vendor=cpu.vendor, model=cpu.model, features=list(cpu.features), cores=cpu.cores, mhz=cpu.mhz
    )


def host_config_to_proto(config: HostConfig) -> common_pb2.HostConfig:
    """The file form of a core configuration (tests and tools write agents' files with
    it); host_config_from_proto reads it back to an equal configuration."""
    s = config.settings
    timing_names = set(TIMING_SETTINGS.values()) | {"isolation_response"}
    tuned = {
        name: getattr(s, name)
        for name in common_pb2.AgentSettings.DESCRIPTOR.fields_by_name
        if name not in timing_names and getattr(s, name) != getattr(AgentSettings(), name)
    }
    return common_pb2.HostConfig(
        name=config.name,
        cluster=config.cluster or "",
        profile=PROFILE_TO_PROTO[config.profile.value],
        cpu=cpu_to_pb(config.cpu),
        memory_mb=config.memory_mb,
        host_reserve_mb=config.host_reserve_mb,
        disks=[common_pb2.LocalDisk(name=d.name, capacity_bytes=d.capacity_gb * GIB) for d in config.disks],
        networks=[
            common_pb2.Network(name=n.name, bound_to=n.bound_to, vlan_id=n.vlan_id) for n in config.networks
        ],
        volumes=[
            common_pb2.SharedVolume(
                name=v.name,
                kind=common_pb2.STORAGE_KIND_CSV if v.kind is VolumeKind.CSV else common_pb2.STORAGE_KIND_LUN,
                capacity_bytes=v.capacity_gb * GIB,
            )
            for v in config.volumes
        ],
        san_root=config.san_root or "",
        timing=common_pb2.Timing(
            heartbeat_interval_s=s.heartbeat_interval_s,
            isolation_timeout_s=s.isolation_timeout_s,
            stall_timeout_s=s.migration_stall_timeout_s,
        ),
        settings=common_pb2.AgentSettings(**tuned),
        isolation_response=common_pb2.IsolationResponse.Value(
            "ISOLATION_RESPONSE_" + s.isolation_response.value.upper()
        ),
        heartbeat_key=config.heartbeat_key.hex(),
        migration_peer_clusters=config.migration_peer_clusters,
    )
