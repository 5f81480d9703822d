"""Migrations in process over the real agents, on virtual time: checks, live, quick,
storage, slots, failures and a manager restart.

The manager application runs on a SQLite store it can be restarted on (manager_sim);
the agents are the agent's own app for every host. The live-migration network is
capped, so that a migration of the tests' small VMs lasts a few virtual seconds and a
test can act in the middle of it. What only a fault could make an agent do is injected
at its VmHost (`intercept`): a take-over refused, a slow save, a progress stream that
falls silent or breaks, a source that forgot its migrations, a host that does not answer
about its VMs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from manager_sim import SimManager, sim_agents
from manager_testkit import HOSTS, topology_data

from havm.contract.topology import MigrationSettings
from havm.scenario.sim_agent import SimAgents, intercept, on_virtual_time
from havm.scenario.sim_cluster import AGENT_SERVICE
from manager.app.failover import FailoverService
from manager.app.migrations import MigrationService
from manager.core.errors import FailedPreconditionError, NotFoundError
from manager.core.migration import SlotRequest
from manager.core.migration_phase import MigrationPhase
from manager.core.model import (
    CreateVmCommand,
    MigrationKind,
    MigrationRecord,
    StorageKind,
    StorageLocation,
    VmOperation,
    VmRecord,
    Workload,
)
from manager.core.operations import SettingsChange
from manager.core.settings import Settings
from manager.core.states import HostState, JobState, MigrationState, VmState
from node_agent.adapters.grpc_agent import AgentServicer
from node_agent.app.host import VmHost
from node_agent.core.errors import AgentError, FailedPrecondition, Unavailable
from node_agent.core.migration import MigrationPhase as AgentPhase
from node_agent.core.migration import MigrationProgress, MigrationRequest
from node_agent.core.power import Operation, PowerState

SETTINGS = Settings(
    agent_call_timeout_s=2.0,
    migration_recovery_poll_s=0.05,
    migration_recovery_timeout_s=10.0,
    migration_progress_interval_s=0.0,
)
MIB = 1024 * 1024
# The tests' VMs, and the live-migration network: one pass takes two virtual seconds. The
# source reports its progress every half second, so the manager waits longer before it
# calls a stream stalled.
MEMORY_MB = 64
BANDWIDTH_MB_PER_S = 32
# Guests too busy to move live: smaller still, their passes repeat until the agent gives up.
BUSY_MB = 16
# node2's migration traffic goes to an address of its own (a live-migration network).
NODE2_MIGRATION_ADDRESS = "node2-migration.sim:50052"


class Cluster(SimManager):
    async def restart_during(self, migration: MigrationRecord, *phases: MigrationPhase) -> None:
        """Stop the manager once the migration is in one of `phases`, and open a new one
        on the same database (the agents carry on meanwhile)."""
        await eventually(
            lambda: self.app.get_migration(migration.id).phase in phases,
            f"the migration in phase {' or '.join(p.value for p in phases)}",
        )
        await self.restart()

    async def vm(
        self,
        name: str,
        host: str = "node1",
        memory_mb: int = MEMORY_MB,
        workload: Workload | None = None,
        networks: tuple[str, ...] = (),
        **kw: Any,
    ) -> str:
        command = CreateVmCommand(
            name=name,
            memory_mb=memory_mb,
            cpus=1,
            disk_gb=10,
            highly_available=True,
            host=host,
            storage=None,
            networks=networks,
            workload=workload or Workload(),
            no_start=False,
            **kw,
        )
        job, vm = self.app.create_vm(command)
        assert (await self.finished(job)).state is JobState.COMPLETED
        return vm.id

    def agent(self, host: str) -> VmHost:
        return self.sim.vm_host(host)


async def booted(tmp_path: Path, hosts: dict[str, dict] | None = None, **migration: Any) -> Cluster:
    """The three nodes and the standalone host of manager_testkit, on a capped migration
    network; `hosts` adds fields to hosts' entries, `migration` to the migration section."""
    data = topology_data(dict.fromkeys(HOSTS))
    data["migration"] = {"stall_timeout_s": 2.0, "bandwidth_mb_per_s": BANDWIDTH_MB_PER_S, **migration}
    for entry in data["hosts"]:
        entry.update((hosts or {}).get(entry["name"], {}))
    sim = await sim_agents(tmp_path, data)
    # The manager's topology gives node2 its migration address; its agent answers there too.
    topology = sim.topology.with_migration_addresses({"node2": NODE2_MIGRATION_ADDRESS})
    also_listen(sim, "node2", NODE2_MIGRATION_ADDRESS)
    c = Cluster(sim, tmp_path / "manager.db", SETTINGS, topology)
    await c.app.refresher.refresh_all()
    return c


