"""Changes an administrator makes on the host itself, outside the manager.

On a real cluster an administrator adds, changes and deletes a host's virtual networks
and presents or withdraws SAN storage with the host's own tools; VMM learns of it at
its next refresh. Each change here is a decision on the host's description: given the
current HostConfig (and the VMs that a change would touch), it returns the new one or
refuses with a sentence naming the field. The app applies the result, keeps it in the
state directory (the `HostChanges` it describes) and serves it from then on.

Everything here is purely computational, no side effects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from node_agent.core.config import (
    SAFE_NAME,
    HostConfig,
    NetworkSpec,
    VolumeKind,
    VolumeSpec,
    parse_networks,
    parse_volumes,
)
from node_agent.core.errors import AlreadyExists, ConfigError, FailedPrecondition, InvalidArgument, NotFound
from node_agent.core.vm import StorageKind, StorageRef, VmSpec

MAX_VLAN_ID = 4094
MAX_NETWORK_NAME = 128
MAX_ADAPTER_NAME = 256


@dataclass(frozen=True)
class HostChanges:
    """What the administrator's changes made of the host's networks and volumes: the
    whole lists, which replace the configuration file's when the agent starts."""

    networks: tuple[NetworkSpec, ...]
    volumes: tuple[VolumeSpec, ...]


class HostChangesStore(Protocol):
    """Where the changes outlive the agent (a file in its state directory)."""

    def load(self) -> HostChanges | None:
        """The changes kept, None when there are none; ConfigError when unreadable."""
        ...

    def save(self, changes: HostChanges) -> None: ...


@dataclass(frozen=True)
class HostChange:
    """The host after one change, and what the change did to its VMs."""

    config: HostConfig
    # A sentence for the agent's log.
    summary: str
    # Ids of this host's VMs whose network adapters the change disconnected.
    disconnected: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkUpdate:
    """What UpdateNetwork changes; None leaves a field as it is."""

    new_name: str | None = None
    bound_to: str | None = None
    vlan_id: int | None = None

    @property
    def empty(self) -> bool:
        return self.new_name is None and self.bound_to is None and self.vlan_id is None


# --- what the host's description becomes ------------------------------------------------


def changes_of(config: HostConfig) -> HostChanges:
    return HostChanges(config.networks, config.volumes)


def with_changes(config: HostConfig, changes: HostChanges) -> HostConfig:
    """The configuration with the kept changes in place of its networks and volumes."""
    if changes.volumes and config.san_root is None:
        raise ConfigError("volumes", f"host {config.name} has no SAN directory (san_root) to see them in")
    return dataclasses.replace(config, networks=changes.networks, volumes=changes.volumes)


def changes_from_raw(raw: object) -> HostChanges:
    """Changes decoded from JSON data; ConfigError naming the field when they are wrong."""
    if not isinstance(raw, Mapping):
        raise ConfigError("changes", "must be an object")
    return HostChanges(parse_networks(raw.get("networks")), parse_volumes(raw.get("volumes")))


def changes_to_raw(changes: HostChanges) -> dict[str, Any]:
    """The JSON form changes_from_raw reads back to equal changes."""
    return {
        "networks": [
            {"name": n.name, "bound_to": n.bound_to, "vlan_id": n.vlan_id} for n in changes.networks
        ],
        "volumes": [
            {"name": v.name, "kind": v.kind.value, "capacity_gb": v.capacity_gb} for v in changes.volumes
        ],
    }


# --- networks -------------------------------------------------------------------------------


def add_network(host: HostConfig, network: NetworkSpec) -> HostChange:
    _check_network_name(network.name, "network.name")
    _check_adapter(network.bound_to, "network.bound_to")
    _check_vlan(network.vlan_id, "network.vlan_id")
    if host.network(network.name) is not None:
        raise AlreadyExists(f"host {host.name} already has a {_term(host)} named {network.name!r}")
    config = dataclasses.replace(host, networks=(*host.networks, network))
    return HostChange(config, f"{_term(host)} {network.name!r} added ({_network_text(network)})")


def remove_network(host: HostConfig, name: str, vms: Iterable[VmSpec]) -> HostChange:
    """Removing a network VMs use is allowed, as on a real host: their adapters are
    disconnected, and the change names them."""
    network = _existing_network(host, name, "name")
    config = dataclasses.replace(host, networks=tuple(n for n in host.networks if n is not network))
    users = _connected(name, vms)
    return HostChange(config, f"{_term(host)} {name!r} removed{_disconnected_text(users)}", users)


def update_network(host: HostConfig, name: str, update: NetworkUpdate, vms: Iterable[VmSpec]) -> HostChange:
    """A renamed network no longer carries the old name VMs were connected by: those
    VMs are disconnected, as by a removal."""
    network = _existing_network(host, name, "name")
    if update.empty:
        raise InvalidArgument("new_name, bound_to, vlan_id: give at least one of them to change")
    changed = network
    if update.new_name is not None and update.new_name != name:
        _check_network_name(update.new_name, "new_name")
        if host.network(update.new_name) is not None:
            raise AlreadyExists(
                f"new_name: host {host.name} already has a {_term(host)} named {update.new_name!r}"
            )
        changed = dataclasses.replace(changed, name=update.new_name)
    if update.bound_to is not None:
        _check_adapter(update.bound_to, "bound_to")
        changed = dataclasses.replace(changed, bound_to=update.bound_to)
    if update.vlan_id is not None:
        _check_vlan(update.vlan_id, "vlan_id")
        changed = dataclasses.replace(changed, vlan_id=update.vlan_id)
    config = dataclasses.replace(host, networks=tuple(changed if n is network else n for n in host.networks))
    users = _connected(name, vms) if changed.name != name else ()
    renamed = f", renamed {changed.name!r}" if changed.name != name else ""
    summary = f"{_term(host)} {name!r} changed{renamed} ({_network_text(changed)}){_disconnected_text(users)}"
    return HostChange(config, summary, users)


