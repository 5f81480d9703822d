"""`havm host show` renders what a host can do: a `capabilities` object in JSON, one line
in the table, saying whether the agent reported them or they are its profile's."""

from __future__ import annotations

from havm.cli.render import capabilities_text, host_dict
from havm.v1 import common_pb2, manager_pb2


def test_json_has_a_capabilities_object() -> None:
    host = manager_pb2.Host(
        name="esx1",
        capabilities=common_pb2.HostCapabilities(
            live_migration=True,
            quick_migration=True,
            csv=True,
            network_kind=common_pb2.NETWORK_KIND_PORT_GROUP,
        ),
        capabilities_reported=True,
    )
    assert host_dict(host)["capabilities"] == {
        "live_migration": True,
        "quick_migration": True,
        "csv": True,
        "network_kind": "port_group",
        "library_server": False,
        "reported": True,
    }


def test_the_table_line_says_what_it_can_do_and_where_that_comes_from() -> None:
    reported = host_dict(
        manager_pb2.Host(
            capabilities=common_pb2.HostCapabilities(
                live_migration=True,
                quick_migration=True,
                csv=True,
                network_kind=common_pb2.NETWORK_KIND_PORT_GROUP,
            ),
            capabilities_reported=True,
        )
    )["capabilities"]
    assert capabilities_text(reported) == "live and quick migration, CSV; port groups (reported)"
    assumed = host_dict(
        manager_pb2.Host(
            capabilities=common_pb2.HostCapabilities(
                quick_migration=True, network_kind=common_pb2.NETWORK_KIND_VIRTUAL_NETWORK
            )
        )
    )["capabilities"]
    assert capabilities_text(assumed) == "quick migration only; virtual networks (from its profile)"


def test_a_library_server_says_it_runs_nothing() -> None:
    row = host_dict(
        manager_pb2.Host(
            name="library1",
            capabilities=common_pb2.HostCapabilities(library_server=True),
            capabilities_reported=True,
        )
    )
    assert row["capabilities"]["library_server"] is True
    assert capabilities_text(row["capabilities"]) == "library server: stores VMs, runs none (reported)"
