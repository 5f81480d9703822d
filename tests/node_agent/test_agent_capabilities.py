"""The agent reports what its host can do with its inventory: its own row of the
profile table, so that the manager decides by what the agent says, not by a name."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from agent_testkit import host_config

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from node_agent.adapters.files import HostFiles
from node_agent.adapters.grpc_agent import capabilities_to_pb
from node_agent.adapters.grpc_server import AgentServer
from node_agent.app.host import VmHost
from node_agent.core.config import PROFILE_TRAITS, Profile, ProfileTraits, parse_host_config

NETWORK_KINDS = {False: common_pb2.NETWORK_KIND_VIRTUAL_NETWORK, True: common_pb2.NETWORK_KIND_PORT_GROUP}


def test_a_row_maps_field_for_field() -> None:
    row = ProfileTraits(
        live_migration=False, quick_migration=True, csv=True, network_term="port group", port_groups=True
    )
    assert capabilities_to_pb(row) == common_pb2.HostCapabilities(
        live_migration=False, quick_migration=True, csv=True, network_kind=common_pb2.NETWORK_KIND_PORT_GROUP
    )


@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
async def test_the_inventory_carries_the_capabilities_of_the_host_s_profile(
    tmp_path: Path, profile: Profile
) -> None:
    config = parse_host_config(host_config(tmp_path, profile=profile.value))
    files = HostFiles(config, tmp_path / "hosts" / config.name)
    files.prepare()
    host = VmHost(config, files, state_dir=tmp_path / "state")
    server = AgentServer(host, "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            reply = await stub.GetInventory(agent_pb2.AgentServiceGetInventoryRequest(), timeout=5)
    finally:
        await server.stop(0)
        await host.stop()
    row = PROFILE_TRAITS[profile]
    info = reply.host
    assert info.HasField("capabilities")
    assert info.capabilities == common_pb2.HostCapabilities(
        live_migration=row.live_migration,
        quick_migration=row.quick_migration,
        csv=row.csv,
        network_kind=NETWORK_KINDS[row.port_groups],
        library_server=row.library_server,
    )
    # Every network is named as the capabilities say.
    assert {n.kind for n in info.networks} == {info.capabilities.network_kind}
