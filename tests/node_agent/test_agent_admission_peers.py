"""Whose live-migration streams an agent takes: nodes of its own cluster, and nodes of the
other clusters of its ESX datacenter (VMotion crosses them); a network transfer's stream
from any agent of the deployment."""

from __future__ import annotations

from havm.contract.identity import PeerIdentity, Role
from node_agent.adapters.api_roles import AgentAdmission

RECEIVE_MIGRATION = "/havm.v1.AgentService/ReceiveMigration"
RECEIVE_VM = "/havm.v1.AgentService/ReceiveVm"


def agent(name: str, cluster: str | None) -> PeerIdentity:
    return PeerIdentity(Role.AGENT, name, cluster)


def test_migration_streams_come_from_the_cluster_and_its_datacenter_only() -> None:
    esx3 = AgentAdmission("e3", "eb", ("ea",))
    assert esx3.refusal(agent("e4", "eb"), RECEIVE_MIGRATION) is None
    assert esx3.refusal(agent("e1", "ea"), RECEIVE_MIGRATION) is None
    refused = esx3.refusal(agent("e5", "ec"), RECEIVE_MIGRATION)
    assert refused is not None and "of its cluster or its datacenter (ea)" in refused
    plain = AgentAdmission("n1", "c1")
    refused = plain.refusal(agent("e1", "ea"), RECEIVE_MIGRATION)
    assert refused is not None and "only from nodes of its cluster;" in refused


def test_network_transfers_come_from_any_agent_but_only_agents() -> None:
    standalone = AgentAdmission("s1", None)
    assert standalone.refusal(agent("n1", "c1"), RECEIVE_VM) is None
    refused = standalone.refusal(PeerIdentity(Role.OPERATOR, "operator"), RECEIVE_VM)
    assert refused is not None and "only from agents" in refused
