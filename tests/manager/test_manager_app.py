"""The application over the in-memory store and the real agents, in process on virtual
time (havm.scenario.sim_agent): no processes, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from havm.contract.topology import parse_topology
from havm.scenario.sim_agent import SimAgents, intercept, on_virtual_time
from havm.v1 import common_pb2, manager_pb2
from manager.adapters.memory_store import MemoryStore
from manager.adapters.proto_mapping import cluster_to_proto, vm_to_proto
from manager.app.jobs import JobBook, JobHandle
from manager.app.manager import ManagerApp
from manager.core.capacity import Overcommit
from manager.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from manager.core.model import (
    CreateVmCommand,
    Inventory,
    JobRecord,
    ReportedVm,
    VmOperation,
    Workload,
)
from manager.core.settings import Settings
from manager.core.states import ClusterState, HostState, JobState, VmState
from node_agent.core.power import PowerState

DEFAULT = Path(__file__).resolve().parents[2] / "havm" / "cli" / "default_topology.yaml"
GIB = 1024**3


async def setup(tmp_path: Path) -> tuple[ManagerApp, SimAgents, MemoryStore]:
    """The default topology's real agents on virtual time, and the app over them."""
    topology = parse_topology(yaml.safe_load(DEFAULT.read_text()))
    loop = asyncio.get_running_loop()
    sim = SimAgents(loop, topology, tmp_path)  # type: ignore[arg-type]
    await sim.start()
    store = MemoryStore()
    app = ManagerApp(store, sim.client(), Settings(), monotonic=loop.time)
    app.load(sim.topology)
    await app.refresher.refresh_all()
    return app, sim, store


def agent_state(sim: SimAgents, host: str | None, vm_id: str) -> PowerState:
    """What the VM's agent says of it."""
    return sim.vm_host(host or "").get_vm(vm_id).state


def command(name: str, **kw: object) -> CreateVmCommand:
    fields: dict = dict(
        name=name,
        memory_mb=1024,
        cpus=0,
        disk_gb=0,
        highly_available=True,
        host=None,
        storage=None,
        networks=(),
        workload=Workload(),
        no_start=False,
    )
    fields.update(kw)
    return CreateVmCommand(**fields)


async def run(app: ManagerApp, job: JobRecord) -> list[JobRecord]:
    return [j async for j in app.watch_job(job.id)]


@on_virtual_time
async def test_create_streams_progress_to_completion(tmp_path: Path) -> None:
    app, sim, _ = await setup(tmp_path)
    job, vm = app.create_vm(command("web1"))
    assert vm.cpus == 1 and vm.disk_gb == 20 and vm.host and vm.host.startswith("node")
    seen = await run(app, job)
    assert seen[0].state is JobState.RUNNING and seen[-1].state is JobState.COMPLETED
    assert len(seen) >= 3 and seen[-1].progress == 100
    assert app.get_vm("web1").state is VmState.RUNNING
    assert agent_state(sim, vm.host, vm.id) is PowerState.RUNNING


@on_virtual_time
async def test_operations_on_one_vm_are_serialized(tmp_path: Path) -> None:
    app, _, _ = await setup(tmp_path)
    job, _ = app.create_vm(command("web1"))
    await run(app, job)
    pause = app.operate_vm("web1", VmOperation.PAUSE)
    # Accepted against the state now; checked again when its turn comes.
    again = app.operate_vm("web1", VmOperation.PAUSE)
    first, second = await asyncio.gather(run(app, pause), run(app, again))
    assert first[-1].state is JobState.COMPLETED
    assert second[-1].state is JobState.FAILED and "VM web1 is paused" in second[-1].error


