"""Read-only pictures of the host and its VMs, as the app hands them to adapters.

They are plain frozen data so that the gRPC and MQTT adapters can translate them
without reaching into the app's live objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from node_agent.core.config import HostConfig
from node_agent.core.cpu import GuestCpu
from node_agent.core.journal import JournalPosition
from node_agent.core.power import PowerState
from node_agent.core.vm import StorageKind, VmSpec


@dataclass(frozen=True)
class VmView:
    spec: VmSpec
    state: PowerState
    reason: str
    state_since: float  # unix seconds
    lease_generation: int = 0
    # The processor the guest sees; None while the VM is stopped.
    cpu: GuestCpu | None = None
    # Set while the VM leaves or arrives by live migration.
    migration_id: str = ""


@dataclass(frozen=True)
class GuestView:
    vm_id: str
    state: PowerState
    memory_pages: int
    memory_digest: str  # empty while the VM has no memory image
    journal: JournalPosition


@dataclass(frozen=True)
class StorageUsage:
    name: str
    kind: StorageKind
    capacity_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class HostView:
    config: HostConfig
    memory_free_mb: int
    disks: tuple[StorageUsage, ...]
    volumes: tuple[StorageUsage, ...]
    boot_id: str
    started_at: float  # unix seconds


class Presence(enum.Enum):
    """What this host's retained status on the broker says about it."""

    ONLINE = "online"  # the agent runs and serves its AgentService
    STOPPED = "stopped"  # the agent stopped on purpose (SIGTERM or a Shutdown call)
    # Lost: the broker published the last will (crash, kill -9, connection lost).
    OFFLINE = "offline"


def status_payload(
    config: HostConfig, address: str, boot_id: str, presence: Presence, reason: str = ""
) -> dict[str, object]:
    """The retained status message of this host on the broker.

    The last will (`offline`) carries nothing but the state: it is written at connect
    time and stands for whatever boot it ends. A host that stopped on purpose says
    which boot left and why, so that a receiver tells a leave from a failure.
    """
    if presence is Presence.OFFLINE:
        return {"state": presence.value}
    payload: dict[str, object] = {
        "state": presence.value,
        "host": config.name,
        "address": address,
        "profile": config.profile.value,
        "cluster": config.cluster,
        "boot_id": boot_id,
    }
    if presence is Presence.STOPPED:
        payload["reason"] = reason
    return payload


def status_topic(host: str) -> str:
    return f"havm/v1/hosts/{host}/status"


def heartbeat_topic(host: str) -> str:
    return f"havm/v1/hosts/{host}/heartbeat"


@dataclass(frozen=True)
class HostLoad:
    """The load summary a heartbeat carries, for placement and for humans."""

    vms_running: int
    memory_free_mb: int


def heartbeat_payload(host: str, boot_id: str, seq: int, now: float, load: HostLoad) -> dict[str, object]:
    """One heartbeat: `seq` counts 1, 2, ... per boot so that a receiver sees gaps."""
    return {
        "host": host,
        "boot_id": boot_id,
        "seq": seq,
        "time": now,
        "load": {"vms_running": load.vms_running, "memory_free_mb": load.memory_free_mb},
    }
