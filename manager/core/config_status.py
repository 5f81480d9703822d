"""Whether a VM's configuration is one the manager can support, and why not.

VMM 2008 R2 marks a highly available VM that its failover cluster cannot support as
"Unsupported Cluster Configuration" and lists each cause in the VM's details; Repair
with Ignore accepts the configuration as it is. The causes are an enum so that
decisions (and the wire, and the CLI's marks) read the cause, never the sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ConfigStatus(Enum):
    OK = "ok"  # the VM can be managed as configured
    UNSUPPORTED_CLUSTER_CONFIGURATION = "unsupported_cluster_configuration"  # HA but cannot be


class ConfigCause(Enum):
    """One reason a highly available VM's configuration is unsupported."""

    STANDALONE_HOST = "standalone_host"  # it is on a host that is no node of a cluster
    LOCAL_STORAGE = "local_storage"  # a file or pass-through disk is not on cluster storage
    SHARED_LUN = "shared_lun"  # it shares a LUN that is not a CSV with another HA VM
    PASSTHROUGH_NOT_CLUSTERED = "passthrough_not_clustered"  # a pass-through disk no cluster disk
    NETWORK_NOT_COMMON = "network_not_common"  # a NIC's virtual network is not on every node alike
    PORT_GROUP_MISSING = "port_group_missing"  # ESX: a NIC's port group is not on every node
    EXTRA_CLUSTER_RESOURCES = "extra_cluster_resources"  # VMM 2008: its group holds other resources
    ISO_ATTACHED = "iso_attached"  # VMM 2008: a DVD drive has an ISO image attached


@dataclass(frozen=True)
class StatusReason:
    """One cause with its sentence, as `vm show` lists it."""

    cause: ConfigCause
    detail: str  # for people: never compared
    # What the cause is about: the network (its name as the level compares it), the LUN,
    # the disk, the host, the image. A reason Repair's Ignore accepted stays accepted
    # while its cause and subject hold, whatever its sentence says now.
    subject: str = ""

    @property
    def key(self) -> tuple[ConfigCause, str]:
        return (self.cause, self.subject)


def accepted(
    reasons: tuple[StatusReason, ...], ignored: tuple[StatusReason, ...]
) -> tuple[StatusReason, ...]:
    """The reasons Ignore accepted that still stand, as they read now."""
    keys = {r.key for r in ignored}
    return tuple(r for r in reasons if r.key in keys)


def status_of(reasons: tuple[StatusReason, ...], ignored: tuple[StatusReason, ...]) -> ConfigStatus:
    """Unsupported while a reason stands that Repair's Ignore did not accept."""
    keys = {r.key for r in ignored}
    if any(reason.key not in keys for reason in reasons):
        return ConfigStatus.UNSUPPORTED_CLUSTER_CONFIGURATION
    return ConfigStatus.OK
