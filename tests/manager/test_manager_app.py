"""The application over the in-memory store and an in-memory agent port: no processes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

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
    UnavailableError,
)
from manager.core.model import (
    CreateVmCommand,
    DiskInfo,
    Inventory,
    JobRecord,
    NetworkInfo,
    ReportedVm,
    StorageKind,
    VmOperation,
    VmRecord,
    VolumeInfo,
    Workload,
)
from manager.core.settings import Settings
from manager.core.states import ClusterState, HostState, JobState, VmState
from manager.core.topology import Topology, parse_topology

DEFAULT = Path(__file__).resolve().parents[2] / "havm" / "cli" / "default_topology.yaml"
GIB = 1024**3
NEXT = {
    VmOperation.START: VmState.RUNNING,
    VmOperation.SHUTDOWN: VmState.STOPPED,
    VmOperation.TURN_OFF: VmState.STOPPED,
    VmOperation.SAVE: VmState.SAVED,
    VmOperation.RESTORE: VmState.RUNNING,
    VmOperation.PAUSE: VmState.PAUSED,
    VmOperation.RESUME: VmState.RUNNING,
}


class MemoryAgents:
    """Every host's agent in one dict; a host in `silent` does not answer."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.vms: dict[str, dict[str, ReportedVm]] = {h.name: {} for h in topology.hosts}
        self.silent: set[str] = set()

    def _check(self, host: str) -> None:
        if host in self.silent:
            raise UnavailableError(f"agent of host {host} is unavailable (connection refused)")

    async def get_inventory(self, host: str, address: str) -> Inventory:
        self._check(host)
        spec = self.topology.host(host)
        return Inventory(
            host_name=host,
            cluster=spec.cluster,
            profile=spec.profile,
            cpu=spec.cpu,
            memory_mb=spec.memory_mb,
            memory_free_mb=spec.memory_mb - spec.host_reserve_mb,
            disks=tuple(DiskInfo(d.name, d.capacity_gb * GIB, d.capacity_gb * GIB) for d in spec.disks),
            networks=tuple(
                NetworkInfo(n.name, "virtual_network", n.bound_to, n.vlan_id) for n in spec.networks
            ),
            volumes=tuple(
                VolumeInfo(v.name, StorageKind(v.kind), v.capacity_gb * GIB, v.capacity_gb * GIB)
                for v in self.topology.volumes_visible_to(host)
            ),
            boot_id="b",
            vms=tuple(self.vms[host].values()),
        )

    async def get_vm(self, host: str, address: str, vm_id: str) -> ReportedVm:
        self._check(host)
        return self.vms[host][vm_id]

    async def create_vm(self, host: str, address: str, vm: VmRecord) -> ReportedVm:
        self._check(host)
        await asyncio.sleep(0)
        reported = ReportedVm(
            vm.id,
            vm.name,
            VmState.STOPPED,
            vm.memory_mb,
            vm.cpus,
            vm.disk_gb,
            vm.storage,
            vm.networks,
            vm.highly_available,
            vm.workload,
        )
        self.vms[host][vm.id] = reported
        return reported

    async def operate_vm(self, host: str, address: str, vm_id: str, operation: VmOperation) -> ReportedVm:
        self._check(host)
        await asyncio.sleep(0)
        self.vms[host][vm_id] = replace(self.vms[host][vm_id], state=NEXT[operation])
        return self.vms[host][vm_id]

    async def delete_vm(self, host: str, address: str, vm_id: str) -> None:
        self._check(host)
        del self.vms[host][vm_id]

    async def close(self) -> None:
        pass


@pytest.fixture
async def setup() -> tuple[ManagerApp, MemoryAgents, MemoryStore]:
    topology = parse_topology(yaml.safe_load(DEFAULT.read_text()))
    topology = topology.with_addresses(
        {h.name: f"127.0.0.1:{5000 + i}" for i, h in enumerate(topology.hosts)}
    )
    agents = MemoryAgents(topology)
    store = MemoryStore()
    app = ManagerApp(store, agents, Settings())
    app.load(topology)
    await app.refresher.refresh_all()
    return app, agents, store


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


