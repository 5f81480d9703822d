"""What each host profile can do, as the manager decides by it: one row per profile.

Code asks a trait (`live_migrates(profile)`, `network_kind(profile)`), never compares a
profile's name, so that a new profile is one row here (and one in the agent's table).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProfileTraits:
    name: str
    # Running VMs move live (Hyper-V 2008 R2 live migration, VMware vMotion); otherwise
    # by quick migration only (Hyper-V 2008: save, move the disk resource, restore).
    live_migration: bool
    # What the host's networks are: Hyper-V virtual networks or ESX port groups.
    network_kind: str


PROFILE_TRAITS: dict[str, ProfileTraits] = {
    row.name: row
    for row in (
        ProfileTraits("hyperv-2008", live_migration=False, network_kind="virtual_network"),
        ProfileTraits("hyperv-2008r2", live_migration=True, network_kind="virtual_network"),
        ProfileTraits("esx", live_migration=True, network_kind="port_group"),
    )
}
PROFILES = tuple(PROFILE_TRAITS)
LIVE_PROFILES = frozenset(name for name, row in PROFILE_TRAITS.items() if row.live_migration)


def live_migrates(profile: str) -> bool:
    row = PROFILE_TRAITS.get(profile)
    return row is not None and row.live_migration


def network_kind(profile: str) -> str:
    row = PROFILE_TRAITS.get(profile)
    return row.network_kind if row is not None else "virtual_network"
