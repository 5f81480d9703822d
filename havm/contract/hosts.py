"""One host entry of the topology: its specification, its parsing and its dict form.

A host is described the same way in the topology file (under `hosts:`, with
`host_defaults` merged in), in a `havm host add --config` file and in AddHost's
message, so the rules live here once; `topology` composes them with clusters and the
cluster-wide sections. Each error names the field path and what is wrong with it. Pure:
no I/O, no yaml, no generated stubs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from havm.contract.fields import (
    NAME_MAX_LENGTH,
    TopologyError,
    read_choice,
    read_int,
    read_list,
    read_mapping,
    read_name,
    read_required,
    read_text,
)

# The hypervisors a host can emulate; what each can do is a traits table on each side
# (manager.core.profiles, node_agent.core.config).
PROFILES = ("hyperv-2008", "hyperv-2008r2", "esx", "library")
CPU_VENDORS = ("GenuineIntel", "AuthenticAMD")
DEFAULT_HOST_RESERVE_MB = 1024
# Upper bounds of topology integers: far above any real host, far below int32/int64 overflow.
MAX_MEMORY_MB = 16_777_216  # 16 TiB
MAX_CAPACITY_GB = 1_048_576  # 1 PiB
MAX_CORES = 1024
MAX_MHZ = 100_000
MAX_VLAN_ID = 4094
_HOST_KEYS = (
    "name",
    "profile",
    "cpu",
    "memory_mb",
    "host_reserve_mb",
    "disks",
    "networks",
    "address",
    "migration_address",
)
DEFAULTABLE_HOST_KEYS = tuple(k for k in _HOST_KEYS if k not in ("name", "address", "migration_address"))
_CPU_KEYS = ("vendor", "model", "features", "cores", "mhz")
_DISK_KEYS = ("name", "capacity_gb")
_NETWORK_KEYS = ("name", "bound_to", "vlan_id")


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
class HostSpec:
    name: str
    profile: str  # "hyperv-2008" | "hyperv-2008r2" | "esx" | "library"
    cluster: str | None
    cpu: CpuSpec
    memory_mb: int
    host_reserve_mb: int
    disks: tuple[DiskSpec, ...]
    networks: tuple[NetworkSpec, ...]
    address: str | None
    # Where other agents reach this one's migration stream (a live-migration network of
    # its own); None means `address`.
    migration_address: str | None = None


def host_defaults_of(data: object) -> dict[str, Any]:
    """The `host_defaults` of a topology as `yaml.safe_load` returned it (empty when it
    has none), checked key by key. Pure."""
    if not isinstance(data, dict) or data.get("host_defaults") is None:
        return {}
    return read_mapping(data["host_defaults"], "host_defaults", DEFAULTABLE_HOST_KEYS)


def parse_host_entry(
    raw: object, host_defaults: dict[str, Any] | None = None, field: str = "host"
) -> HostSpec:
    """One host entry in the topology's format (an item of `hosts:`), with a topology's
    `host_defaults` merged in as `parse_topology` merges them, checked by the same rules;
    errors name `field` (or `host_defaults`) and the key. The entry says nothing of
    cluster membership: the result is standalone until the caller says otherwise. Pure."""
    defaults = read_mapping(host_defaults, "host_defaults", DEFAULTABLE_HOST_KEYS) if host_defaults else {}
    return parse_host(raw, field, defaults)


def parse_host(raw: object, field: str, defaults: dict[str, Any]) -> HostSpec:
    """A host entry at `field` with checked `defaults` merged in; standalone until a
    cluster lists it."""
    entry = read_mapping(raw, field, _HOST_KEYS)

    def path(key: str) -> str:
        # A value inherited from host_defaults is reported where the user wrote it.
        return f"host_defaults.{key}" if key not in entry and key in defaults else f"{field}.{key}"

    merged = {**defaults, **entry}
    name = read_name(read_required(entry, "name", field), f"{field}.name")
    if "profile" not in merged:
        raise TopologyError(f"{field}.profile", "is required (here or under host_defaults)")
    profile = read_choice(merged["profile"], path("profile"), PROFILES)
    if "cpu" not in merged:
        raise TopologyError(f"{field}.cpu", "is required (here or under host_defaults)")
    cpu = _parse_cpu(merged["cpu"], path("cpu"))
    if "memory_mb" not in merged:
        raise TopologyError(f"{field}.memory_mb", "is required (here or under host_defaults)")
    memory_mb = read_int(merged["memory_mb"], path("memory_mb"), 1, MAX_MEMORY_MB)
    reserve_mb = read_int(
        merged.get("host_reserve_mb", DEFAULT_HOST_RESERVE_MB), path("host_reserve_mb"), 0, MAX_MEMORY_MB
    )
    if memory_mb <= reserve_mb:
        raise TopologyError(
            path("memory_mb"),
            f"must be greater than host_reserve_mb ({reserve_mb}), got {memory_mb}",
        )
    disks = _parse_disks(merged.get("disks", []), path("disks"))
    networks = _parse_networks(merged.get("networks", []), path("networks"))
    address = entry.get("address")
    if address is not None:
        address = _parse_address(address, f"{field}.address")
    migration_address = entry.get("migration_address")
    if migration_address is not None:
        migration_address = _parse_address(migration_address, f"{field}.migration_address")
    return HostSpec(
        name=name,
        profile=profile,
        cluster=None,
        cpu=cpu,
        memory_mb=memory_mb,
        host_reserve_mb=reserve_mb,
        disks=disks,
        networks=networks,
        address=address,
        migration_address=migration_address,
    )


def _parse_cpu(raw: object, field: str) -> CpuSpec:
    entry = read_mapping(raw, field, _CPU_KEYS)
    vendor = read_choice(read_required(entry, "vendor", field), f"{field}.vendor", CPU_VENDORS)
    model = read_text(read_required(entry, "model", field), f"{field}.model")
    features: list[str] = []
    for k, feature in enumerate(read_list(entry.get("features", []), f"{field}.features")):
        features.append(read_text(feature, f"{field}.features[{k}]"))
    cores = read_int(read_required(entry, "cores", field), f"{field}.cores", 1, MAX_CORES)
    mhz = read_int(read_required(entry, "mhz", field), f"{field}.mhz", 1, MAX_MHZ)
    return CpuSpec(vendor=vendor, model=model, features=tuple(features), cores=cores, mhz=mhz)


def _parse_disks(raw: object, field: str) -> tuple[DiskSpec, ...]:
    disks: list[DiskSpec] = []
    for k, item in enumerate(read_list(raw, field)):
        at = f"{field}[{k}]"
        entry = read_mapping(item, at, _DISK_KEYS)
        name = read_name(read_required(entry, "name", at), f"{at}.name")
        if any(d.name == name for d in disks):
            raise TopologyError(f"{at}.name", f"duplicate disk name '{name}'")
        capacity = read_int(read_required(entry, "capacity_gb", at), f"{at}.capacity_gb", 1, MAX_CAPACITY_GB)
        disks.append(DiskSpec(name=name, capacity_gb=capacity))
    return tuple(disks)


def _parse_networks(raw: object, field: str) -> tuple[NetworkSpec, ...]:
    networks: list[NetworkSpec] = []
    for k, item in enumerate(read_list(raw, field)):
        at = f"{field}[{k}]"
        entry = read_mapping(item, at, _NETWORK_KEYS)
        name = read_text(read_required(entry, "name", at), f"{at}.name", NAME_MAX_LENGTH)
        if any(n.name == name for n in networks):
            raise TopologyError(f"{at}.name", f"duplicate network name '{name}'")
        bound_to = read_text(read_required(entry, "bound_to", at), f"{at}.bound_to")
        vlan_id = read_int(entry.get("vlan_id", 0), f"{at}.vlan_id", 0, MAX_VLAN_ID)
        if vlan_id > 4094:
            raise TopologyError(f"{at}.vlan_id", f"must be between 0 and 4094, got {vlan_id}")
        networks.append(NetworkSpec(name=name, bound_to=bound_to, vlan_id=vlan_id))
    return tuple(networks)


def _parse_address(raw: object, field: str) -> str:
    text = read_text(raw, field)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TopologyError(field, f"must be host:port with a port from 1 to 65535, got {text!r}")
    return text


def host_to_dict(h: HostSpec) -> dict[str, Any]:
    """The explicit host entry of a host (cluster membership aside); parse_host_entry reads it back."""
    host: dict[str, Any] = {
        "name": h.name,
        "profile": h.profile,
        "cpu": {
            "vendor": h.cpu.vendor,
            "model": h.cpu.model,
            "features": list(h.cpu.features),
            "cores": h.cpu.cores,
            "mhz": h.cpu.mhz,
        },
        "memory_mb": h.memory_mb,
        "host_reserve_mb": h.host_reserve_mb,
        "disks": [{"name": d.name, "capacity_gb": d.capacity_gb} for d in h.disks],
        "networks": [{"name": n.name, "bound_to": n.bound_to, "vlan_id": n.vlan_id} for n in h.networks],
    }
    if h.address is not None:
        host["address"] = h.address
    if h.migration_address is not None:
        host["migration_address"] = h.migration_address
    return host
