"""Migrations in process against fake agents over real gRPC: checks, live, quick, storage,
slots, failures and a manager restart.

The manager application runs in the test's event loop on a SQLite store; the agents are
the fake AgentService on loopback, whose source side streams a few pre-copy passes and
moves the VM to the destination's fake host with the new lease.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from manager_fake_agent import FakeAgent
from manager_testkit import eventually, topology_for

from havm.v1 import common_pb2
from manager.adapters.agent_client import AgentClient
from manager.adapters.sqlite_store import SqliteStore
from manager.app.failover import FailoverService
from manager.app.manager import ManagerApp
from manager.app.migrations import MigrationService
from manager.core.errors import FailedPreconditionError, NotFoundError
from manager.core.migration import SlotRequest
from manager.core.migration_phase import MigrationPhase
from manager.core.model import (
    CreateVmCommand,
    JobRecord,
    MigrationKind,
    MigrationRecord,
    StorageKind,
    StorageLocation,
    VmOperation,
    VmRecord,
    Workload,
)
from manager.core.settings import Settings
from manager.core.states import HostState, JobState, MigrationState, VmState
from manager.core.topology import MigrationSettings, parse_topology

SETTINGS = Settings(
    agent_call_timeout=2.0,
    migration_recovery_poll=0.05,
    migration_recovery_timeout=1.5,
    migration_progress_interval=0.0,
)
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

    async def restart_during(self, migration: MigrationRecord, *phases: MigrationPhase) -> None:
        """Stop the manager once the migration is in one of `phases`, and open a new one
        on the same database (the agents carry on meanwhile)."""

        async def reached() -> bool:
            return self.app.get_migration(migration.id).phase in phases

        await eventually(reached, 3.0, f"the migration in phase {' or '.join(p.value for p in phases)}")
        await self.stop()
        self.app = self.open()

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
    c.agents["node1"].host.migration_failure = "MIGRATION_FAILURE_NOT_CONVERGED"
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
    assert c.app.get_migration(migration.id).phase is MigrationPhase.COMPLETED
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

    # The manager goes away mid-stream; the source agent carries on to the end.
    await c.restart_during(migration, MigrationPhase.PRE_COPY)
    assert c.app.get_migration(queued.id).state is MigrationState.FAILED
    assert c.app.get_migration(queued.id).error == "the manager restarted before it began"
    assert c.app.get_vm("web2").migration_id is None
    assert c.app.jobs.get(queued_job.id).state is JobState.FAILED
    # The running migration's job is the restarted manager's to end, with the outcome.
    assert c.app.jobs.get(job.id).state is JobState.RUNNING
    assert vm_id in c.app.vms.busy_vms()  # the refresh leaves it alone until settled
    await asyncio.wait_for(c.app.migrations.recover(), 5.0)
    settled = c.app.get_migration(migration.id)
    assert settled.state is MigrationState.COMPLETED, settled.error
    # Followed on the source to its end: the figures survive the restart.
    assert c.agents["node1"].host.reattach_calls == 1
    assert (settled.duration_ms, settled.blackout_ms, settled.passes) == (42, 7, 3)
    assert settled.memory_digest and settled.memory_digest == settled.resumed_digest
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.lease_generation, vm.migration_id) == ("node2", before + 1, None)
    assert vm_id not in c.app.vms.busy_vms()
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.COMPLETED and ended.error == "", ended.error
    assert "VM web1 moved live to node2" in ended.message, ended.message
    assert "followed across a manager restart" in ended.message


async def test_a_source_that_forgot_the_migration_is_asked_where_the_vm_is(cluster: Any) -> None:
    c = await cluster()
    vm_id = await c.vm("web1")
    c.agents["node1"].host.migration_step_delay = 0.2
    job, migration = await c.app.migrate_vm("web1", "node2")

    await c.restart_during(migration, MigrationPhase.PRE_COPY)
    c.agents["node1"].host.migration_log.clear()  # as after an agent restart
    await asyncio.wait_for(c.app.migrations.recover(), 5.0)
    assert c.agents["node1"].host.reattach_calls == 1  # asked, answered NOT_FOUND
    settled = c.app.get_migration(migration.id)
    assert settled.state is MigrationState.COMPLETED, settled.error
    assert settled.blackout_ms == 0  # no figures: nobody saw the end
    assert c.app.get_vm("web1").host == "node2" and vm_id in c.agents["node2"].host.vms
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.COMPLETED and "ended unobserved" in ended.message, ended.message


async def test_reattaching_to_a_failed_migration_settles_it_where_the_vm_is(cluster: Any) -> None:
    c = await cluster()
    vm_id = await c.vm("web1")
    c.agents["node1"].host.migration_step_delay = 0.3
    c.agents["node1"].host.migration_error = "the destination refused a page"
    job, migration = await c.app.migrate_vm("web1", "node2")

    await c.restart_during(migration, MigrationPhase.PREPARING, MigrationPhase.PRE_COPY)
    await asyncio.wait_for(c.app.migrations.recover(), 5.0)
    assert c.agents["node1"].host.reattach_calls == 1
    settled = c.app.get_migration(migration.id)
    assert settled.state is MigrationState.FAILED
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.state, vm.migration_id) == ("node1", VmState.RUNNING, None)
    assert vm_id in c.agents["node1"].host.vms and vm_id not in c.agents["node2"].host.vms
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.FAILED and "stays on node1" in ended.error, ended.error
    assert "the destination refused a page" in ended.error  # the agent's reason, not only the restart


async def test_a_migration_followed_after_a_restart_keeps_its_slots(cluster: Any) -> None:
    c = await cluster(max_live_migrations_per_host=1)
    await c.vm("web1")
    await c.vm("web2", host="node3")
    c.agents["node1"].host.migration_step_delay = 0.3
    job, migration = await c.app.migrate_vm("web1", "node2")

    await c.restart_during(migration, MigrationPhase.PRE_COPY)
    recovery = asyncio.get_running_loop().create_task(c.app.migrations.recover())
    await asyncio.sleep(0.1)
    second_job, second = await c.app.migrate_vm("web2", "node2")
    await asyncio.sleep(0.2)
    assert c.app.get_migration(second.id).state is MigrationState.QUEUED  # node2's one slot is taken
    await asyncio.wait_for(recovery, 10.0)
    assert c.app.get_migration(migration.id).state is MigrationState.COMPLETED
    assert (await c.finished(second_job)).state is JobState.COMPLETED
    assert c.agents["node2"].host.peak_migrations == 1


async def test_a_crash_while_settling_ends_the_migration_and_frees_the_vm(
    cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await cluster()
    vm_id = await c.vm("web1")
    c.agents["node1"].host.migration_step_delay = 0.2
    job, migration = await c.app.migrate_vm("web1", "node2")

    await c.restart_during(migration, MigrationPhase.PRE_COPY)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug while following the migration")

    async def broken_too(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug while asking where the VM is")

    monkeypatch.setattr(c.app.migrations.context.agents, "migrate_vm", broken)
    monkeypatch.setattr(c.app.migrations.context, "watch_source", broken_too)
    await asyncio.wait_for(c.app.migrations.recover(), 5.0)
    settled = c.app.get_migration(migration.id)
    assert settled.state is MigrationState.FAILED and "a bug while asking" in settled.error
    assert c.app.get_vm("web1").migration_id is None and vm_id not in c.app.vms.busy_vms()
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.FAILED and "could not be settled" in ended.error, ended.error
    assert c.app.migrations.slots.running == {}  # no slot left behind


async def test_a_job_caught_just_after_its_migration_ended_ends_as_the_migration_did(cluster: Any) -> None:
    c = await cluster()
    await c.vm("web1")
    job, migration = await c.app.migrate_vm("web1", "node2")
    assert (await c.finished(job)).state is JobState.COMPLETED
    # As if the process died between recording the migration and ending its job.
    c.app.store.put_job(replace(c.app.jobs.get(job.id), state=JobState.RUNNING, message="Migrating"))
    await c.stop()
    c.app = c.open()
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.COMPLETED and ended.message == "VM web1 moved to node2", ended


# --- a migration meets a failure, a failover or a restart --------------------------------


def failover_of(c: Cluster, failed: str) -> tuple[FailoverService, list[VmRecord]]:
    """The failover of a host the detector fenced: its HA VMs marked for a restart elsewhere."""
    host = c.app.store.get_host(failed)
    assert host is not None
    c.app.store.put_host(replace(host, state=HostState.FENCING, state_reason="lost"))
    failover = FailoverService(c.app.store, c.app._agents, SETTINGS, c.app.vms, c.app.events, time.monotonic)
    return failover, failover.mark(replace(host, state=HostState.FENCING))


async def test_a_failover_during_a_live_migration_takes_a_newer_lease_than_the_migration(
    cluster: Any,
) -> None:
    c = await cluster(stall_timeout_s=1.0)
    vm_id = await c.vm("web1")
    c.agents["node1"].host.migration_hang = True
    job, migration = await c.app.migrate_vm("web1", "node2")

    async def migrating() -> bool:
        return c.app.get_vm("web1").state is VmState.MIGRATING

    await eventually(migrating, 3.0, "the live migration streams")
    reserved = migration.lease_generation
    # node1 fails while its migration is open: the destination may already hold `reserved`.
    failover, marked = failover_of(c, "node1")
    await failover.restart_all("node1", marked)
    vm = c.app.get_vm("web1")
    assert (vm.state, vm.lease_generation) == (VmState.RUNNING, reserved + 1)
    assert c.agents["node2"].host.leases[vm_id] == reserved + 1
    c.agents["node1"].host.vms.pop(vm_id)  # the fenced host dropped its copy
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "failover of host node1 took the VM" in job.error
    after = c.app.get_vm("web1")
    assert (after.host, after.lease_generation, after.migration_id) == (vm.host, reserved + 1, None)


async def test_a_vm_its_source_let_go_is_recorded_on_the_silent_destination(cluster: Any) -> None:
    c = await cluster()
    await c.vm("web1")
    c.agents["node1"].host.migration_error_after_move = "the connection to the manager was lost"
    job, migration = await c.app.migrate_vm("web1", "node2")
    c.agents["node2"].host.silent = True
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "recorded on node2" in job.error, job.error
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.state, vm.lease_generation, vm.migration_id) == (
        "node2",
        VmState.UNKNOWN,
        migration.lease_generation,
        None,
    )
    await c.app.refresher.refresh_all()  # the destination's inventory settles it
    assert (c.app.get_vm("web1").host, c.app.get_vm("web1").state) == ("node2", VmState.RUNNING)


@pytest.mark.parametrize("source_remembers", [True, False])
async def test_a_stream_given_up_waits_for_the_agents_to_finish(cluster: Any, source_remembers: bool) -> None:
    c = await cluster(stall_timeout_s=0.3)
    vm_id = await c.vm("web1")
    before = c.app.get_vm("web1").lease_generation
    c.agents["node1"].host.migration_quiet = True
    c.agents["node1"].host.migration_step_delay = 0.25  # moves ~0.45 s after the stream gave up
    c.agents["node1"].host.forgets_migrations = not source_remembers
    job, migration = await c.app.migrate_vm("web1", "node2")
    job = await c.finished(job)
    assert c.agents["node1"].host.reattach_calls == 1
    if source_remembers:
        # Followed again by its id: it ends with the source's figures.
        assert job.state is JobState.COMPLETED and "moved live to node2" in job.message, job.error
        assert c.app.get_migration(migration.id).blackout_ms == 7
    else:
        assert job.state is JobState.COMPLETED and "ended unobserved" in job.message, job.error
    assert c.app.get_migration(migration.id).state is MigrationState.COMPLETED
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.lease_generation, vm.migration_id) == ("node2", before + 1, None)
    assert vm_id in c.agents["node2"].host.vms


async def test_a_fallback_saves_a_vm_whose_source_cannot_be_asked(cluster: Any) -> None:
    c = await cluster(no_converge="quick")
    vm_id = await c.vm("busy1")
    c.agents["node1"].host.migration_error = "did not converge: dirty rate 900 MB/s at or above 400 MB/s"
    c.agents["node1"].host.migration_failure = "MIGRATION_FAILURE_NOT_CONVERGED"
    job, _ = await c.app.migrate_vm("busy1", "node2")
    c.agents["node1"].host.silent = True  # it still saves, but says nothing of its VMs
    job = await c.finished(job)
    assert job.state is JobState.COMPLETED, job.error
    vm = c.app.get_vm("busy1")
    assert (vm.host, vm.state) == ("node2", VmState.RUNNING)
    assert vm_id not in c.agents["node1"].host.vms
    assert c.agents["node2"].host.vms[vm_id].state == common_pb2.VM_STATE_RUNNING


async def test_a_quick_migration_stops_when_a_failover_marks_its_vm(cluster: Any) -> None:
    c = await cluster()
    vm_id = await c.vm("q1")
    c.agents["node1"].host.save_delay = 0.4
    job, migration = await c.app.migrate_vm("q1", "node2", quick=True)

    async def saving() -> bool:
        return c.app.get_migration(migration.id).phase is MigrationPhase.SAVING

    await eventually(saving, 3.0, "the source saves the VM")
    failover, marked = failover_of(c, "node1")
    assert [vm.id for vm in marked] == [vm_id]
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "failover" in job.error, job.error
    assert vm_id not in c.agents["node2"].host.vms  # no take-over behind the failover's back
    await failover.restart_all("node1", marked)
    vm = c.app.get_vm("q1")
    assert vm.state is VmState.RUNNING and vm.lease_generation == migration.lease_generation + 1
    assert [h for h in ("node2", "node3") if vm_id in c.agents[h].host.vms] == [vm.host]


async def test_a_restart_during_the_save_restores_the_vm_on_its_source(cluster: Any) -> None:
    c = await cluster()
    vm_id = await c.vm("q1")
    c.agents["node1"].host.save_delay = 0.5
    job, migration = await c.app.migrate_vm("q1", "node2", quick=True)

    async def saving() -> bool:
        return c.app.get_migration(migration.id).phase is MigrationPhase.SAVING

    await eventually(saving, 3.0, "the source saves the VM")
    await c.stop()  # the save goes on in the agent
    c.app = c.open()
    await asyncio.wait_for(c.app.migrations.recover(), 5.0)
    assert c.app.get_migration(migration.id).state is MigrationState.FAILED
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.FAILED
    assert "manager restarted during the quick migration" in ended.error and "stays on node1" in ended.error
    vm = c.app.get_vm("q1")
    assert (vm.host, vm.state, vm.migration_id) == ("node1", VmState.RUNNING, None)
    assert c.agents["node1"].host.vms[vm_id].state == common_pb2.VM_STATE_RUNNING
    assert vm_id not in c.agents["node2"].host.vms


async def test_a_crash_after_the_stream_still_concludes_the_migration(
    cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await cluster()
    await c.vm("web1")

    async def crash(*args: Any) -> str:
        raise RuntimeError("crashed while recording the move")

    monkeypatch.setattr(c.app.migrations.live, "done", crash)
    job, migration = await c.app.migrate_vm("web1", "node2")
    job = await c.finished(job)
    assert job.state is JobState.COMPLETED, job.error
    assert c.app.get_migration(migration.id).state is MigrationState.COMPLETED
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.state, vm.migration_id) == ("node2", VmState.RUNNING, None)


async def test_a_cancelled_slot_waiter_lets_the_migrations_behind_it_start() -> None:
    service = MigrationService(None, None, None, None, SETTINGS, None, None, None)  # type: ignore[arg-type]
    service.policy = MigrationSettings(max_live_migrations_per_host=1)
    await service.slots.take(SlotRequest("running", "node1", "node2"))
    blocked = asyncio.create_task(service.slots.take(SlotRequest("blocked", "node1", "node3")))
    behind = asyncio.create_task(service.slots.take(SlotRequest("behind", "node3", "node4")))
    await asyncio.sleep(0.05)
    assert not behind.done()  # node3 is kept for the migration that waits before it
    blocked.cancel()
    await asyncio.wait_for(behind, 1.0)
    assert sorted(service.slots.running) == ["behind", "running"]