def _existing_network(host: HostConfig, name: str, field: str) -> NetworkSpec:
    if not name:
        raise InvalidArgument(f"{field}: is required")
    network = host.network(name)
    if network is None:
        alike = [n.name for n in host.networks if n.name.casefold() == name.casefold()]
        hint = f" (names are compared exactly: it has {alike[0]!r})" if alike else ""
        raise NotFound(f"host {host.name} has no {_term(host)} named {name!r}{hint}")
    return network


def _connected(network: str, vms: Iterable[VmSpec]) -> tuple[str, ...]:
    return tuple(sorted(vm.id for vm in vms if network in vm.networks))


def _check_network_name(name: str, field: str) -> None:
    if not name.strip():
        raise InvalidArgument(f"{field}: is required")
    if name != name.strip() or len(name) > MAX_NETWORK_NAME or not name.isprintable():
        raise InvalidArgument(
            f"{field}: {name!r} must be at most {MAX_NETWORK_NAME} printable characters, "
            "without leading or trailing spaces"
        )


def _check_adapter(bound_to: str, field: str) -> None:
    if len(bound_to) > MAX_ADAPTER_NAME or not bound_to.isprintable():
        raise InvalidArgument(
            f"{field}: {bound_to!r} must be at most {MAX_ADAPTER_NAME} printable characters"
        )


def _check_vlan(vlan_id: int, field: str) -> None:
    if not 0 <= vlan_id <= MAX_VLAN_ID:
        raise InvalidArgument(f"{field}: must be between 0 and {MAX_VLAN_ID} (0 is untagged), got {vlan_id}")


def _term(host: HostConfig) -> str:
    return host.profile.network_term


def _network_text(network: NetworkSpec) -> str:
    vlan = f"VLAN {network.vlan_id}" if network.vlan_id else "untagged"
    return f"bound to {network.bound_to or 'no adapter'}, {vlan}"


def _disconnected_text(vm_ids: tuple[str, ...]) -> str:
    return f"; VMs disconnected from it: {', '.join(vm_ids)}" if vm_ids else ""


# --- SAN storage --------------------------------------------------------------------------


def add_volume(host: HostConfig, volume: VolumeSpec) -> HostChange:
    what = f"{_label(volume.kind)} {volume.name}"
    if not volume.name:
        raise InvalidArgument("volume.name: is required")
    if not SAFE_NAME.match(volume.name):
        raise InvalidArgument(
            f"volume.name: {volume.name!r} must be letters, digits, '.', '_' or '-' (at most 128)"
        )
    if volume.capacity_gb <= 0:
        raise InvalidArgument("volume.capacity_bytes: must be at least 1 GiB")
    if host.san_root is None:
        raise FailedPrecondition(
            f"host {host.name} has no SAN directory (san_root is not set in its configuration): "
            f"it cannot see {what}"
        )
    if volume.kind is VolumeKind.CSV and not host.profile.traits.csv:
        raise FailedPrecondition(
            f"host {host.name} runs {host.profile.value}, which has no cluster shared volumes: "
            f"it cannot see {what}"
        )
    if host.volume(volume.name, volume.kind) is not None:
        raise AlreadyExists(f"host {host.name} already sees {what}")
    config = dataclasses.replace(host, volumes=(*host.volumes, volume))
    return HostChange(config, f"{what} now visible ({volume.capacity_gb} GB)")


def remove_volume(
    host: HostConfig, name: str, kind: VolumeKind | None, holders: Iterable[VmSpec]
) -> HostChange:
    """`holders`: this host's VMs, arriving ones included; those on the volume forbid it."""
    if not name:
        raise InvalidArgument("name: is required")
    named = [v for v in host.volumes if v.name == name and (kind is None or v.kind is kind)]
    if not named:
        what = _label(kind) if kind is not None else "CSV volume or LUN"
        raise NotFound(f"host {host.name} sees no {what} named {name!r}")
    if len(named) > 1:
        raise InvalidArgument(
            f"kind: host {host.name} sees both a CSV volume and a LUN named {name!r}; say which"
        )
    volume = named[0]
    what = f"{_label(volume.kind)} {volume.name}"
    storage = StorageKind(volume.kind.value)
    held = sorted({vm.label for vm in holders if vm.storage.kind is storage and vm.storage.name == name})
    if held:
        raise FailedPrecondition(
            f"{what} holds VM{'s' if len(held) > 1 else ''} {', '.join(held)} of host {host.name}; "
            "move or delete them before the host stops seeing it"
        )
    passing = sorted({vm.label for vm in holders if StorageRef(storage, name) in vm.passthrough_disks})
    if passing:
        raise FailedPrecondition(
            f"{what} is passed through to VM{'s' if len(passing) > 1 else ''} {', '.join(passing)} of host "
            f"{host.name}; detach it before the host stops seeing it"
        )
    config = dataclasses.replace(host, volumes=tuple(v for v in host.volumes if v is not volume))
    return HostChange(config, f"{what} no longer visible")


def _label(kind: VolumeKind) -> str:
    return "CSV volume" if kind is VolumeKind.CSV else "LUN"