@on_virtual_time
async def test_silent_host_then_missing_vm(tmp_path: Path) -> None:
    app, sim, store = await setup(tmp_path)
    job, vm = app.create_vm(command("solo", highly_available=False))
    await run(app, job)
    assert vm.host == "standalone1"
    sim.crash("standalone1")  # its agent is gone: connections are refused
    await app.refresher.refresh(["standalone1"])
    host = store.get_host("standalone1")
    assert host is not None and host.state is HostState.NOT_RESPONDING
    assert "refused" in host.state_reason
    assert app.get_vm("solo").state is VmState.UNKNOWN
    with pytest.raises(FailedPreconditionError):
        app.operate_vm("solo", VmOperation.SHUTDOWN)
    sim.start_host("standalone1")
    await asyncio.sleep(0.5)  # it serves again
    # Deleted on the host behind the manager's back, through the agent's own API.
    agent, address = sim.client(), sim.address("standalone1")
    if sim.vm_host("standalone1").get_vm(vm.id).state is not PowerState.STOPPED:
        await agent.operate_vm("standalone1", address, vm.id, VmOperation.TURN_OFF)
    await agent.delete_vm("standalone1", address, vm.id)
    await app.refresher.refresh(["standalone1"])
    assert app.get_vm("solo").state is VmState.MISSING
    deleted = app.delete_vm("solo")
    assert (await run(app, deleted))[-1].state is JobState.COMPLETED
    assert app.list_vms() == []


@on_virtual_time
async def test_refresh_job_fails_when_no_host_answers(tmp_path: Path) -> None:
    app, sim, _ = await setup(tmp_path)
    for node in ("node1", "node2", "node3", "node4"):
        sim.crash(node)
    seen = await run(app, app.refresh("cluster1"))
    assert seen[-1].state is JobState.FAILED and "no host answered" in seen[-1].error
    partial = await run(app, app.refresh(""))
    assert partial[-1].state is JobState.COMPLETED
    assert "2 of 6 host(s) ok" in partial[-1].message


@on_virtual_time
async def test_jobs_left_running_fail_on_load(tmp_path: Path) -> None:
    app, sim, store = await setup(tmp_path)
    now = datetime.now(UTC)
    store.put_job(JobRecord("old", "refresh", "", JobState.RUNNING, 40, "Refreshing", "", now, now))
    app.load(sim.topology)
    job = store.get_job("old")
    assert job is not None and job.state is JobState.FAILED
    assert job.error == "the manager restarted while this job ran"
    assert app.status().jobs_running == 0


@on_virtual_time
async def test_an_interrupted_create_ends_as_what_its_host_has(tmp_path: Path) -> None:
    """A create the manager was carrying out when it died ends, after a restart, as
    completed when the host has the VM and failed when nothing was created."""
    app, sim, store = await setup(tmp_path)
    job, vm = app.create_vm(command("kept", host="node1", no_start=True))
    assert (await run(app, job))[-1].state is JobState.COMPLETED
    now = datetime.now(UTC)
    # What a manager killed in the middle of each create leaves in its store.
    store.put_job(replace(store.get_job(job.id), state=JobState.RUNNING))  # type: ignore[arg-type]
    store.put_job(JobRecord("lost", "create_vm", "lost", JobState.RUNNING, 10, "Creating", "", now, now))
    store.put_vm(replace(vm, id="lost-id", name="lost", state=VmState.CREATING))
    again = ManagerApp(store, sim.client(), Settings(), monotonic=asyncio.get_running_loop().time)
    again.load(sim.topology)
    assert store.get_job(job.id).state is JobState.RUNNING  # type: ignore[union-attr]
    await again.interrupted_creates.conclude()
    kept = store.get_job(job.id)
    assert kept is not None and kept.state is JobState.COMPLETED
    assert kept.message.startswith("VM kept exists on host node1 (stopped); the manager restarted")
    lost = store.get_job("lost")
    assert lost is not None and lost.state is JobState.FAILED
    assert lost.error == "the manager restarted before VM lost was created: nothing was created"
    assert store.get_vm("lost-id") is None


