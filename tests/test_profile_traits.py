"""The manager's and the agent's profile tables name the same profiles and agree on what
each can do: the two packages share no code, so this test is what ties them. The agent
reports its row to the manager with its inventory (HostCapabilities): each agent row,
sent over the wire, must read back as the manager's row for that profile."""

from __future__ import annotations

from dataclasses import fields

from havm.contract.hosts import PROFILES as TOPOLOGY_PROFILES
from havm.contract.levels import DEFAULT_VMM_VERSION, VMM_VERSION_CSV
from havm.contract.levels import PROFILE_CLUSTERS as TOPOLOGY_PROFILE_CLUSTERS
from havm.contract.levels import PROFILE_CSV as TOPOLOGY_PROFILE_CSV
from havm.v1 import common_pb2
from manager.adapters.proto_mapping import PROFILE_TO_PROTO as MANAGER_PROFILE_TO_PROTO
from manager.adapters.proto_mapping import capabilities_from_proto
from manager.core.levels import DEFAULT_VERSION, LEVEL_TRAITS, VmmVersion
from manager.core.profiles import PROFILE_TRAITS as MANAGER_TRAITS
from manager.core.profiles import (
    HostCapabilities,
    differences,
    live_migrates,
    network_kind,
    profile_capabilities,
)
from node_agent.adapters.config_file import PROFILE_FROM_PROTO as AGENT_PROFILE_FROM_PROTO
from node_agent.adapters.grpc_agent import capabilities_to_pb
from node_agent.core.config import PROFILE_TRAITS as AGENT_TRAITS
from node_agent.core.config import Profile, ProfileTraits


def _wire_profiles() -> set[str]:
    """The wire enum's profiles as product names: PROFILE_HYPERV_2008R2 -> "hyperv-2008r2"."""
    return {
        name.removeprefix("PROFILE_").lower().replace("_", "-")
        for name in common_pb2.Profile.keys()
        if name != "PROFILE_UNSPECIFIED"
    }


def test_both_tables_have_a_row_for_every_profile() -> None:
    assert set(MANAGER_TRAITS) == {p.value for p in Profile} == {p.value for p in AGENT_TRAITS}


def test_every_profile_of_the_wire_enum_has_a_row_on_both_sides_and_in_the_topology() -> None:
    wire = _wire_profiles()
    assert wire == set(MANAGER_TRAITS) == {p.value for p in AGENT_TRAITS} == set(TOPOLOGY_PROFILES)
    assert set(MANAGER_PROFILE_TO_PROTO) == wire
    assert set(AGENT_PROFILE_FROM_PROTO.values()) == wire
    for name, number in MANAGER_PROFILE_TO_PROTO.items():
        assert AGENT_PROFILE_FROM_PROTO[number] == name


def test_both_sides_agree_on_each_trait() -> None:
    for profile, agent in AGENT_TRAITS.items():
        assert live_migrates(profile.value) == agent.live_migration, profile
        assert (network_kind(profile.value) == "port_group") == agent.port_groups, profile
        manager = profile_capabilities(profile.value)
        assert (manager.quick_migration, manager.csv) == (agent.quick_migration, agent.csv), profile
        assert manager.library_server == agent.library_server, profile
        # A profile forms clusters exactly when its hosts run VMs.
        assert TOPOLOGY_PROFILE_CLUSTERS[profile.value] is not agent.library_server, profile


def test_each_agent_row_reported_over_the_wire_is_the_manager_s_row() -> None:
    for profile, agent in AGENT_TRAITS.items():
        reported = capabilities_from_proto(capabilities_to_pb(agent), profile.value)
        assert reported == MANAGER_TRAITS[profile.value], profile
        assert differences(profile.value, reported) == (), profile


def test_every_capability_on_the_wire_is_in_both_tables() -> None:
    wire = {f.name for f in common_pb2.HostCapabilities.DESCRIPTOR.fields}
    assert wire == {f.name for f in fields(HostCapabilities)}
    # The agent says `port_groups` for what the wire calls network_kind.
    agent = {f.name for f in fields(ProfileTraits)}
    assert wire - {"network_kind"} <= agent and "port_groups" in agent


def test_the_rows_say_what_vmm_does() -> None:
    assert not live_migrates("hyperv-2008")  # Windows Server 2008: quick migration only
    assert live_migrates("hyperv-2008r2") and live_migrates("esx")
    assert network_kind("esx") == "port_group" and Profile.ESX.network_term == "port group"
    assert not profile_capabilities("hyperv-2008").csv  # CSV came with Windows Server 2008 R2
    library = profile_capabilities("library")  # stores VMs, runs none, so moves none live
    assert library.library_server and not library.live_migration and not library.quick_migration
    assert not live_migrates("no-such-profile")


def test_the_topology_knows_the_same_shared_volumes_as_the_manager_and_the_agent() -> None:
    assert set(TOPOLOGY_PROFILE_CSV) == set(MANAGER_TRAITS)
    for profile, csv in TOPOLOGY_PROFILE_CSV.items():
        assert csv == MANAGER_TRAITS[profile].csv == AGENT_TRAITS[Profile(profile)].csv, profile
    assert {v.value for v in VmmVersion} == set(VMM_VERSION_CSV)
    for version, csv in VMM_VERSION_CSV.items():
        assert csv == LEVEL_TRAITS[VmmVersion(version)].csv, version
    assert DEFAULT_VMM_VERSION == DEFAULT_VERSION.value
