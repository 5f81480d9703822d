"""The manager decides what a host can do from what its agent reports, and from its
profile's row only until the agent has answered once."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from havm.contract.hosts import CpuSpec
from havm.v1 import agent_pb2, common_pb2, manager_pb2
from manager.adapters.memory_store import MemoryStore
from manager.adapters.proto_mapping import host_to_proto, inventory_from_proto
from manager.adapters.sqlite_store import SqliteStore
from manager.app.claims import VmClaims
from manager.app.refresh import RefreshService
from manager.core.errors import InvalidArgumentError
from manager.core.inventory import apply_inventory
from manager.core.levels import DEFAULT_LEVEL
from manager.core.maintenance import MaintenanceMode, check_can_start, default_mode
from manager.core.migration import choose_kind
from manager.core.model import (
    GIB,
    DiskInfo,
    HostRecord,
    Inventory,
    MigrationKind,
    NetworkInfo,
    StorageKind,
    StorageLocation,
    VmRecord,
    VolumeInfo,
)
from manager.core.placement import HostCapacity, PlacementSnapshot, StorageRoom
from manager.core.profiles import (
    PORT_GROUP,
    PROFILE_TRAITS,
    VIRTUAL_NETWORK,
    HostCapabilities,
    differences,
)
from manager.core.settings import Settings
from manager.core.shutdown import ShutdownAction, StepKind, plan_shutdown
from manager.core.states import HostState, VmState

T0 = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
CPU = CpuSpec("GenuineIntel", "Intel Xeon X5570", ("sse4_2",), 8, 2933)
R2 = PROFILE_TRAITS["hyperv-2008r2"]
# An agent of a hyperv-2008r2 host that says it has no live migration.
NO_LIVE = replace(R2, live_migration=False)


def host(name: str = "node1", profile: str = "hyperv-2008r2", **kw: object) -> HostRecord:
    fields: dict = dict(
        name=name,
        cluster="cluster1",
        profile=profile,
        address=f"{name}.test:50051",
        cpu=CPU,
        memory_mb=32768,
        host_reserve_mb=2048,
        memory_free_mb=30000,
        disks=(DiskInfo("C", 500 * GIB, 400 * GIB),),
        networks=(NetworkInfo("External", "virtual_network", "nic", 0),),
        volumes=(VolumeInfo("Volume1", StorageKind.CSV, 2048 * GIB, 2000 * GIB),),
        state=HostState.OK,
        state_reason="",
        last_refresh=T0,
        boot_id="boot-1",
    )
    fields.update(kw)
    return HostRecord(**fields)


def inventory(capabilities: HostCapabilities | None, networks: tuple[NetworkInfo, ...] = ()) -> Inventory:
    return Inventory(
        host_name="node1",
        cluster="cluster1",
        profile="hyperv-2008r2",
        cpu=CPU,
        memory_mb=32768,
        memory_free_mb=30000,
        disks=(),
        networks=networks,
        volumes=(),
        boot_id="boot-1",
        vms=(),
        capabilities=capabilities,
    )


# --- the host record: reported, else the profile's row ----------------------------------


def test_a_host_that_never_answered_goes_by_its_profile_s_row() -> None:
    for profile, row in PROFILE_TRAITS.items():
        assert host(profile=profile).capabilities == row


def test_a_host_whose_agent_reported_goes_by_the_report() -> None:
    reported = host(profile="hyperv-2008r2", reported_capabilities=NO_LIVE)
    assert reported.capabilities == NO_LIVE


def test_an_unknown_profile_can_do_the_least() -> None:
    assert not host(profile="hyperv-2016").capabilities.live_migration


def test_differences_name_each_capability_the_report_and_the_row_disagree_on() -> None:
    assert differences("hyperv-2008r2", R2) == ()
    assert differences("hyperv-2008r2", NO_LIVE) == (
        "live_migration: reported False, hyperv-2008r2 says True",
    )


# --- decisions by the reported capabilities ----------------------------------------------


def test_a_host_reporting_no_live_migration_gets_a_quick_migration_although_its_row_says_live() -> None:
    source = host(reported_capabilities=NO_LIVE)
    target = host("node2")
    assert (
        choose_kind(source.capabilities, VmState.RUNNING, False, target.capabilities) is MigrationKind.QUICK
    )
    assert (
        choose_kind(target.capabilities, VmState.RUNNING, False, source.capabilities) is MigrationKind.QUICK
    )
    assert choose_kind(target.capabilities, VmState.RUNNING, False, target.capabilities) is MigrationKind.LIVE


def test_a_hyperv_2008_host_whose_agent_reports_live_migration_live_migrates() -> None:
    old = host(profile="hyperv-2008", reported_capabilities=R2)
    assert choose_kind(old.capabilities, VmState.RUNNING, False) is MigrationKind.LIVE
    assert choose_kind(old.capabilities, VmState.RUNNING, True) is MigrationKind.QUICK


def test_maintenance_defaults_to_save_and_refuses_live_on_a_host_reporting_no_live_migration() -> None:
    reported = host(reported_capabilities=NO_LIVE)
    assert default_mode(host(), DEFAULT_LEVEL) is MaintenanceMode.LIVE
    assert default_mode(reported, DEFAULT_LEVEL) is MaintenanceMode.SAVE
    with pytest.raises(InvalidArgumentError, match="host node1 has no live migration .as its agent reports"):
        check_can_start(reported, MaintenanceMode.LIVE, DEFAULT_LEVEL)
    with pytest.raises(
        InvalidArgumentError, match="host node1 runs hyperv-2008, which has no live migration"
    ):
        check_can_start(host(profile="hyperv-2008"), MaintenanceMode.LIVE, DEFAULT_LEVEL)
    check_can_start(reported, MaintenanceMode.SAVE, DEFAULT_LEVEL)


def test_a_live_shutdown_quick_migrates_from_a_host_reporting_no_live_migration() -> None:
    vm = VmRecord(
        id="id-a",
        name="a",
        host="node1",
        state=VmState.RUNNING,
        highly_available=True,
        memory_mb=2048,
        cpus=1,
        disk_gb=20,
        storage=StorageLocation(StorageKind.CSV, "Volume1"),
        networks=("External",),
    )
    node2 = HostCapacity(
        name="node2",
        cluster="cluster1",
        state=HostState.OK,
        usable_memory_mb=30720,
        memory_free_mb=16000,
        cores=8,
        running_vcpus=0,
        storage=(StorageRoom("Volume1", StorageKind.CSV, 1000),),
        networks=("External",),
    )
    node1 = replace(node2, name="node1", memory_free_mb=0)
    snapshot = PlacementSnapshot((node1, node2))
    live, _ = plan_shutdown(host(), [vm], ShutdownAction.LIVE, snapshot)
    quick, _ = plan_shutdown(host(reported_capabilities=NO_LIVE), [vm], ShutdownAction.LIVE, snapshot)
    assert [s.kind for s in live] == [StepKind.LIVE_MIGRATE]
    assert [(s.kind, s.target) for s in quick] == [(StepKind.QUICK_MIGRATE, "node2")]


# --- learning them from the inventory ----------------------------------------------------


def test_the_inventory_records_the_capabilities_and_names_the_topology_s_networks_by_them() -> None:
    esx_like = replace(R2, network_kind=PORT_GROUP)
    refreshed = apply_inventory(host(), inventory(esx_like), T0)
    assert refreshed.reported_capabilities == esx_like
    assert [n.kind for n in refreshed.networks] == [PORT_GROUP]


def test_an_agent_that_reports_none_keeps_what_was_learnt() -> None:
    learnt = host(reported_capabilities=NO_LIVE)
    assert apply_inventory(learnt, inventory(None), T0).reported_capabilities == NO_LIVE
    assert apply_inventory(host(), inventory(None), T0).reported_capabilities is None


def _response(capabilities: common_pb2.HostCapabilities | None) -> agent_pb2.AgentServiceGetInventoryResponse:
    info = common_pb2.HostInfo(
        name="node1",
        cluster="cluster1",
        profile=common_pb2.PROFILE_ESX,
        networks=[common_pb2.Network(name="VM Network", bound_to="vSwitch0")],
    )
    if capabilities is not None:
        info.capabilities.CopyFrom(capabilities)
    return agent_pb2.AgentServiceGetInventoryResponse(host=info)


def test_the_mapping_reads_the_reported_capabilities() -> None:
    pb = common_pb2.HostCapabilities(
        live_migration=False, quick_migration=True, csv=True, network_kind=common_pb2.NETWORK_KIND_PORT_GROUP
    )
    found = inventory_from_proto(_response(pb))
    assert found.capabilities == HostCapabilities(False, True, True, PORT_GROUP)
    assert [n.kind for n in found.networks] == [PORT_GROUP]


def test_an_unset_network_kind_is_the_profile_s_and_no_capabilities_is_none() -> None:
    found = inventory_from_proto(_response(common_pb2.HostCapabilities(live_migration=True)))
    assert found.capabilities is not None and found.capabilities.network_kind == PORT_GROUP  # esx's row
    old_agent = inventory_from_proto(_response(None))
    assert old_agent.capabilities is None
    assert [n.kind for n in old_agent.networks] == [PORT_GROUP]


def test_the_host_message_says_what_the_host_can_do_and_whether_its_agent_said_so() -> None:
    assumed = host_to_proto(host(profile="hyperv-2008"), 0, 0.0)
    assert (assumed.capabilities.live_migration, assumed.capabilities_reported) == (False, False)
    assert assumed.capabilities.network_kind == common_pb2.NETWORK_KIND_VIRTUAL_NETWORK
    reported = host_to_proto(host(reported_capabilities=NO_LIVE), 0, 0.0)
    assert reported.capabilities == common_pb2.HostCapabilities(
        live_migration=False,
        quick_migration=True,
        csv=True,
        network_kind=common_pb2.NETWORK_KIND_VIRTUAL_NETWORK,
    )
    assert reported.capabilities_reported
    assert isinstance(reported, manager_pb2.Host)


# --- persisted ---------------------------------------------------------------------------


def test_the_store_keeps_the_capabilities_and_loads_a_host_stored_without_them(tmp_path: Path) -> None:
    path = tmp_path / "manager.db"
    store = SqliteStore(path)
    try:
        store.put_host(host("node1", reported_capabilities=NO_LIVE))
        store.put_host(host("node2"))
    finally:
        store.close()
    # A database written before capabilities existed: no key at all in the record.
    db = sqlite3.connect(str(path))
    try:
        (data,) = db.execute("SELECT data FROM hosts WHERE name = 'node2'").fetchone()
        assert '"reported_capabilities": null' in data
        db.execute(
            "UPDATE hosts SET data = ? WHERE name = 'node2'",
            (data.replace('"reported_capabilities": null, ', ""),),
        )
        db.commit()
    finally:
        db.close()
    again = SqliteStore(path)
    try:
        node1, node2 = again.get_host("node1"), again.get_host("node2")
        assert node1 is not None and node1.reported_capabilities == NO_LIVE
        assert node2 is not None and node2.reported_capabilities is None
        assert node2.capabilities == R2
    finally:
        again.close()


# --- a report unlike the profile is logged once ------------------------------------------


class _Agents:
    """Only what a refresh asks: every host answers with the same capabilities."""

    def __init__(self, capabilities: HostCapabilities) -> None:
        self.capabilities = capabilities

    async def get_inventory(self, host: str, address: str) -> Inventory:
        return replace(inventory(self.capabilities), host_name=host)


async def test_a_report_unlike_the_profile_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    store.put_host(host())
    agents = _Agents(NO_LIVE)
    refresh = RefreshService(store, agents, Settings(), lambda: T0, VmClaims(), lambda: {})  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="manager.app.refresh"):
        await refresh.refresh_all()
        await refresh.refresh_all()
    unlike = [r.getMessage() for r in caplog.records if "unlike its profile" in r.getMessage()]
    assert unlike == [
        "host node1 reports capabilities unlike its profile hyperv-2008r2 "
        "(live_migration: reported False, hyperv-2008r2 says True): going by the report"
    ]
    stored = store.get_host("node1")
    assert stored is not None and stored.capabilities == NO_LIVE
    caplog.clear()
    agents.capabilities = R2  # the agent now agrees with its profile: nothing to say
    with caplog.at_level(logging.WARNING, logger="manager.app.refresh"):
        await refresh.refresh_all()
    assert not [r for r in caplog.records if "unlike its profile" in r.getMessage()]
    stored = store.get_host("node1")
    assert stored is not None and stored.capabilities == R2 and stored.reported_capabilities == R2
    assert VIRTUAL_NETWORK == R2.network_kind