async def test_a_resumable_job_outlives_its_process_until_adopted() -> None:
    store = MemoryStore()
    book = JobBook(store, lambda: datetime.now(UTC))
    release = asyncio.Event()

    async def work(handle: JobHandle) -> str:
        await release.wait()
        return "never"

    kept = book.start("migrate_vm", "web1", "Migrating", work, resumable=True)
    plain = book.start("create_vm", "web2", "Creating", work)
    await asyncio.sleep(0)
    await book.shutdown()
    assert book.get(kept.id).state is JobState.RUNNING
    assert book.get(plain.id).error == "the manager stopped while this job ran"

    after = JobBook(store, lambda: datetime.now(UTC))
    assert after.fail_interrupted(settled_later={kept.id}) == 0
    handle = after.adopt(kept.id)
    handle.progress(50, "Settling")
    handle.end(None, "VM web1 runs on node2")
    handle.end("too late")  # the first end stands
    ended = after.get(kept.id)
    assert (ended.state, ended.message, ended.error, ended.progress) == (
        JobState.COMPLETED,
        "VM web1 runs on node2",
        "",
        100,
    )
    with pytest.raises(NotFoundError):
        after.adopt("no-such-job")


def break_disks_after_create(sim: SimAgents) -> None:
    """Every VM created on a node gets a virtual disk that cannot be opened (a directory
    where its disk file was): the real agent then fails its start and records it failed."""
    for node in ("node1", "node2", "node3", "node4"):
        vm_host = sim.vm_host(node)

        def breaking(create: Callable[..., Any], vm_host: Any = vm_host) -> Callable[..., Any]:
            def create_vm(spec: Any, *args: Any, **kwargs: Any) -> Any:
                view = create(spec, *args, **kwargs)
                disk = vm_host.hosted(spec.id).disk
                disk.unlink()
                disk.mkdir()
                return view

            return create_vm

        intercept(vm_host, "create_vm", breaking)


@on_virtual_time
async def test_a_failed_vm_is_recorded_failed_and_can_be_turned_off_and_deleted(tmp_path: Path) -> None:
    app, sim, store = await setup(tmp_path)
    break_disks_after_create(sim)
    job, vm = app.create_vm(command("f1"))
    assert (await run(app, job))[-1].state is JobState.FAILED
    assert app.get_vm("f1").state is VmState.FAILED  # what the host says, not the state before
    assert "virtual disk cannot be opened" in app.get_vm("f1").reason
    with pytest.raises(FailedPreconditionError, match="^VM f1 is failed: it cannot be shut down "):
        app.operate_vm("f1", VmOperation.SHUTDOWN)
    assert (await run(app, app.operate_vm("f1", VmOperation.TURN_OFF)))[-1].state is JobState.COMPLETED
    assert app.get_vm("f1").state is VmState.STOPPED
    assert agent_state(sim, vm.host, vm.id) is PowerState.STOPPED
    # Failed again behind the manager's back (a start through the agent's own API).
    with pytest.raises(FailedPreconditionError):
        await sim.client().operate_vm(vm.host or "", sim.address(vm.host or ""), vm.id, VmOperation.START)
    assert agent_state(sim, vm.host, vm.id) is PowerState.FAILED
    await app.refresher.refresh_all()
    assert (await run(app, app.delete_vm("f1")))[-1].state is JobState.COMPLETED
    assert store.get_vm(vm.id) is None
    assert vm.id not in {v.spec.id for v in sim.vm_host(vm.host or "").list_vms()}


@on_virtual_time
async def test_an_operation_failure_on_a_silent_host_records_unknown(tmp_path: Path) -> None:
    app, sim, _ = await setup(tmp_path)
    job, vm = app.create_vm(command("u1", no_start=True))
    await run(app, job)
    host = vm.host or ""

    def dying(operate: Callable[..., Any]) -> Callable[..., Any]:
        async def operate_vm(*args: Any) -> Any:
            sim.crash(host)  # the host dies during the call: the connection is reset
            await asyncio.sleep(1)

        return operate_vm

    intercept(sim.vm_host(host), "operate", dying)
    assert (await run(app, app.operate_vm("u1", VmOperation.START)))[-1].state is JobState.FAILED
    assert app.get_vm("u1").state is VmState.UNKNOWN