def crash(c: Cluster, host: str) -> None:
    """The host dies: its connections close, on its migration address too."""
    c.sim.crash(host)
    if host == "node2":
        c.sim.cluster.network.close(NODE2_MIGRATION_ADDRESS)


def also_listen(sim: SimAgents, host: str, address: str) -> None:
    """`host`'s agent answers at `address` too, as on a second network of its own."""
    machine = sim.cluster.host(host).machine
    sim.cluster.network.listen(address, machine, {AGENT_SERVICE: AgentServicer(sim.vm_host(host), None)})


async def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait on virtual time until `check()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting: {what}")
        await asyncio.sleep(0.01)


# --- what the tests inject at the agents' VmHost -------------------------------------------

Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


def recording(requests: list[MigrationRequest]) -> Wrapper:
    """Every MigrateVm the agent is asked for, new or re-attaching, kept in `requests`."""

    def wrap(migrate_vm: Callable[..., Any]) -> Callable[..., Any]:
        def migrate(request: MigrationRequest) -> Any:
            requests.append(request)
            return migrate_vm(request)

        return migrate

    return wrap


def migrations_to(c: Cluster, host: str) -> list[MigrationRequest]:
    requests: list[MigrationRequest] = []
    intercept(c.agent(host), "migrate_vm", recording(requests))
    return requests


def forgetting(follow_migration: Callable[..., Any]) -> Callable[..., Any]:
    """The agent knows no migration by its id any more, as after a restart."""

    def follow(migration_id: str) -> None:
        return None

    return follow


def quiet_streams(reattach_too: bool) -> Wrapper:
    """A source whose progress stream says the migration prepares, then falls silent
    (the migration goes on); with `reattach_too`, a caller that follows it again hears
    nothing at all either, not even how it ended."""

    def wrap(migrate_vm: Callable[..., Any]) -> Callable[..., Any]:
        def migrate(request: MigrationRequest) -> AsyncGenerator[MigrationProgress, None]:
            updates = migrate_vm(request)
            if request.reattach and not reattach_too:
                return updates  # type: ignore[no-any-return]

            async def quiet() -> AsyncGenerator[MigrationProgress, None]:
                try:
                    with contextlib.suppress(AgentError):
                        yield await anext(updates)
                    await asyncio.Event().wait()
                finally:
                    await updates.aclose()

            return quiet()

        return migrate

    return wrap


def broken_once_moved(migrate_vm: Callable[..., Any]) -> Callable[..., Any]:
    """The stream to the caller breaks where it would say the VM moved, and so does every
    re-attach: the source let the VM go, its caller never hears it."""

    def migrate(request: MigrationRequest) -> AsyncGenerator[MigrationProgress, None]:
        updates = migrate_vm(request)

        async def relay() -> AsyncGenerator[MigrationProgress, None]:
            try:
                async for update in updates:
                    if update.phase is AgentPhase.COMPLETED:
                        raise Unavailable("the connection to the manager was lost")
                    yield update
            finally:
                await updates.aclose()

        return relay()

    return migrate


def silent_about_vms(get_vm: Callable[..., Any]) -> Callable[..., Any]:
    """The host does not answer about its VMs (its inventory still does)."""

    def get(vm_id: str) -> Any:
        raise Unavailable("the host does not answer")

    return get


def refusing_take_overs(create_vm: Callable[..., Any]) -> Callable[..., Any]:
    def create(spec: Any, take_over: bool = False, lease_generation: int = 0, **more: Any) -> Any:
        if take_over:
            raise FailedPrecondition(f"this host cannot take VM {spec.label} over")
        return create_vm(spec, take_over, lease_generation, **more)

    return create


def slow_saves(seconds: float) -> Wrapper:
    """Every save takes `seconds` more before it begins; it ends even if its caller goes
    away, as the agent's own operations do."""

    def wrap(operate: Callable[..., Any]) -> Callable[..., Any]:
        async def slow(vm_id: str, operation: Operation) -> Any:
            if operation is not Operation.SAVE:
                return await operate(vm_id, operation)

            async def save() -> Any:
                await asyncio.sleep(seconds)
                return await operate(vm_id, operation)

            return await asyncio.shield(asyncio.ensure_future(save()))

        return slow

    return wrap


@contextlib.asynccontextmanager
async def peak_migrations(c: Cluster, host: str) -> AsyncIterator[list[int]]:
    """The most live migrations `host`'s agent took part in at once (out and in), sampled
    on virtual time while the block runs: the list's one item."""
    peak = [0]

    async def sample() -> None:
        while True:
            agent = c.agent(host)
            peak[0] = max(peak[0], len(agent.outgoing) + len(agent.incoming))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    try:
        yield peak
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)


def source_outcome(c: Cluster, host: str, migration_id: str) -> MigrationProgress | AgentError:
    """How the source agent says the migration ended."""
    outcome = c.agent(host).finished_migrations.get(migration_id)
    assert outcome is not None, f"host {host} knows no end of migration {migration_id}"
    return outcome


# --- the tests ------------------------------------------------------------------------------


@on_virtual_time
async def test_live_migration_moves_the_vm_with_a_newer_lease(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    requests = migrations_to(c, "node1")
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
    # The source's own figures.
    outcome = source_outcome(c, "node1", migration.id)
    assert isinstance(outcome, MigrationProgress)
    assert (done.passes, done.duration_ms, done.blackout_ms) == (
        outcome.pass_number,
        outcome.duration_ms,
        outcome.blackout_ms,
    )
    assert done.passes >= 1 and done.duration_ms >= MEMORY_MB / BANDWIDTH_MB_PER_S * 1000
    assert done.bytes_sent >= MEMORY_MB * MIB and done.memory_digest == done.resumed_digest != ""
    assert [m.id for m in c.app.list_migrations()] == [migration.id]
    # The source streamed to node2's migration address; the manager relayed nothing.
    assert [(r.vm_id, r.destination_address, r.reattach) for r in requests] == [
        (vm_id, NODE2_MIGRATION_ADDRESS, False)
    ]
    assert c.on_agent("node1", vm_id) is None and c.running(vm_id) == ["node2"]
    moved = c.on_agent("node2", vm_id)
    assert moved is not None and moved.lease_generation == before + 1
    kinds = [e.detail for e in c.app.events.recent(100) if e.kind == "migration"]
    assert any("requested" in d for d in kinds) and any("moved live" in d for d in kinds)
    await c.stop()


@on_virtual_time
async def test_refusals_come_before_any_job_and_list_every_reason(tmp_path: Path) -> None:
    # node3 has an AMD processor and no network Backend, which web1 is connected to.
    networks = [{"name": "External", "bound_to": "nic"}, {"name": "Backend", "bound_to": "nic2"}]
    amd = {
        "vendor": "AuthenticAMD",
        "model": "AMD Opteron 2435",
        "features": ["sse4_2"],
        "cores": 8,
        "mhz": 2600,
    }
    hosts = {"node1": {"networks": networks}, "node2": {"networks": networks}, "node3": {"cpu": amd}}
    c = await booted(tmp_path, hosts)
    await c.vm("web1", networks=("Backend",))
    jobs_before = len(c.app.list_jobs())
    with pytest.raises(FailedPreconditionError) as caught:
        await c.app.migrate_vm("web1", "node3")
    message = caught.value.message
    assert message.startswith("VM web1 cannot move to node3: ")
    assert "'Backend'" in message and "AuthenticAMD" in message and "; " in message
    with pytest.raises(FailedPreconditionError, match="stopped or saved"):
        await c.app.migrate_vm("web1", "standalone1")
    with pytest.raises(FailedPreconditionError, match="already is on host node1"):
        await c.app.migrate_vm("web1", "node1")
    with pytest.raises(NotFoundError, match="host node9"):
        await c.app.migrate_vm("web1", "node9")
    assert len(c.app.list_jobs()) == jobs_before
    assert c.app.get_vm("web1").migration_id is None and c.app.list_migrations() == []
    await c.stop()


@on_virtual_time
async def test_a_third_live_migration_of_a_host_queues_while_two_run(tmp_path: Path) -> None:
    c = await booted(tmp_path, max_live_migrations_per_host=2)
    for name in ("a1", "a2", "a3"):
        await c.vm(name)
    async with peak_migrations(c, "node1") as peak:
        started = [
            await c.app.migrate_vm(name, dest)
            for name, dest in (("a1", "node2"), ("a2", "node3"), ("a3", "node2"))
        ]

        def two_running_one_queued() -> bool:
            states = [c.app.get_migration(m.id).state for _, m in started]
            return states == [MigrationState.RUNNING, MigrationState.RUNNING, MigrationState.QUEUED]

        await eventually(two_running_one_queued, "two migrations running, the third queued")
        jobs = [await c.finished(job) for job, _ in started]
    assert [j.state for j in jobs] == [JobState.COMPLETED] * 3
    assert peak == [2]
    assert [c.app.get_vm(n).host for n in ("a1", "a2", "a3")] == ["node2", "node3", "node2"]
    await c.stop()


@on_virtual_time
async def test_no_converge_falls_back_to_quick_or_fails_by_policy(tmp_path: Path) -> None:
    c = await booted(tmp_path, no_converge="quick")
    # Guests that dirty memory faster than the migration network carries.
    busy = Workload(dirty_rate_mb_per_s=2 * BANDWIDTH_MB_PER_S)
    await c.vm("busy1", memory_mb=BUSY_MB, workload=busy)
    await c.vm("busy2", memory_mb=BUSY_MB, workload=busy)
    before = c.app.get_vm("busy1").lease_generation
    job, migration = await c.app.migrate_vm("busy1", "node2")
    assert (await c.finished(job)).state is JobState.COMPLETED
    done = c.app.get_migration(migration.id)
    assert done.state is MigrationState.COMPLETED and done.fell_back_to_quick
    vm = c.app.get_vm("busy1")
    assert (vm.host, vm.state, vm.lease_generation) == ("node2", VmState.RUNNING, before + 1)
    assert c.on_agent("node1", vm.id) is None and c.running(vm.id) == ["node2"]

    job, migration = await c.app.migrate_vm("busy2", "node3", no_converge="fail")
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "did not converge" in job.error and "stays on node1" in job.error
    failed = c.app.get_migration(migration.id)
    assert failed.state is MigrationState.FAILED and not failed.fell_back_to_quick
    vm = c.app.get_vm("busy2")
    assert (vm.host, vm.state, vm.migration_id) == ("node1", VmState.RUNNING, None)
    assert c.running(vm.id) == ["node1"]
    await c.stop()


@on_virtual_time
async def test_quick_migration_and_its_rollback_when_the_take_over_fails(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    vm_id = await c.vm("q1")
    await c.vm("q2")
    undo = intercept(c.agent("node2"), "create_vm", refusing_take_overs)
    job, migration = await c.app.migrate_vm("q1", "node2", quick=True)
    assert migration.kind is MigrationKind.QUICK
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "cannot take VM q1 over" in job.error
    assert c.app.get_migration(migration.id).state is MigrationState.FAILED
    vm = c.app.get_vm("q1")
    assert (vm.host, vm.state, vm.migration_id) == ("node1", VmState.RUNNING, None)
    restored = c.on_agent("node1", vm_id)
    assert restored is not None and restored.state is PowerState.RUNNING  # restored
    assert c.running(vm_id) == ["node1"]
    undo()

    job, migration = await c.app.migrate_vm("q2", "node3", quick=True)
    assert (await c.finished(job)).state is JobState.COMPLETED
    vm = c.app.get_vm("q2")
    assert (vm.host, vm.state) == ("node3", VmState.RUNNING)
    assert c.app.get_migration(migration.id).phase is MigrationPhase.COMPLETED
    assert c.on_agent("node1", vm.id) is None and c.running(vm.id) == ["node3"]
    await c.stop()


@on_virtual_time
async def test_a_silent_stream_is_given_up_and_the_vm_stays_on_its_source(tmp_path: Path) -> None:
    c = await booted(tmp_path, stall_timeout_s=1.0)
    vm_id = await c.vm("web1")
    requests = migrations_to(c, "node1")
    intercept(c.agent("node1"), "migrate_vm", quiet_streams(reattach_too=True))
    c.sim.isolate("node1", "migration")  # and the migration itself gets nowhere
    job, migration = await c.app.migrate_vm("web1", "node2")
    job = await c.finished(job)
    assert [r.reattach for r in requests] == [False, True]  # given up, followed again, given up
    assert job.state is JobState.FAILED and "sent nothing" in job.error, job.error
    assert "stays on node1" in job.error
    assert c.app.get_migration(migration.id).state is MigrationState.FAILED
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.migration_id) == ("node1", None)
    assert c.running(vm_id) == ["node1"] and c.on_agent("node2", vm_id) is None
    await c.stop()


@on_virtual_time
async def test_storage_migration_on_the_host_and_to_another_host(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    vm_id = await c.vm("files1")
    lun = StorageLocation(StorageKind.LUN, "lun1")
    job, migration = await c.app.migrate_vm_storage("files1", "", lun)
    assert migration.kind is MigrationKind.STORAGE and migration.destination == "node1"
    assert (await c.finished(job)).state is JobState.COMPLETED
    assert c.app.get_vm("files1").storage == lun
    assert c.app.get_migration(migration.id).bytes_sent > 0
    on_lun = c.on_agent("node1", vm_id)
    assert on_lun is not None and (on_lun.spec.storage.kind.value, on_lun.spec.storage.name) == (
        "lun",
        "lun1",
    )

    csv = StorageLocation(StorageKind.CSV, "Volume1")
    job, migration = await c.app.migrate_vm_storage("files1", "node3", None)
    assert migration.storage == csv  # chosen as placement does for a highly available VM
    assert (await c.finished(job)).state is JobState.COMPLETED
    vm = c.app.get_vm("files1")
    assert (vm.host, vm.storage, vm.state) == ("node3", csv, VmState.RUNNING)
    moved = c.on_agent("node3", vm_id)
    assert moved is not None and (moved.spec.storage.kind.value, moved.spec.storage.name) == (
        "csv",
        "Volume1",
    )
    assert c.running(vm_id) == ["node3"]
    await c.stop()


@on_virtual_time
async def test_update_vm_changes_processor_compatibility_only_while_stopped(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    vm_id = await c.vm("pc1", processor_compatibility=True)
    on_agent = c.on_agent("node1", vm_id)
    assert on_agent is not None and on_agent.spec.processor_compatibility
    with pytest.raises(FailedPreconditionError, match="only while the VM is stopped"):
        c.app.update_vm("pc1", SettingsChange(processor_compatibility=False))
    job = c.app.operate_vm("pc1", VmOperation.TURN_OFF)
    assert (await c.finished(job)).state is JobState.COMPLETED
    job, _ = c.app.update_vm("pc1", SettingsChange(processor_compatibility=False))
    assert (await c.finished(job)).state is JobState.COMPLETED
    assert not c.app.get_vm("pc1").processor_compatibility
    on_agent = c.on_agent("node1", vm_id)
    assert on_agent is not None and not on_agent.spec.processor_compatibility
    await c.stop()


@on_virtual_time
async def test_a_restarted_manager_settles_the_migration_it_left_running(tmp_path: Path) -> None:
    c = await booted(tmp_path, max_live_migrations_per_host=1)
    requests = migrations_to(c, "node1")
    vm_id = await c.vm("web1")
    await c.vm("web2")
    before = c.app.get_vm("web1").lease_generation
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
    await asyncio.wait_for(c.app.migrations.recover(), 30.0)
    settled = c.app.get_migration(migration.id)
    assert settled.state is MigrationState.COMPLETED, settled.error
    # Followed on the source to its end: the source's figures survive the restart.
    assert [r.reattach for r in requests] == [False, True]
    outcome = source_outcome(c, "node1", migration.id)
    assert isinstance(outcome, MigrationProgress)
    assert (settled.duration_ms, settled.blackout_ms, settled.passes) == (
        outcome.duration_ms,
        outcome.blackout_ms,
        outcome.pass_number,
    )
    assert settled.duration_ms > 0 and settled.passes >= 1
    assert settled.memory_digest and settled.memory_digest == settled.resumed_digest
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.lease_generation, vm.migration_id) == ("node2", before + 1, None)
    assert vm_id not in c.app.vms.busy_vms() and c.running(vm_id) == ["node2"]
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.COMPLETED and ended.error == "", ended.error
    assert "VM web1 moved live to node2" in ended.message, ended.message
    assert "followed across a manager restart" in ended.message
    await c.stop()


@on_virtual_time
async def test_a_source_that_forgot_the_migration_is_asked_where_the_vm_is(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    requests = migrations_to(c, "node1")
    vm_id = await c.vm("web1")
    job, migration = await c.app.migrate_vm("web1", "node2")

    await c.restart_during(migration, MigrationPhase.PRE_COPY)
    intercept(c.agent("node1"), "follow_migration", forgetting)  # as after an agent restart
    await asyncio.wait_for(c.app.migrations.recover(), 30.0)
    assert [r.reattach for r in requests] == [False, True]  # asked, answered NOT_FOUND
    settled = c.app.get_migration(migration.id)
    assert settled.state is MigrationState.COMPLETED, settled.error
    assert settled.blackout_ms == 0  # no figures: nobody saw the end
    assert c.app.get_vm("web1").host == "node2" and c.running(vm_id) == ["node2"]
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.COMPLETED and "ended unobserved" in ended.message, ended.message
    await c.stop()


@on_virtual_time
async def test_reattaching_to_a_failed_migration_settles_it_where_the_vm_is(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    requests = migrations_to(c, "node1")
    vm_id = await c.vm("web1")
    job, migration = await c.app.migrate_vm("web1", "node2")

    await c.restart_during(migration, MigrationPhase.PREPARING, MigrationPhase.PRE_COPY)
    crash(c, "node2")  # the destination dies while the manager is away
    await asyncio.wait_for(c.app.migrations.recover(), 30.0)
    assert [r.reattach for r in requests] == [False, True]
    settled = c.app.get_migration(migration.id)
    assert settled.state is MigrationState.FAILED
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.state, vm.migration_id) == ("node1", VmState.RUNNING, None)
    assert c.running(vm_id) == ["node1"]
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.FAILED and "stays on node1" in ended.error, ended.error
    outcome = source_outcome(c, "node1", migration.id)
    assert isinstance(outcome, AgentError)
    assert outcome.message in ended.error  # the agent's reason, not only the restart
    await c.stop()


@on_virtual_time
async def test_a_migration_followed_after_a_restart_keeps_its_slots(tmp_path: Path) -> None:
    c = await booted(tmp_path, max_live_migrations_per_host=1)
    await c.vm("web1")
    await c.vm("web2", host="node3")
    async with peak_migrations(c, "node2") as peak:
        job, migration = await c.app.migrate_vm("web1", "node2")

        await c.restart_during(migration, MigrationPhase.PRE_COPY)
        recovery = asyncio.get_running_loop().create_task(c.app.migrations.recover())
        await asyncio.sleep(0.1)
        second_job, second = await c.app.migrate_vm("web2", "node2")
        await asyncio.sleep(0.2)
        assert c.app.get_migration(second.id).state is MigrationState.QUEUED  # node2's one slot is taken
        await asyncio.wait_for(recovery, 30.0)
        assert c.app.get_migration(migration.id).state is MigrationState.COMPLETED
        assert (await c.finished(second_job)).state is JobState.COMPLETED
    assert peak == [1]
    await c.stop()


@on_virtual_time
async def test_a_crash_while_settling_ends_the_migration_and_frees_the_vm(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    vm_id = await c.vm("web1")
    job, migration = await c.app.migrate_vm("web1", "node2")

    await c.restart_during(migration, MigrationPhase.PRE_COPY)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug while following the migration")

    async def broken_too(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug while asking where the VM is")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(c.app.migrations.context.agents, "migrate_vm", broken)
        patch.setattr(c.app.migrations.context, "watch_source", broken_too)
        await asyncio.wait_for(c.app.migrations.recover(), 30.0)
    settled = c.app.get_migration(migration.id)
    assert settled.state is MigrationState.FAILED and "a bug while asking" in settled.error
    assert c.app.get_vm("web1").migration_id is None and vm_id not in c.app.vms.busy_vms()
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.FAILED and "could not be settled" in ended.error, ended.error
    assert c.app.migrations.slots.running == {}  # no slot left behind
    await c.stop()


@on_virtual_time
async def test_a_job_caught_just_after_its_migration_ended_ends_as_the_migration_did(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    await c.vm("web1")
    job, migration = await c.app.migrate_vm("web1", "node2")
    assert (await c.finished(job)).state is JobState.COMPLETED
    # As if the process died between recording the migration and ending its job.
    c.app.store.put_job(replace(c.app.jobs.get(job.id), state=JobState.RUNNING, message="Migrating"))
    await c.restart()
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.COMPLETED and ended.message == "VM web1 moved to node2", ended
    await c.stop()


# --- a migration meets a failure, a failover or a restart --------------------------------


def failover_of(c: Cluster, failed: str) -> tuple[FailoverService, list[VmRecord]]:
    """The failover of a host the detector fenced: its HA VMs marked for a restart elsewhere."""
    host = c.app.store.get_host(failed)
    assert host is not None
    c.app.store.put_host(replace(host, state=HostState.FENCING, state_reason="lost"))
    loop = asyncio.get_running_loop()
    failover = FailoverService(c.app.store, c.app._agents, SETTINGS, c.app.vms, c.app.events, loop.time)
    return failover, failover.mark(replace(host, state=HostState.FENCING))


@on_virtual_time
async def test_a_failover_during_a_live_migration_takes_a_newer_lease_than_the_migration(
    tmp_path: Path,
) -> None:
    c = await booted(tmp_path, stall_timeout_s=1.0)
    vm_id = await c.vm("web1")
    c.sim.isolate("node1", "migration")  # the migration hangs: nothing goes out
    job, migration = await c.app.migrate_vm("web1", "node2")
    await eventually(lambda: c.app.get_vm("web1").state is VmState.MIGRATING, "the live migration streams")
    reserved = migration.lease_generation
    # node1 fails while its migration is open: the destination may already hold `reserved`.
    failover, marked = failover_of(c, "node1")
    await failover.restart_all("node1", marked)
    vm = c.app.get_vm("web1")
    assert (vm.state, vm.lease_generation) == (VmState.RUNNING, reserved + 1)
    restarted = c.on_agent(vm.host or "", vm_id)
    assert restarted is not None and restarted.lease_generation == reserved + 1
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "failover of host node1 took the VM" in job.error
    after = c.app.get_vm("web1")
    assert (after.host, after.lease_generation, after.migration_id) == (vm.host, reserved + 1, None)
    # The copy left on node1 lost its lease: it stopped by itself.
    await eventually(lambda: c.running(vm_id) == [vm.host], "node1's copy fenced")
    await c.stop()


@on_virtual_time
async def test_a_vm_its_source_let_go_is_recorded_on_the_silent_destination(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    vm_id = await c.vm("web1")
    intercept(c.agent("node1"), "migrate_vm", broken_once_moved)
    undo = intercept(c.agent("node2"), "get_vm", silent_about_vms)
    job, migration = await c.app.migrate_vm("web1", "node2")
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "recorded on node2" in job.error, job.error
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.state, vm.lease_generation, vm.migration_id) == (
        "node2",
        VmState.UNKNOWN,
        migration.lease_generation,
        None,
    )
    assert c.running(vm_id) == ["node2"]
    undo()
    await c.app.refresher.refresh_all()  # the destination's inventory settles it
    assert (c.app.get_vm("web1").host, c.app.get_vm("web1").state) == ("node2", VmState.RUNNING)
    await c.stop()


@pytest.mark.parametrize("source_remembers", [True, False])
@on_virtual_time
async def test_a_stream_given_up_waits_for_the_agents_to_finish(
    tmp_path: Path, source_remembers: bool
) -> None:
    c = await booted(tmp_path, stall_timeout_s=1.0)
    vm_id = await c.vm("web1")
    before = c.app.get_vm("web1").lease_generation
    requests = migrations_to(c, "node1")
    intercept(c.agent("node1"), "migrate_vm", quiet_streams(reattach_too=False))
    if not source_remembers:
        intercept(c.agent("node1"), "follow_migration", forgetting)
    job, migration = await c.app.migrate_vm("web1", "node2")
    job = await c.finished(job)
    assert [r.reattach for r in requests] == [False, True]
    if source_remembers:
        # Followed again by its id: it ends with the source's figures.
        assert job.state is JobState.COMPLETED and "moved live to node2" in job.message, job.error
        outcome = source_outcome(c, "node1", migration.id)
        assert isinstance(outcome, MigrationProgress)
        assert c.app.get_migration(migration.id).duration_ms == outcome.duration_ms > 0
    else:
        assert job.state is JobState.COMPLETED and "ended unobserved" in job.message, job.error
    assert c.app.get_migration(migration.id).state is MigrationState.COMPLETED
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.lease_generation, vm.migration_id) == ("node2", before + 1, None)
    assert c.running(vm_id) == ["node2"]
    await c.stop()


@on_virtual_time
async def test_a_fallback_saves_a_vm_whose_source_cannot_be_asked(tmp_path: Path) -> None:
    c = await booted(tmp_path, no_converge="quick")
    busy = Workload(dirty_rate_mb_per_s=2 * BANDWIDTH_MB_PER_S)
    vm_id = await c.vm("busy1", memory_mb=BUSY_MB, workload=busy)
    job, _ = await c.app.migrate_vm("busy1", "node2")
    intercept(c.agent("node1"), "get_vm", silent_about_vms)  # it still saves, but says nothing of its VMs
    job = await c.finished(job)
    assert job.state is JobState.COMPLETED, job.error
    vm = c.app.get_vm("busy1")
    assert (vm.host, vm.state) == ("node2", VmState.RUNNING)
    assert c.on_agent("node1", vm_id) is None and c.running(vm_id) == ["node2"]
    await c.stop()


@on_virtual_time
async def test_a_quick_migration_stops_when_a_failover_marks_its_vm(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    vm_id = await c.vm("q1")
    intercept(c.agent("node1"), "operate", slow_saves(0.4))
    job, migration = await c.app.migrate_vm("q1", "node2", quick=True)
    await eventually(
        lambda: c.app.get_migration(migration.id).phase is MigrationPhase.SAVING, "the source saves the VM"
    )
    failover, marked = failover_of(c, "node1")
    assert [vm.id for vm in marked] == [vm_id]
    job = await c.finished(job)
    assert job.state is JobState.FAILED and "failover" in job.error, job.error
    assert c.on_agent("node2", vm_id) is None  # no take-over behind the failover's back
    await failover.restart_all("node1", marked)
    vm = c.app.get_vm("q1")
    assert vm.state is VmState.RUNNING and vm.lease_generation == migration.lease_generation + 1
    assert [h for h in ("node2", "node3") if c.on_agent(h, vm_id) is not None] == [vm.host]
    assert c.running(vm_id) == [vm.host]
    await c.stop()


@on_virtual_time
async def test_a_restart_during_the_save_restores_the_vm_on_its_source(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    vm_id = await c.vm("q1")
    intercept(c.agent("node1"), "operate", slow_saves(0.5))
    job, migration = await c.app.migrate_vm("q1", "node2", quick=True)
    await c.restart_during(migration, MigrationPhase.SAVING)  # the save goes on in the agent
    await asyncio.wait_for(c.app.migrations.recover(), 30.0)
    assert c.app.get_migration(migration.id).state is MigrationState.FAILED
    ended = c.app.jobs.get(job.id)
    assert ended.state is JobState.FAILED
    assert "manager restarted during the quick migration" in ended.error and "stays on node1" in ended.error
    vm = c.app.get_vm("q1")
    assert (vm.host, vm.state, vm.migration_id) == ("node1", VmState.RUNNING, None)
    restored = c.on_agent("node1", vm_id)
    assert restored is not None and restored.state is PowerState.RUNNING
    assert c.on_agent("node2", vm_id) is None
    await c.stop()


@on_virtual_time
async def test_a_crash_after_the_stream_still_concludes_the_migration(tmp_path: Path) -> None:
    c = await booted(tmp_path)
    vm_id = await c.vm("web1")

    async def crash(*args: Any) -> str:
        raise RuntimeError("crashed while recording the move")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(c.app.migrations.live, "done", crash)
        job, migration = await c.app.migrate_vm("web1", "node2")
        job = await c.finished(job)
    assert job.state is JobState.COMPLETED, job.error
    assert c.app.get_migration(migration.id).state is MigrationState.COMPLETED
    vm = c.app.get_vm("web1")
    assert (vm.host, vm.state, vm.migration_id) == ("node2", VmState.RUNNING, None)
    assert c.running(vm_id) == ["node2"]
    await c.stop()


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
