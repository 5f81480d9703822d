"""What each VMM level manages: one row per level, so that adding a level is one row.

The topology's `vmm_version` chooses the row. VMM 2008 manages Windows Server 2008
failover clusters: no cluster shared volumes, quick migration only, network names
compared case-sensitively, no SAN transfer out of a cluster, and two causes of an
unsupported cluster configuration that 2008 R2 no longer has (resources beside the
VM in its cluster group, an ISO image attached). Code asks a trait, never a version.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class VmmVersion(Enum):
    VMM_2008 = "2008"
    VMM_2008R2 = "2008r2"


@dataclass(frozen=True)
class LevelTraits:
    """What a VMM level manages and how it judges a cluster's configuration."""

    # As refusals name it: "VMM 2008".
    name: str
    # Cluster shared volumes are supported (several HA VMs on one volume).
    csv: bool
    # Running VMs move live where the hosts can; otherwise by quick migration only.
    live_migration: bool
    # Virtual network names must match in case on every node to be common.
    network_names_case_sensitive: bool
    # A VM leaves a cluster by SAN transfer (from a dedicated LUN).
    san_transfer_out_of_cluster: bool
    # Pass-through disks on the SAN move with a VM to a standalone host or the library
    # (2008 R2); otherwise every one must be converted to a virtual disk first.
    san_passthrough_disks: bool
    # A VM's cluster group may hold only the VM, its configuration and its disks.
    only_vm_resources_in_group: bool
    # An ISO image attached to an HA VM's DVD drive makes it unsupported.
    iso_attached_unsupported: bool


LEVEL_TRAITS: dict[VmmVersion, LevelTraits] = {
    VmmVersion.VMM_2008: LevelTraits(
        name="VMM 2008",
        csv=False,
        live_migration=False,
        network_names_case_sensitive=True,
        san_transfer_out_of_cluster=False,
        san_passthrough_disks=False,
        only_vm_resources_in_group=True,
        iso_attached_unsupported=True,
    ),
    VmmVersion.VMM_2008R2: LevelTraits(
        name="VMM 2008 R2",
        csv=True,
        live_migration=True,
        network_names_case_sensitive=False,
        san_transfer_out_of_cluster=True,
        san_passthrough_disks=True,
        only_vm_resources_in_group=False,
        iso_attached_unsupported=False,
    ),
}
DEFAULT_VERSION = VmmVersion.VMM_2008R2
DEFAULT_LEVEL = LEVEL_TRAITS[DEFAULT_VERSION]


def level_traits(version: VmmVersion) -> LevelTraits:
    return LEVEL_TRAITS[version]