@pytest.mark.parametrize(
    ("field", "value", "sentence"),
    [
        (
            "dirty_rate_mb_per_s",
            float("inf"),
            "workload.dirty_rate_mb_per_s: must be a finite number from 0 to 10000, got inf",
        ),
        (
            "journal_writes_per_s",
            float("nan"),
            "workload.journal_writes_per_s: must be a finite number from 0 to 10000, got nan",
        ),
        (
            "dirty_rate_mb_per_s",
            10000.5,
            "workload.dirty_rate_mb_per_s: must be a finite number from 0 to 10000, got 10000.5",
        ),
        (
            "journal_writes_per_s",
            -1.0,
            "workload.journal_writes_per_s: must be a finite number from 0 to 10000, got -1.0",
        ),
    ],
)
@on_virtual_time
async def test_guest_rates_must_be_finite_and_bounded(
    tmp_path: Path, field: str, value: float, sentence: str
) -> None:
    app, _, store = await setup(tmp_path)
    with pytest.raises(InvalidArgumentError) as info:
        app.create_vm(command("r1", workload=Workload(**{field: value})))
    assert info.value.message == sentence
    job, _ = app.create_vm(command("r2", workload=Workload(**{field: 10000.0}), no_start=True))
    assert (await run(app, job))[-1].state is JobState.COMPLETED


@pytest.mark.parametrize(
    ("fields", "sentence"),
    [
        ({"memory_mb": 2**31 - 1}, "memory_mb: must be at most 2097152, got 2147483647"),
        ({"cpus": 65}, "cpus: must be at most 64, got 65"),
        ({"disk_gb": 65537}, "disk_gb: must be at most 65536, got 65537"),
    ],
)
@on_virtual_time
async def test_vm_sizes_are_bounded(tmp_path: Path, fields: dict, sentence: str) -> None:
    app, _, _ = await setup(tmp_path)
    with pytest.raises(InvalidArgumentError) as info:
        app.create_vm(command("big", **fields))
    assert info.value.message == sentence


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        ("v" * 5000, "name: must be at most 63 characters, got 5000"),
        ("web 1", "name: must be a name matching [A-Za-z0-9][A-Za-z0-9_.-]*, got 'web 1'"),
    ],
)
@on_virtual_time
async def test_vm_names_are_bounded(tmp_path: Path, name: str, sentence: str) -> None:
    app, _, _ = await setup(tmp_path)
    with pytest.raises(InvalidArgumentError) as info:
        app.create_vm(command(name))
    assert info.value.message == sentence
    job, _ = app.create_vm(command("v" * 63, no_start=True))
    assert (await run(app, job))[-1].state is JobState.COMPLETED


@on_virtual_time
async def test_more_vcpus_than_cores_is_refused_at_placement(tmp_path: Path) -> None:
    app, _, store = await setup(tmp_path)
    cores = store.list_hosts()[0].cpu.cores
    with pytest.raises(ResourceExhaustedError, match=f"has {cores} cores, VM needs {cores + 1} vCPUs"):
        app.create_vm(command("wide", cpus=cores + 1))
    assert store.get_vm_by_name("wide") is None


@on_virtual_time
async def test_a_create_that_fails_before_the_agent_answers_leaves_no_record(tmp_path: Path) -> None:
    app, _, store = await setup(tmp_path)
    agents = app.vms._agents  # the app's agent port (the AgentService client)

    async def crash(*args: object) -> ReportedVm:
        raise RuntimeError("bug in the port")

    agents.create_vm = crash  # type: ignore[method-assign]
    job, vm = app.create_vm(command("o1"))
    assert (await run(app, job))[-1].state is JobState.FAILED
    assert store.get_vm(vm.id) is None
    # The host goes away between placement and the job: `_address` raises in the job.
    del agents.create_vm  # the client's own method again
    job, vm = app.create_vm(command("o2"))
    host = store.get_host(vm.host or "")
    assert host is not None
    store.put_host(replace(host, state=HostState.NOT_RESPONDING, state_reason="gone"))
    assert (await run(app, job))[-1].state is JobState.FAILED
    assert store.get_vm(vm.id) is None