async def test_create_streams_progress_to_completion(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, agents, _ = setup
    job, vm = app.create_vm(command("web1"))
    assert vm.cpus == 1 and vm.disk_gb == 20 and vm.host and vm.host.startswith("node")
    seen = await run(app, job)
    assert seen[0].state is JobState.RUNNING and seen[-1].state is JobState.COMPLETED
    assert len(seen) >= 3 and seen[-1].progress == 100
    assert app.get_vm("web1").state is VmState.RUNNING
    assert agents.vms[vm.host][vm.id].state is VmState.RUNNING


async def test_operations_on_one_vm_are_serialized(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, _, _ = setup
    job, _ = app.create_vm(command("web1"))
    await run(app, job)
    pause = app.operate_vm("web1", VmOperation.PAUSE)
    # Accepted against the state now; checked again when its turn comes.
    again = app.operate_vm("web1", VmOperation.PAUSE)
    first, second = await asyncio.gather(run(app, pause), run(app, again))
    assert first[-1].state is JobState.COMPLETED
    assert second[-1].state is JobState.FAILED and "VM web1 is paused" in second[-1].error


async def test_silent_host_then_missing_vm(setup: tuple[ManagerApp, MemoryAgents, MemoryStore]) -> None:
    app, agents, store = setup
    job, vm = app.create_vm(command("solo", highly_available=False))
    await run(app, job)
    assert vm.host == "standalone1"
    agents.silent.add("standalone1")
    await app.refresher.refresh(["standalone1"])
    host = store.get_host("standalone1")
    assert host is not None and host.state is HostState.NOT_RESPONDING
    assert "connection refused" in host.state_reason
    assert app.get_vm("solo").state is VmState.UNKNOWN
    with pytest.raises(FailedPreconditionError):
        app.operate_vm("solo", VmOperation.SHUTDOWN)
    agents.silent.clear()
    del agents.vms["standalone1"][vm.id]
    await app.refresher.refresh(["standalone1"])
    assert app.get_vm("solo").state is VmState.MISSING
    deleted = app.delete_vm("solo")
    assert (await run(app, deleted))[-1].state is JobState.COMPLETED
    assert app.list_vms() == []


async def test_refresh_job_fails_when_no_host_answers(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, agents, _ = setup
    agents.silent.update({"node1", "node2", "node3", "node4"})
    seen = await run(app, app.refresh("cluster1"))
    assert seen[-1].state is JobState.FAILED and "no host answered" in seen[-1].error
    partial = await run(app, app.refresh(""))
    assert partial[-1].state is JobState.COMPLETED
    assert "1 of 5 host(s) ok" in partial[-1].message


async def test_jobs_left_running_fail_on_load(setup: tuple[ManagerApp, MemoryAgents, MemoryStore]) -> None:
    app, agents, store = setup
    now = datetime.now(UTC)
    store.put_job(JobRecord("old", "create_vm", "x", JobState.RUNNING, 40, "Creating", "", now, now))
    app.load(agents.topology)
    job = store.get_job("old")
    assert job is not None and job.state is JobState.FAILED
    assert job.error == "the manager restarted while this job ran"
    assert app.status().jobs_running == 0


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


class FailingStart(MemoryAgents):
    """START fails on the host and leaves the VM failed, as a crashing guest does."""

    async def operate_vm(self, host: str, address: str, vm_id: str, operation: VmOperation) -> ReportedVm:
        if operation is VmOperation.START:
            self.vms[host][vm_id] = replace(
                self.vms[host][vm_id], state=VmState.FAILED, reason="guest crashed"
            )
            raise FailedPreconditionError("the guest crashed while booting")
        return await super().operate_vm(host, address, vm_id, operation)


async def test_a_failed_vm_is_recorded_failed_and_can_be_turned_off_and_deleted(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, memory, store = setup
    agents = FailingStart(memory.topology)
    app.vms._agents = agents
    job, vm = app.create_vm(command("f1"))
    assert (await run(app, job))[-1].state is JobState.FAILED
    assert app.get_vm("f1").state is VmState.FAILED  # what the host says, not the state before
    with pytest.raises(FailedPreconditionError, match="^VM f1 is failed: it cannot be shut down "):
        app.operate_vm("f1", VmOperation.SHUTDOWN)
    assert (await run(app, app.operate_vm("f1", VmOperation.TURN_OFF)))[-1].state is JobState.COMPLETED
    assert app.get_vm("f1").state is VmState.STOPPED
    agents.vms[vm.host or ""][vm.id] = replace(agents.vms[vm.host or ""][vm.id], state=VmState.FAILED)
    await app.refresher.refresh_all()
    assert (await run(app, app.delete_vm("f1")))[-1].state is JobState.COMPLETED
    assert store.get_vm(vm.id) is None


async def test_an_operation_failure_on_a_silent_host_records_unknown(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, agents, _ = setup
    job, vm = app.create_vm(command("u1", no_start=True))
    await run(app, job)

    async def refuse(*args: object) -> ReportedVm:
        agents.silent.add(vm.host or "")
        raise UnavailableError("connection reset")

    agents.operate_vm = refuse  # type: ignore[method-assign]
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
async def test_guest_rates_must_be_finite_and_bounded(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore], field: str, value: float, sentence: str
) -> None:
    app, _, store = setup
    with pytest.raises(InvalidArgumentError) as info:
        app.create_vm(command("r1", workload=Workload(**{field: value})))
    assert info.value.message == sentence
    app.create_vm(command("r2", workload=Workload(**{field: 10000.0})))


@pytest.mark.parametrize(
    ("fields", "sentence"),
    [
        ({"memory_mb": 2**31 - 1}, "memory_mb: must be at most 2097152, got 2147483647"),
        ({"cpus": 65}, "cpus: must be at most 64, got 65"),
        ({"disk_gb": 65537}, "disk_gb: must be at most 65536, got 65537"),
    ],
)
async def test_vm_sizes_are_bounded(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore], fields: dict, sentence: str
) -> None:
    app, _, _ = setup
    with pytest.raises(InvalidArgumentError) as info:
        app.create_vm(command("big", **fields))
    assert info.value.message == sentence


async def test_more_vcpus_than_cores_is_refused_at_placement(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, _, store = setup
    cores = store.list_hosts()[0].cpu.cores
    with pytest.raises(ResourceExhaustedError, match=f"has {cores} cores, VM needs {cores + 1} vCPUs"):
        app.create_vm(command("wide", cpus=cores + 1))
    assert store.get_vm_by_name("wide") is None


async def test_a_create_that_fails_before_the_agent_answers_leaves_no_record(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, agents, store = setup

    async def crash(*args: object) -> ReportedVm:
        raise RuntimeError("bug in the port")

    agents.create_vm = crash  # type: ignore[method-assign]
    job, vm = app.create_vm(command("o1"))
    assert (await run(app, job))[-1].state is JobState.FAILED
    assert store.get_vm(vm.id) is None
    # The host goes away between placement and the job: `_address` raises in the job.
    agents.create_vm = MemoryAgents.create_vm.__get__(agents)  # type: ignore[method-assign]
    job, vm = app.create_vm(command("o2"))
    host = store.get_host(vm.host or "")
    assert host is not None
    store.put_host(replace(host, state=HostState.NOT_RESPONDING, state_reason="gone"))
    assert (await run(app, job))[-1].state is JobState.FAILED
    assert store.get_vm(vm.id) is None


async def test_refresh_does_not_overwrite_a_record_changed_while_it_waited(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, agents, store = setup
    job, vm = app.create_vm(command("s1", no_start=True))
    await run(app, job)
    host = vm.host or ""
    stale = await agents.get_inventory(host, "")  # says s1 is stopped
    gate = asyncio.Event()
    held: list[str] = []

    async def slow_inventory(name: str, address: str) -> Inventory:
        # Only the refresh's call waits; the job's own look at the host's memory does not.
        if name == host and not held:
            held.append(name)
            await gate.wait()
            return stale
        return await MemoryAgents.get_inventory(agents, name, address)

    agents.get_inventory = slow_inventory  # type: ignore[method-assign]
    refresh = asyncio.create_task(app.refresher.refresh([host]))
    await asyncio.sleep(0.01)
    await run(app, app.operate_vm("s1", VmOperation.START))  # the job ends before the inventory
    gate.set()
    await refresh
    assert app.get_vm("s1").state is VmState.RUNNING


async def test_an_interrupted_create_is_kept_or_removed_on_refresh(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, agents, store = setup
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


async def test_cluster_state_is_decided_in_core(setup: tuple[ManagerApp, MemoryAgents, MemoryStore]) -> None:
    app, _, _ = setup
    cluster = app.list_clusters()[0]
    report = app.cluster_report(cluster)
    assert report.state is ClusterState.OK
    assert cluster_to_proto(cluster, report).state == manager_pb2.CLUSTER_STATE_OK
    over = replace(report, overcommit=Overcommit(("node1",), ("v1",), "if node1 failed ..."))
    wire = cluster_to_proto(cluster, over)
    assert wire.state == manager_pb2.CLUSTER_STATE_OVERCOMMITTED
    assert list(wire.overcommit.failed_nodes) == ["node1"] and list(wire.overcommit.unplaced_vms) == ["v1"]


async def test_a_host_removed_from_the_topology_is_forgotten_unless_it_has_vms(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, agents, store = setup
    job, vm = app.create_vm(command("v1", highly_available=False, no_start=True))
    await run(app, job)
    data = yaml.safe_load(DEFAULT.read_text())
    data["hosts"] = [h for h in data["hosts"] if h["name"] != vm.host]
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


async def test_status_counts_running_jobs_through_the_job_book(
    setup: tuple[ManagerApp, MemoryAgents, MemoryStore],
) -> None:
    app, _, _ = setup
    job, _ = app.create_vm(command("j1"))
    assert app.status().jobs_running == app.jobs.running_count() == 1
    await run(app, job)
    assert app.status().jobs_running == 0
