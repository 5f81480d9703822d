"""What a host can do, and what each host profile can do by default: one row per profile.

The manager decides by a host's capabilities (`HostRecord.capabilities`): what its
agent reported with its inventory, the authority on what it runs, or, until the agent
has answered once, the row of this table for the host's configured profile. Code asks
a capability, never compares a profile's name, so that a new profile is one row here
(and one in the agent's table; tests/test_profile_traits.py holds the two alike).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

VIRTUAL_NETWORK = "virtual_network"  # a Hyper-V virtual network bound to a host NIC
PORT_GROUP = "port_group"  # an ESX port group on a virtual switch


@dataclass(frozen=True)
class HostCapabilities:
    """What a host can do; HostCapabilities on the wire."""

    # Running VMs move live (Hyper-V 2008 R2 live migration, VMware vMotion); otherwise
    # by quick migration only (Hyper-V 2008: save, move the disk resource, restore).
    live_migration: bool
    # VMs move by quick migration: saved, their storage handed over, restored.
    quick_migration: bool
    # Volumes every node uses at once: cluster shared volumes (Hyper-V 2008 R2) or
    # VMFS datastores (ESX); Hyper-V 2008 has shared LUNs only.
    csv: bool
    # What the host's networks are: VIRTUAL_NETWORK (Hyper-V) or PORT_GROUP (ESX).
    network_kind: str
    # A VMM library server: it stores stopped and saved VMs on its share and runs none;
    # a VM comes by `vm store` and leaves by `vm deploy`, never by placement.
    library_server: bool = False


PROFILE_TRAITS: dict[str, HostCapabilities] = {
    "hyperv-2008": HostCapabilities(
        live_migration=False, quick_migration=True, csv=False, network_kind=VIRTUAL_NETWORK
    ),
    "hyperv-2008r2": HostCapabilities(
        live_migration=True, quick_migration=True, csv=True, network_kind=VIRTUAL_NETWORK
    ),
    "esx": HostCapabilities(live_migration=True, quick_migration=True, csv=True, network_kind=PORT_GROUP),
    "library": HostCapabilities(
        live_migration=False,
        quick_migration=False,
        csv=False,
        network_kind=VIRTUAL_NETWORK,
        library_server=True,
    ),
}
# A profile the table does not know (a record written by a newer manager): the least.
UNKNOWN_PROFILE = HostCapabilities(
    live_migration=False, quick_migration=True, csv=False, network_kind=VIRTUAL_NETWORK
)


def profile_capabilities(profile: str) -> HostCapabilities:
    """The row of `profile`: what a host of it can do until its agent says otherwise."""
    return PROFILE_TRAITS.get(profile, UNKNOWN_PROFILE)


def live_migrates(profile: str) -> bool:
    return profile_capabilities(profile).live_migration


def network_kind(profile: str) -> str:
    return profile_capabilities(profile).network_kind


def differences(profile: str, reported: HostCapabilities) -> tuple[str, ...]:
    """`field: reported X, profile says Y` for each capability the report and the
    profile's row disagree on; empty when they agree. Purely computational."""
    row = profile_capabilities(profile)
    return tuple(
        f"{f.name}: reported {getattr(reported, f.name)}, {profile} says {getattr(row, f.name)}"
        for f in fields(HostCapabilities)
        if getattr(reported, f.name) != getattr(row, f.name)
    )