@on_virtual_time
async def test_refresh_does_not_overwrite_a_record_changed_while_it_waited(tmp_path: Path) -> None:
    app, sim, store = await setup(tmp_path)
    agents = app.vms._agents  # the app's agent port (the AgentService client)
    job, vm = app.create_vm(command("s1", no_start=True))
    await run(app, job)
    host = vm.host or ""
    get_inventory = agents.get_inventory
    stale = await get_inventory(host, sim.address(host))  # says s1 is stopped
    gate = asyncio.Event()
    held: list[str] = []

    async def slow_inventory(name: str, address: str) -> Inventory:
        # Only the refresh's call waits; the job's own look at the host's memory does not.
        if name == host and not held:
            held.append(name)
            await gate.wait()
            return stale
        return await get_inventory(name, address)

    agents.get_inventory = slow_inventory  # type: ignore[method-assign]
    refresh = asyncio.create_task(app.refresher.refresh([host]))
    await asyncio.sleep(0.01)
    await run(app, app.operate_vm("s1", VmOperation.START))  # the job ends before the inventory
    gate.set()
    await refresh
    assert app.get_vm("s1").state is VmState.RUNNING
    assert agent_state(sim, host, vm.id) is PowerState.RUNNING


@on_virtual_time
async def test_an_interrupted_create_is_kept_or_removed_on_refresh(tmp_path: Path) -> None:
    app, _, store = await setup(tmp_path)
    job, kept = app.create_vm(command("k1", no_start=True))
    await run(app, job)
    # As a manager killed after writing the record leaves it: `creating`, no job running.
    store.put_vm(replace(kept, state=VmState.CREATING))
    ghost = replace(kept, id="ghost-id", name="g1", state=VmState.CREATING)
    store.put_vm(ghost)
    assert vm_to_proto(ghost).state == common_pb2.VM_STATE_STARTING
    await app.refresher.refresh_all()
    assert app.get_vm("k1").state is VmState.STOPPED
    assert store.get_vm("ghost-id") is None


@on_virtual_time
async def test_cluster_state_is_decided_in_core(tmp_path: Path) -> None:
    app, _, _ = await setup(tmp_path)
    cluster = app.list_clusters()[0]
    report = app.cluster_report(cluster)
    assert report.state is ClusterState.OK
    assert cluster_to_proto(cluster, report).state == manager_pb2.CLUSTER_STATE_OK
    over = replace(report, overcommit=Overcommit(("node1",), ("v1",), "if node1 failed ..."))
    wire = cluster_to_proto(cluster, over)
    assert wire.state == manager_pb2.CLUSTER_STATE_OVERCOMMITTED
    assert list(wire.overcommit.failed_nodes) == ["node1"] and list(wire.overcommit.unplaced_vms) == ["v1"]


@on_virtual_time
async def test_a_host_removed_from_the_topology_is_forgotten_unless_it_has_vms(tmp_path: Path) -> None:
    app, _, store = await setup(tmp_path)
    job, vm = app.create_vm(command("v1", highly_available=False, no_start=True))
    await run(app, job)
    data = yaml.safe_load(DEFAULT.read_text())
    data["hosts"] = [h for h in data["hosts"] if h["name"] != vm.host]
    for lun in data["clusters"][0]["luns"]:
        lun["visible_to"] = [n for n in lun.get("visible_to", data["clusters"][0]["nodes"]) if n != vm.host]
    smaller = parse_topology(data)
    with pytest.raises(FailedPreconditionError) as info:
        app.load(smaller)
    assert info.value.message == (
        f"topology: host {vm.host} was removed but VM v1 is still recorded on it; move or delete them first"
    )
    assert store.get_host(vm.host or "") is not None
    await run(app, app.delete_vm("v1"))
    app.load(smaller)
    assert store.get_host(vm.host or "") is None


@on_virtual_time
async def test_status_counts_running_jobs_through_the_job_book(tmp_path: Path) -> None:
    app, _, _ = await setup(tmp_path)
    job, _ = app.create_vm(command("j1"))
    assert app.status().jobs_running == app.jobs.running_count() == 1
    await run(app, job)
    assert app.status().jobs_running == 0
