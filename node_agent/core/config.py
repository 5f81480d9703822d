"""The emulated host's description, and its validation.

`havm up` writes one JSON file per host from the topology. A wrong file must end the
agent with one sentence that names the field, never a traceback, so every check
here reports `field: problem`.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from node_agent.core.errors import ConfigError

# Pages in one migration message at most: the gRPC message limit is sized for it.
MAX_CHUNK_PAGES = 4096

# Host, disk, volume and VM names become directory names and MQTT topic levels.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Profile(enum.Enum):
    """The hypervisor the host emulates; what it can do is its row of PROFILE_TRAITS."""

    HYPERV_2008 = "hyperv-2008"  # Hyper-V 1.0: quick migration only
    HYPERV_2008R2 = "hyperv-2008r2"  # Hyper-V 2.0: live migration and CSV
    ESX = "esx"  # VMware ESX: vMotion, port groups
    LIBRARY = "library"  # a VMM library server: stores VMs at rest, runs none

    @property
    def traits(self) -> ProfileTraits:
        return PROFILE_TRAITS[self]

    @property
    def network_term(self) -> str:
        return self.traits.network_term


@dataclass(frozen=True)
class ProfileTraits:
    """What a profile can do, as the agent acts on it: code asks a trait, never a name.

    The agent reports its row to the manager with its inventory (HostCapabilities on
    the wire), and the manager decides by that report.
    """

    # Running VMs leave and arrive live; otherwise they move by quick migration only.
    live_migration: bool
    # VMs move by quick migration: saved, their storage handed over, restored.
    quick_migration: bool
    # Volumes every node uses at once: cluster shared volumes (Hyper-V 2008 R2) or
    # VMFS datastores (ESX); Hyper-V 2008 has shared LUNs only.
    csv: bool
    # How the hypervisor calls a network, in messages: "virtual network" or "port group".
    network_term: str
    # Whether its networks are port groups (ESX) rather than virtual networks (Hyper-V).
    port_groups: bool
    # A library server: it holds stopped and saved VMs on its share and runs none, so
    # what a VM needs to run here (processors, memory, networks) is not asked of it.
    library_server: bool = False


PROFILE_TRAITS: dict[Profile, ProfileTraits] = {
    Profile.HYPERV_2008: ProfileTraits(
        live_migration=False,
        quick_migration=True,
        csv=False,
        network_term="virtual network",
        port_groups=False,
    ),
    Profile.HYPERV_2008R2: ProfileTraits(
        live_migration=True,
        quick_migration=True,
        csv=True,
        network_term="virtual network",
        port_groups=False,
    ),
    Profile.ESX: ProfileTraits(
        live_migration=True,
        quick_migration=True,
        csv=True,
        network_term="port group",
        port_groups=True,
    ),
    Profile.LIBRARY: ProfileTraits(
        live_migration=False,
        quick_migration=False,
        csv=False,
        network_term="virtual network",
        port_groups=False,
        library_server=True,
    ),
}


class IsolationResponse(enum.Enum):
    """What the host does to its VMs once cut off from manager and broker for too long."""

    POWER_OFF = "power_off"  # turn off every running or paused VM: they restart elsewhere
    SHUT_DOWN = "shut_down"  # shut running VMs down cleanly, turn off paused ones
    LEAVE_RUNNING = "leave_running"  # keep them: storage fencing alone protects the data


class VolumeKind(enum.Enum):
    """The kinds of SAN storage a host can see."""

    CSV = "csv"  # cluster shared volume: many VMs, all nodes at once
    LUN = "lun"  # shared LUN: one VM, one owner at a time


@dataclass(frozen=True)
class AgentSettings:
    """Timings and limits of the agent; every one can be set under `settings` in the config."""

    guest_tick_s: float = 0.1
    shutdown_grace_s: float = 0.2
    status_interval_s: float = 5.0
    # How long in-flight RPCs may finish when the agent stops.
    grpc_stop_grace_s: float = 0.5
    # Cap of the backoff between two attempts to reach the broker.
    mqtt_reconnect_max_s: float = 2.0
    # Small, so that the broker sends the last will soon after the agent goes silent.
    mqtt_keepalive_s: int = 3
    heartbeat_interval_s: float = 1.0
    # How long a single broker call may take before the connection counts as lost.
    mqtt_timeout_s: float = 2.0
    # Highest guest workload rate a VM may ask for (MB/s dirtied, journal writes/s):
    # beyond it a tick costs more than the tick interval and starves the event loop.
    max_guest_rate: float = 10000.0
    # Cut off from both the management calls and the broker this long, the host
    # applies `isolation_response` to its VMs, once per isolation episode.
    isolation_timeout_s: float = 15.0
    isolation_check_interval_s: float = 0.25
    isolation_response: IsolationResponse = IsolationResponse.POWER_OFF
    # Live migration. Pre-copy passes at most (Hyper-V 2008 R2 makes 10), and the
    # pause the guest may see at the switch: the passes stop once the dirty rest
    # fits it. Both are defaults for a MigrateVm request that leaves them at 0.
    migration_max_passes: int = 10
    migration_blackout_budget_ms: float = 30.0
    # The dirty rest has not shrunk for this many passes: the guest dirties memory
    # as fast as it is sent, and the migration gives up before max passes.
    migration_stalled_passes: int = 3
    # Memory pages per message on the agent-to-agent stream (128 pages = 512 KiB: on
    # loopback, larger messages stall the stream more than they save per message).
    migration_chunk_pages: int = 128
    # Disk bytes per message when a migration or a storage move copies the disk.
    migration_disk_chunk_bytes: int = 1048576
    # A peer silent this long is gone: the destination drops its skeleton, the
    # source keeps its VM. Also bounds the connection to the destination.
    migration_stall_timeout_s: float = 5.0
    # How often MigrateVm reports progress at least.
    migration_progress_interval_s: float = 0.5


@dataclass(frozen=True)
class CpuSpec:
    vendor: str
    model: str
    features: tuple[str, ...]
    cores: int
    mhz: int


@dataclass(frozen=True)
class DiskSpec:
    name: str
    capacity_gb: int


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    bound_to: str
    vlan_id: int


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    kind: VolumeKind
    capacity_gb: int


@dataclass(frozen=True)
class HostConfig:
    name: str
    cluster: str | None
    profile: Profile
    cpu: CpuSpec
    memory_mb: int
    host_reserve_mb: int
    disks: tuple[DiskSpec, ...]
    networks: tuple[NetworkSpec, ...]
    volumes: tuple[VolumeSpec, ...]
    san_root: str | None
    settings: AgentSettings = field(default_factory=AgentSettings)
    # What the host signs its heartbeats and statuses with (bytes of the file's hex);
    # empty: unsigned.
    heartbeat_key: bytes = b""
    # The other clusters whose nodes may live-migrate VMs here: an ESX node's other
    # clusters of its datacenter, between which VMotion moves running VMs.
    migration_peer_clusters: tuple[str, ...] = ()

    @property
    def vm_memory_mb(self) -> int:
        """Memory VMs may use: the rest is kept for the parent partition."""
        return self.memory_mb - self.host_reserve_mb

    def disk(self, name: str) -> DiskSpec | None:
        return next((d for d in self.disks if d.name == name), None)

    def volume(self, name: str, kind: VolumeKind) -> VolumeSpec | None:
        return next((v for v in self.volumes if v.name == name and v.kind is kind), None)

    def network(self, name: str) -> NetworkSpec | None:
        return next((n for n in self.networks if n.name == name), None)


def parse_host_config(raw: object) -> HostConfig:
    """Build a HostConfig from the decoded JSON; raise ConfigError naming the field.

    Purely computational, no side effects. Unknown keys are ignored so that newer
    writers of the file do not break older agents.
    """
    top = _mapping(raw, "config")
    name = _name(top, "name")
    cluster_raw = top.get("cluster")
    cluster = None if cluster_raw in (None, "") else _name(top, "cluster")
    profile_raw = top.get("profile")
    try:
        profile = Profile(profile_raw)
    except ValueError:
        allowed = ", ".join(p.value for p in Profile)
        raise ConfigError("profile", f"must be one of {allowed}, got {profile_raw!r}") from None
    memory_mb = _positive_int(top, "memory_mb", "memory_mb")
    reserve = _int(top, "host_reserve_mb", "host_reserve_mb", default=0)
    if reserve < 0:
        raise ConfigError("host_reserve_mb", "must not be negative")
    if reserve >= memory_mb:
        raise ConfigError("host_reserve_mb", f"must be less than memory_mb ({memory_mb})")
    volumes = parse_volumes(top.get("volumes"))
    san_root = top.get("san_root")
    # A relative path is accepted and resolved by the caller against its working directory.
    if san_root is not None and (not isinstance(san_root, str) or not san_root.strip()):
        raise ConfigError("san_root", "must be a path")
    if volumes and san_root is None:
        raise ConfigError("san_root", "is required when the host sees volumes")
    key_raw = top.get("heartbeat_key") or ""
    if not isinstance(key_raw, str) or not re.fullmatch(r"([0-9a-f]{64})?", key_raw):
        raise ConfigError("heartbeat_key", "must be 64 hexadecimal digits, or empty")
    peers = _list(top, "migration_peer_clusters")
    config = HostConfig(
        name=name,
        cluster=cluster,
        profile=profile,
        heartbeat_key=bytes.fromhex(key_raw),
        migration_peer_clusters=tuple(
            _name({"cluster": p}, "cluster", f"migration_peer_clusters[{i}]") for i, p in enumerate(peers)
        ),
        cpu=_cpu(top.get("cpu")),
        memory_mb=memory_mb,
        host_reserve_mb=reserve,
        disks=tuple(_disk(d, f"disks[{i}]") for i, d in enumerate(_list(top, "disks"))),
        networks=parse_networks(top.get("networks")),
        volumes=volumes,
        san_root=san_root,
        settings=_settings(top.get("settings")),
    )
    _unique([d.name for d in config.disks], "disks")
    return config


def parse_networks(raw: object) -> tuple[NetworkSpec, ...]:
    """The `networks` list; ConfigError naming the entry. Names are compared exactly."""
    networks = tuple(
        _network(n, f"networks[{i}]") for i, n in enumerate(_list({"networks": raw}, "networks"))
    )
    _unique([n.name for n in networks], "networks")
    return networks


def parse_volumes(raw: object) -> tuple[VolumeSpec, ...]:
    """The `volumes` list; ConfigError naming the entry."""
    volumes = tuple(_volume(v, f"volumes[{i}]") for i, v in enumerate(_list({"volumes": raw}, "volumes")))
    _unique([f"{v.kind.value}:{v.name}" for v in volumes], "volumes")
    return volumes


def _mapping(raw: object, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "must be an object")
    return raw


def _list(top: Mapping[str, Any], key: str) -> list[Any]:
    value = top.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(key, "must be a list")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(where, "must be a non-empty string")
    return value


def _name(obj: Mapping[str, Any], key: str, where: str | None = None) -> str:
    where = where or key
    value = _str(obj, key, where)
    if not SAFE_NAME.match(value):
        raise ConfigError(where, f"{value!r} must be letters, digits, '.', '_' or '-' (at most 128)")
    return value


def _int(obj: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, "must be an integer")
    return int(value)


def _positive_int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(where, "must be a positive integer")
    return value


def _cpu(raw: object) -> CpuSpec:
    cpu = _mapping(raw, "cpu")
    features = cpu.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise ConfigError("cpu.features", "must be a list of strings")
    return CpuSpec(
        vendor=_str(cpu, "vendor", "cpu.vendor"),
        model=_str(cpu, "model", "cpu.model"),
        features=tuple(features),
        cores=_positive_int(cpu, "cores", "cpu.cores"),
        mhz=_positive_int(cpu, "mhz", "cpu.mhz"),
    )


def _disk(raw: object, where: str) -> DiskSpec:
    disk = _mapping(raw, where)
    return DiskSpec(
        name=_name(disk, "name", f"{where}.name"),
        capacity_gb=_positive_int(disk, "capacity_gb", f"{where}.capacity_gb"),
    )


def _network(raw: object, where: str) -> NetworkSpec:
    net = _mapping(raw, where)
    vlan_id = _int(net, "vlan_id", f"{where}.vlan_id", default=0)
    if not 0 <= vlan_id <= 4094:
        raise ConfigError(f"{where}.vlan_id", "must be between 0 and 4094")
    bound_to = net.get("bound_to", "")
    if not isinstance(bound_to, str):
        raise ConfigError(f"{where}.bound_to", "must be a string")
    return NetworkSpec(name=_str(net, "name", f"{where}.name"), bound_to=bound_to, vlan_id=vlan_id)


def _volume(raw: object, where: str) -> VolumeSpec:
    vol = _mapping(raw, where)
    kind_raw = vol.get("kind")
    try:
        kind = VolumeKind(kind_raw)
    except ValueError:
        raise ConfigError(f"{where}.kind", f"must be 'csv' or 'lun', got {kind_raw!r}") from None
    return VolumeSpec(
        name=_name(vol, "name", f"{where}.name"),
        kind=kind,
        capacity_gb=_positive_int(vol, "capacity_gb", f"{where}.capacity_gb"),
    )


def _settings(raw: object) -> AgentSettings:
    if raw is None:
        return AgentSettings()
    given = _mapping(raw, "settings")
    values: dict[str, Any] = {}
    for f in fields(AgentSettings):
        if f.name not in given:
            continue
        value = given[f.name]
        where = f"settings.{f.name}"
        if f.name == "isolation_response":
            values[f.name] = _isolation_response(value, where)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(where, "must be a number")
        if not math.isfinite(value):
            raise ConfigError(where, f"must be a finite number, got {value}")
        if value < 0 or (value == 0 and f.name != "shutdown_grace_s"):
            raise ConfigError(where, "must be a positive number")
        if f.name == "migration_chunk_pages" and value > MAX_CHUNK_PAGES:
            raise ConfigError(where, f"must be at most {MAX_CHUNK_PAGES} (16 MiB a message)")
        if f.name == "migration_disk_chunk_bytes" and value > MAX_CHUNK_PAGES * 4096:
            raise ConfigError(where, f"must be at most {MAX_CHUNK_PAGES * 4096} (16 MiB a message)")
        values[f.name] = int(value) if f.type in (int, "int") else float(value)
    return AgentSettings(**values)


def _isolation_response(value: object, where: str) -> IsolationResponse:
    try:
        return IsolationResponse(value)
    except ValueError:
        allowed = ", ".join(r.value for r in IsolationResponse)
        raise ConfigError(where, f"must be one of {allowed}, got {value!r}") from None


def _unique(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(where, f"{name.split(':')[-1]!r} is listed twice")
        seen.add(name)
