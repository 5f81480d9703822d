"""Where a VM may move: one that is not highly available never lands on a cluster node,
whether by live, quick or storage migration; a highly available one never leaves the
cluster's nodes by `vm migrate`. And the default topology gives the README tour's
storage move somewhere to go: a second local disk on standalone1. The manager's app
runs over the real agents of the default topology, on virtual time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from havm.contract.hosts import CpuSpec
from havm.contract.topology import parse_topology
from havm.scenario.sim_agent import SimAgents, on_virtual_time
from manager.adapters.sqlite_store import SqliteStore
from manager.app.manager import ManagerApp
from manager.core.errors import FailedPreconditionError
from manager.core.migration import check_ha_fits
from manager.core.model import (
    CreateVmCommand,
    HostRecord,
    JobRecord,
    StorageKind,
    StorageLocation,
    VmRecord,
    Workload,
)
from manager.core.settings import Settings
from manager.core.states import HostState, JobState, VmState

DEFAULT = Path(__file__).resolve().parents[2] / "havm" / "cli" / "default_topology.yaml"
SETTINGS = Settings(agent_call_timeout_s=2.0, migration_progress_interval_s=0.0)


def host(name: str, cluster: str | None) -> HostRecord:
    cpu = CpuSpec("GenuineIntel", "Intel Xeon X5570", (), 8, 2933)
    return HostRecord(name, cluster, "hyperv-2008r2", "127.0.0.1:1", cpu, 32768, 2048, 30000, (), (), ())


def vm(name: str, on: str, highly_available: bool) -> VmRecord:
    return VmRecord(f"id-{name}", name, on, VmState.RUNNING, highly_available, 512, 1, 10, None)


def test_only_a_highly_available_vm_moves_to_a_cluster_node() -> None:
    node2, standalone = host("node2", "cluster1"), host("standalone2", None)
    with pytest.raises(FailedPreconditionError) as caught:
        check_ha_fits(vm("db1", "standalone1", False), node2)
    assert caught.value.message == (
        "VM db1 cannot move to node2: host node2 is a node of cluster cluster1, and a VM there must be "
        "highly available; VM db1 is not (choose a standalone host)"
    )
    check_ha_fits(vm("db1", "standalone1", False), standalone)
    check_ha_fits(vm("web1", "node1", True), node2)


def test_the_default_topologys_standalone_host_has_disks_c_and_d() -> None:
    topology = parse_topology(yaml.safe_load(DEFAULT.read_text()))
    standalone = topology.host("standalone1")
    assert [(d.name, d.capacity_gb) for d in standalone.disks] == [("C", 500), ("D", 200)]
    # Placement puts a new VM's files on the local disk with most room: C, leaving D to move to.
    assert max(standalone.disks, key=lambda d: d.capacity_gb).name == "C"
    assert all(
        [d.name for d in topology.host(n).disks] == ["C"] for n in ("node1", "node2", "node3", "node4")
    )


async def booted(tmp_path: Path) -> tuple[ManagerApp, SimAgents]:
    """The manager's app over the real agents of the default topology, on virtual time."""
    topology = parse_topology(yaml.safe_load(DEFAULT.read_text()))
    loop = asyncio.get_running_loop()
    sim = SimAgents(loop, topology, tmp_path)  # type: ignore[arg-type]
    await sim.start()
    manager = ManagerApp(
        SqliteStore(tmp_path / "manager.db"), sim.client(SETTINGS), SETTINGS, monotonic=loop.time
    )
    manager.load(sim.topology)
    await manager.refresher.refresh_all()
    assert all(h.host.state is HostState.OK for h in manager.list_hosts())
    return manager, sim


async def stopped(app: ManagerApp) -> None:
    await app.stop()
    app.store.close()


async def finished(app: ManagerApp, job: JobRecord) -> JobRecord:
    async for update in app.watch_job(job.id):
        job = update
    return job


async def create(app: ManagerApp, name: str, ha: bool) -> VmRecord:
    command = CreateVmCommand(name, 512, 1, 10, ha, None, None, (), Workload(), False)
    job, _ = app.create_vm(command)
    assert (await finished(app, job)).state is JobState.COMPLETED
    return app.get_vm(name)


@on_virtual_time
async def test_moves_that_would_break_the_ha_rule_are_refused_before_any_job(tmp_path: Path) -> None:
    app, _ = await booted(tmp_path)
    db1 = await create(app, "db1", ha=False)
    web1 = await create(app, "web1", ha=True)
    assert db1.host == "standalone1" and web1.host != "standalone1"
    jobs = len(app.list_jobs())
    for move in (
        app.migrate_vm_storage("db1", "node2", None),
        app.migrate_vm_storage("db1", "node2", StorageLocation(StorageKind.LOCAL_DISK, "C")),
        app.migrate_vm("db1", "node2"),
        app.migrate_vm("db1", "node2", quick=True),
    ):
        with pytest.raises(FailedPreconditionError) as caught:
            await move
        assert caught.value.message.startswith(
            "VM db1 cannot move to node2: host node2 is a node of cluster cluster1, and a VM there must "
            "be highly available; VM db1 is not"
        )
    with pytest.raises(FailedPreconditionError, match="move to standalone1 crosses the cluster boundary"):
        await app.migrate_vm("web1", "standalone1")
    assert len(app.list_jobs()) == jobs and app.list_migrations() == []
    assert app.get_vm("db1").host == "standalone1" and app.get_vm("web1").host == web1.host
    await stopped(app)


@on_virtual_time
async def test_the_tours_storage_move_to_the_second_disk(tmp_path: Path) -> None:
    app, sim = await booted(tmp_path)
    db1 = await create(app, "db1", ha=False)
    assert db1.storage == StorageLocation(StorageKind.LOCAL_DISK, "C")
    job, migration = await app.migrate_vm_storage(
        "db1", "standalone1", StorageLocation(StorageKind.LOCAL_DISK, "D")
    )
    assert (await finished(app, job)).state is JobState.COMPLETED
    moved = app.get_vm("db1")
    assert (moved.host, moved.storage) == ("standalone1", StorageLocation(StorageKind.LOCAL_DISK, "D"))
    assert migration.destination == "standalone1"
    # The agent moved the files: the VM's disk is on D now.
    on_agent = sim.vm_host("standalone1").get_vm(db1.id)
    assert (on_agent.spec.storage.kind.value, on_agent.spec.storage.name) == ("local_disk", "D")
    await stopped(app)
