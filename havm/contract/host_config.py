"""One host's configuration as the wire contract's HostConfig message, and its JSON.

`havm up`, `havm host add` and the scenario engine write the file an agent runs with
from the topology, through here: the host as the topology describes it, the shared
volumes it sees, the SAN directory, the cluster's timing and isolation response. The
agent reads it back with the same `json_format` (node_agent.adapters.config_file).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from havm.contract.heartbeat_auth import host_key
from havm.contract.hosts import HostSpec
from havm.contract.timing import Timing
from havm.contract.topology import Topology, VolumeSpec
from havm.v1 import common_pb2

GIB = 1024**3
PROFILE_TO_PROTO = {
    "hyperv-2008": common_pb2.PROFILE_HYPERV_2008,
    "hyperv-2008r2": common_pb2.PROFILE_HYPERV_2008R2,
    "esx": common_pb2.PROFILE_ESX,
    "library": common_pb2.PROFILE_LIBRARY,
}
VOLUME_KIND_TO_PROTO = {"csv": common_pb2.STORAGE_KIND_CSV, "lun": common_pb2.STORAGE_KIND_LUN}
ISOLATION_RESPONSE_TO_PROTO = {
    "power_off": common_pb2.ISOLATION_RESPONSE_POWER_OFF,
    "shut_down": common_pb2.ISOLATION_RESPONSE_SHUT_DOWN,
    "leave_running": common_pb2.ISOLATION_RESPONSE_LEAVE_RUNNING,
}


def timing_to_proto(timing: Timing) -> common_pb2.Timing:
    return common_pb2.Timing(
        heartbeat_interval_s=timing.heartbeat_interval_s,
        heartbeat_threshold=timing.heartbeat_threshold,
        probe_timeout_s=timing.probe_timeout_s,
        isolation_timeout_s=timing.isolation_timeout_s,
        stall_timeout_s=timing.stall_timeout_s,
        refresh_interval_s=timing.refresh_interval_s,
    )


def host_to_proto(host: HostSpec) -> common_pb2.HostConfig:
    """The host as the topology describes it (fields 1 to 10): what AddHost takes."""
    return common_pb2.HostConfig(
        name=host.name,
        cluster=host.cluster or "",
        profile=PROFILE_TO_PROTO[host.profile],
        cpu=common_pb2.Cpu(
            vendor=host.cpu.vendor,
            model=host.cpu.model,
            features=list(host.cpu.features),
            cores=host.cpu.cores,
            mhz=host.cpu.mhz,
        ),
        memory_mb=host.memory_mb,
        host_reserve_mb=host.host_reserve_mb,
        disks=[common_pb2.LocalDisk(name=d.name, capacity_bytes=d.capacity_gb * GIB) for d in host.disks],
        networks=[
            common_pb2.Network(name=n.name, bound_to=n.bound_to, vlan_id=n.vlan_id) for n in host.networks
        ],
        address=host.address or "",
        migration_address=host.migration_address or "",
    )


def host_agent_config(
    host: HostSpec,
    volumes: Iterable[VolumeSpec],
    san_root: Path | str,
    timing: Timing,
    isolation_response: str = "power_off",
    settings: Mapping[str, float | int] | None = None,
    heartbeat_key: bytes = b"",
    peer_clusters: Iterable[str] = (),
) -> common_pb2.HostConfig:
    """The configuration of `host`'s agent: the shared volumes it sees (under `san_root`,
    the SAN every agent of the cluster shares), the cluster's timing, and any agent
    `settings` (AgentSettings fields by name) on top of the agent's defaults;
    `peer_clusters` are the other clusters of its datacenter."""
    config = host_to_proto(host)
    config.volumes.extend(
        common_pb2.SharedVolume(
            name=v.name, kind=VOLUME_KIND_TO_PROTO[v.kind], capacity_bytes=v.capacity_gb * GIB
        )
        for v in volumes
    )
    config.san_root = str(san_root)
    config.timing.CopyFrom(timing_to_proto(timing))
    config.isolation_response = ISOLATION_RESPONSE_TO_PROTO[isolation_response]
    config.settings.CopyFrom(common_pb2.AgentSettings(**_settings(settings)))
    config.heartbeat_key = heartbeat_key.hex()
    config.migration_peer_clusters.extend(peer_clusters)
    return config


def _settings(settings: Mapping[str, float | int] | None) -> dict[str, Any]:
    return dict(settings or {})


def agent_config(
    topology: Topology, host: HostSpec, san_root: Path | str, cluster_secret: bytes = b""
) -> common_pb2.HostConfig:
    """The configuration one node agent of the topology runs with; with the cluster's
    heartbeat secret, the key it signs with."""
    return host_agent_config(
        host,
        topology.volumes_visible_to(host.name),
        san_root,
        topology.timing,
        topology.isolation.response,
        heartbeat_key=host_key(cluster_secret, host.name) if cluster_secret else b"",
        peer_clusters=topology.datacenter_peers(host.cluster),
    )


def agent_config_json(config: common_pb2.HostConfig) -> str:
    """The file's text: JSON with the field names of common.proto, defaults included."""
    text = json_format.MessageToJson(
        config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return str(text) + "\n"
