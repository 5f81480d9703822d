"""Migrations in process against fake agents over real gRPC: checks, live, quick, storage,
slots, failures and a manager restart.

The manager application runs in the test's event loop on a SQLite store; the agents are
the fake AgentService on loopback, whose source side streams a few pre-copy passes and
moves the VM to the destination's fake host with the new lease.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from manager_fake_agent import FakeAgent
from manager_testkit import eventually, topology_for

from havm.v1 import common_pb2
from manager.adapters.agent_client import AgentClient
from manager.adapters.sqlite_store import SqliteStore
from manager.app.manager import ManagerApp
from manager.core.errors import FailedPreconditionError, NotFoundError
from manager.core.model import (
    CreateVmCommand,
    JobRecord,
    MigrationKind,
    StorageKind,
    StorageLocation,
    VmOperation,
    Workload,
)
from manager.core.settings import Settings
from manager.core.states import JobState, MigrationState, VmState
from manager.core.topology import parse_topology

SETTINGS = Settings(agent_call_timeout=2.0, migration_recovery_poll=0.05, migration_progress_interval=0.0)
# node2's migration traffic goes to an address of its own (a live-migration network).
NODE2_MIGRATION_ADDRESS = "127.0.0.1:1"


class Cluster:
    def __init__(self, agents: dict[str, FakeAgent], db: Path, **migration: Any) -> None:
        self.agents = agents
        self.db = db
        data = topology_for(agents)
        data["migration"] = {"stall_timeout_s": 0.5, **migration}
        for host in data["hosts"]:
            if host["name"] == "node2":
                host["migration_address"] = NODE2_MIGRATION_ADDRESS
        agents["node2"].host.network[NODE2_MIGRATION_ADDRESS] = agents["node2"].host
        self.topology = parse_topology(data)
        self.app = self.open()

    def open(self) -> ManagerApp:
        app = ManagerApp(SqliteStore(self.db), AgentClient(SETTINGS), SETTINGS)
        app.load(self.topology)
        return app

    async def stop(self) -> None:
        await self.app.stop()
        self.app.store.close()

    async def finished(self, job: JobRecord) -> JobRecord:
        async for update in self.app.watch_job(job.id):
            job = update
        return job

    async def vm(self, name: str, host: str = "node1", memory_mb: int = 512, **kw: Any) -> str:
        command = CreateVmCommand(
            name=name,
            memory_mb=memory_mb,
            cpus=1,
            disk_gb=10,
            highly_available=True,
            host=host,
            storage=None,
            networks=(),
            workload=Workload(),
            no_start=False,
            **kw,
        )
        job, vm = self.app.create_vm(command)
        assert (await self.finished(job)).state is JobState.COMPLETED
        return vm.id


@pytest.fixture
async def cluster(fake_agents: dict[str, FakeAgent], tmp_path: Path) -> Any:
    made: list[Cluster] = []

    async def make(**migration: Any) -> Cluster:
        c = Cluster(fake_agents, tmp_path / "manager.db", **migration)
        await c.app.refresher.refresh_all()
        made.append(c)
        return c

    yield make
    for c in made:
        await c.stop()


async def test_live_migration_moves_the_vm_with_a_newer_lease(cluster: Any) -> None:
    c = await cluster()
    vm_id = await c.vm("web1")
    before = c.app.get_vm("web1").lease_generation
    job, migration = await c.app.migrate_vm("web1", "node2")
    assert migration.kind is MigrationKind.LIVE and migration.state is MigrationState.QUEUED
    assert c.app.get_vm("web1").migration_id == migration.id
    with pytest.raises(FailedPreconditionError, match="migrating"):
        c.app.operate_vm("web1", VmOperation.PAUSE)
    job = await c.finished(job)
    assert job.state is JobState.COMPLETED, job.error
    assert "moved live to node2" in job.message
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.state, vm.lease_generation, vm.migration_id) == (
        "node2",
        VmState.RUNNING,
        before + 1,
        None,
    )
    done = c.app.get_migration(migration.id)
    assert done.state is MigrationState.COMPLETED and done.job_id == job.id
    assert (done.passes, done.duration_ms, done.blackout_ms) == (3, 42, 7)
    assert done.bytes_sent > 512 * 1024 * 1024 and done.memory_digest == done.resumed_digest != ""
    assert [m.id for m in c.app.list_migrations()] == [migration.id]
    # The source streamed to node2's migration address; the manager relayed nothing.
    assert c.agents["node1"].host.migrate_calls == [(vm_id, NODE2_MIGRATION_ADDRESS)]
    assert vm_id not in c.agents["node1"].host.vms and vm_id in c.agents["node2"].host.vms
    kinds = [e.detail for e in c.app.events.recent(100) if e.kind == "migration"]
    assert any("requested" in d for d in kinds) and any("moved live" in d for d in kinds)


async def test_refusals_come_before_any_job_and_list_every_reason(cluster: Any) -> None:
    c = await cluster()
    await c.vm("web1")
    c.agents["node3"].host.incompatible = ("host node3 has no virtual network 'Backend'",)
    c.agents["node3"].host.cpu_vendor = "AuthenticAMD"
    jobs_before = len(c.app.list_jobs())
    with pytest.raises(FailedPreconditionError) as caught:
        await c.app.migrate_vm("web1", "node3")
    message = caught.value.message
    assert message.startswith("VM web1 cannot move to node3: ")
    assert "no virtual network 'Backend'" in message and "AuthenticAMD" in message and "; " in message
    with pytest.raises(FailedPreconditionError, match="migrate-storage"):
        await c.app.migrate_vm("web1", "standalone1")
    with pytest.raises(FailedPreconditionError, match="already is on host node1"):
        await c.app.migrate_vm("web1", "node1")
    with pytest.raises(NotFoundError, match="host node9"):
        await c.app.migrate_vm("web1", "node9")
    assert len(c.app.list_jobs()) == jobs_before
    assert c.app.get_vm("web1").migration_id is None and c.app.list_migrations() == []


async def test_a_third_live_migration_of_a_host_queues_while_two_run(cluster: Any) -> None:
    c = await cluster(max_live_migrations_per_host=2)
    for name in ("a1", "a2", "a3"):
        await c.vm(name)
    c.agents["node1"].host.migration_step_delay = 0.15
    started = [
        await c.app.migrate_vm(name, dest)
        for name, dest in (("a1", "node2"), ("a2", "node3"), ("a3", "node2"))
    ]

    async def two_running_one_queued() -> bool:
        states = [c.app.get_migration(m.id).state for _, m in started]
        return states == [MigrationState.RUNNING, MigrationState.RUNNING, MigrationState.QUEUED]

    await eventually(two_running_one_queued, 3.0, "two migrations running, the third queued")
    jobs = [await c.finished(job) for job, _ in started]
    assert [j.state for j in jobs] == [JobState.COMPLETED] * 3
    assert c.agents["node1"].host.peak_migrations == 2
    assert [c.app.get_vm(n).host for n in ("a1", "a2", "a3")] == ["node2", "node3", "node2"]


async def test_no_converge_falls_back_to_quick_or_fails_by_policy(cluster: Any) -> None:
    c = await cluster(no_converge="quick")
    await c.vm("busy1")
    await c.vm("busy2")
    before = c.app.get_vm("busy1").lease_generation
    c.agents["node1"].host.migration_error = "did not converge: dirty rate 900 MB/s at or above 400 MB/s"
    job, migration = await c.app.migrate_vm("busy1", "node2")
    assert (await c.finished(job)).state is JobState.COMPLETED
    done = c.app.get_migration(migration.id)
    assert done.state is MigrationState.COMPLETED and done.fell_back_to_quick
    vm = c.app.get_vm("busy1")
    assert (vm.host, vm.state, vm.lease_generation) == ("node2", VmState.RUNNING, before + 1)
    assert vm.id not in c.agents["node1"].host.vms

    job, migration = await c.app.migrate_vm("busy2", "node3", no_converge="fail")
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "did not converge" in job.error and "stays on node1" in job.error
    failed = c.app.get_migration(migration.id)
    assert failed.state is MigrationState.FAILED and not failed.fell_back_to_quick
    vm = c.app.get_vm("busy2")
    assert (vm.host, vm.state, vm.migration_id) == ("node1", VmState.RUNNING, None)


async def test_quick_migration_and_its_rollback_when_the_take_over_fails(cluster: Any) -> None:
    c = await cluster()
    vm_id = await c.vm("q1")
    await c.vm("q2")
    c.agents["node2"].host.refuse_take_over = True
    job, migration = await c.app.migrate_vm("q1", "node2", quick=True)
    assert migration.kind is MigrationKind.QUICK
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "cannot take VMs over" in job.error
    assert c.app.get_migration(migration.id).state is MigrationState.FAILED
    vm = c.app.get_vm("q1")
    assert (vm.host, vm.state, vm.migration_id) == ("node1", VmState.RUNNING, None)
    assert c.agents["node1"].host.vms[vm_id].state == common_pb2.VM_STATE_RUNNING  # restored

    job, migration = await c.app.migrate_vm("q2", "node3", quick=True)
    assert (await c.finished(job)).state is JobState.COMPLETED
    vm = c.app.get_vm("q2")
    assert (vm.host, vm.state) == ("node3", VmState.RUNNING)
    assert c.app.get_migration(migration.id).phase == "completed"
    assert vm.id not in c.agents["node1"].host.vms


async def test_a_silent_stream_is_given_up_and_the_vm_stays_on_its_source(cluster: Any) -> None:
    c = await cluster(stall_timeout_s=0.3)
    await c.vm("web1")
    c.agents["node1"].host.migration_hang = True
    job, migration = await c.app.migrate_vm("web1", "node2")
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "sent nothing" in job.error
    assert c.app.get_migration(migration.id).state is MigrationState.FAILED
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.migration_id) == ("node1", None)


async def test_storage_migration_on_the_host_and_to_another_host(cluster: Any) -> None:
    c = await cluster()
    await c.vm("files1")
    lun = StorageLocation(StorageKind.LUN, "lun1")
    job, migration = await c.app.migrate_vm_storage("files1", "", lun)
    assert migration.kind is MigrationKind.STORAGE and migration.destination == "node1"
    assert (await c.finished(job)).state is JobState.COMPLETED
    assert c.app.get_vm("files1").storage == lun
    assert c.app.get_migration(migration.id).bytes_sent == 10 * 1024**3

    csv = StorageLocation(StorageKind.CSV, "Volume1")
    job, migration = await c.app.migrate_vm_storage("files1", "node3", None)
    assert migration.storage == csv  # chosen as placement does for a highly available VM
    assert (await c.finished(job)).state is JobState.COMPLETED
    vm = c.app.get_vm("files1")
    assert (vm.host, vm.storage, vm.state) == ("node3", csv, VmState.RUNNING)


async def test_update_vm_changes_processor_compatibility_only_while_stopped(cluster: Any) -> None:
    c = await cluster()
    vm_id = await c.vm("pc1", processor_compatibility=True)
    assert c.agents["node1"].host.vms[vm_id].spec.processor_compatibility
    with pytest.raises(FailedPreconditionError, match="only while the VM is stopped"):
        c.app.update_vm("pc1", False)
    c.agents["node1"].host.vms[vm_id].state = common_pb2.VM_STATE_STOPPED
    await c.app.refresher.refresh_all()
    job, _ = c.app.update_vm("pc1", False)
    assert (await c.finished(job)).state is JobState.COMPLETED
    assert not c.app.get_vm("pc1").processor_compatibility
    assert not c.agents["node1"].host.vms[vm_id].spec.processor_compatibility


async def test_a_restarted_manager_settles_the_migration_it_left_running(cluster: Any) -> None:
    c = await cluster(max_live_migrations_per_host=1)
    vm_id = await c.vm("web1")
    await c.vm("web2")
    before = c.app.get_vm("web1").lease_generation
    c.agents["node1"].host.migration_step_delay = 0.2
    job, migration = await c.app.migrate_vm("web1", "node2")
    queued_job, queued = await c.app.migrate_vm("web2", "node2")

    async def running() -> bool:
        return c.app.get_migration(migration.id).phase == "pre_copy"

    await eventually(running, 3.0, "the migration streams")
    # The manager goes away mid-stream; the source agent carries on to the end.
    await c.stop()
    c.app = c.open()
    assert c.app.get_migration(queued.id).state is MigrationState.FAILED
    assert c.app.get_migration(queued.id).error == "the manager restarted before it began"
    assert c.app.get_vm("web2").migration_id is None
    assert vm_id in c.app.vms.busy_vms()  # the refresh leaves it alone until settled
    await asyncio.wait_for(c.app.migrations.recover(), 5.0)
    settled = c.app.get_migration(migration.id)
    assert settled.state is MigrationState.COMPLETED, settled.error
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.lease_generation, vm.migration_id) == ("node2", before + 1, None)
    assert vm_id not in c.app.vms.busy_vms()
