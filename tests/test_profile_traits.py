"""The manager's and the agent's profile tables name the same profiles and agree on what
each can do: the two packages share no code, so this test is what ties them."""

from __future__ import annotations

from manager.core.profiles import PROFILE_TRAITS as MANAGER_TRAITS
from manager.core.profiles import live_migrates, network_kind
from node_agent.core.config import PROFILE_TRAITS as AGENT_TRAITS
from node_agent.core.config import Profile


def test_both_tables_have_a_row_for_every_profile() -> None:
    assert set(MANAGER_TRAITS) == {p.value for p in Profile} == {p.value for p in AGENT_TRAITS}


def test_both_sides_agree_on_each_trait() -> None:
    for profile, agent in AGENT_TRAITS.items():
        assert live_migrates(profile.value) == agent.live_migration, profile
        assert (network_kind(profile.value) == "port_group") == agent.port_groups, profile


def test_the_rows_say_what_vmm_does() -> None:
    assert not live_migrates("hyperv-2008")  # Windows Server 2008: quick migration only
    assert live_migrates("hyperv-2008r2") and live_migrates("esx")
    assert network_kind("esx") == "port_group" and Profile.ESX.network_term == "port group"
    assert not live_migrates("no-such-profile")
