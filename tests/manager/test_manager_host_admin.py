"""Hosts added and removed at runtime, in process over the real agents on virtual time:
the records, the refusals, the capacity callback and a manager restart on the same
database; the failure detector judging an added host; then AddHost and RemoveHost
through the real manager process's gRPC API, over loopback agents.

Every host has its agent running from the start, node5 (a node of cluster1) and solo2
(standalone) among them; the manager's topology names neither, so they join only when
the test adds them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from manager_sim import SimManager, sim_agents
from manager_testkit import CLUSTER_NODES, HOSTS, ManagerProcess, topology_data

from havm.contract.hosts import HostSpec
from havm.contract.topology import Topology, parse_host_entry, parse_topology
from havm.scenario.sim_agent import LoopbackAgent, SimAgents, on_virtual_time
from havm.v1 import common_pb2, manager_pb2, manager_pb2_grpc
from manager.adapters.memory_store import MemoryStore
from manager.adapters.mqtt import Heartbeat
from manager.app.host_admin import HostAdmin
from manager.app.manager import ManagerApp
from manager.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from manager.core.model import (
    CreateVmCommand,
    JobRecord,
    MigrationKind,
    MigrationRecord,
    StorageKind,
    StorageLocation,
    VmOperation,
    Workload,
)
from manager.core.settings import Settings
from manager.core.states import HostState, JobState, MigrationState

SETTINGS = Settings(agent_call_timeout_s=1.0, agent_read_attempts=1)
# The agents' topology: node5 is a node of cluster1, solo2 a standalone host.
AGENTS = topology_data(dict.fromkeys((*HOSTS, "node5", "solo2")), nodes=(*CLUSTER_NODES, "node5"))
DEFAULTS = AGENTS["host_defaults"]


def spec(name: str, address: str, cluster: str | None = "cluster1", **entry: object) -> HostSpec:
    return replace(parse_host_entry({"name": name, "address": address, **entry}, DEFAULTS), cluster=cluster)


def managers_topology(sim: SimAgents) -> Topology:
    """The topology the manager starts from: neither node5 nor solo2."""
    return parse_topology(topology_data({h: sim.address(h) for h in HOSTS}))


class Manager(SimManager):
    """The manager app on a SQLite database, with a host admin that records what the
    capacity service is told."""

    def __init__(self, sim: SimAgents, db: Path) -> None:
        self.capacity: list[str | None] = []
        super().__init__(sim, db, SETTINGS, managers_topology(sim))

    def open(self) -> ManagerApp:
        app = super().open()
        # The app's own service, but telling this test what the capacity service is told.
        self.admin = HostAdmin(
            app.store,
            self.sim.client(self.settings),
            app.jobs,
            app.refresher,
            self.capacity.append,
            lambda: datetime.now(UTC),
        )
        return app

    async def create(self, name: str, host: str, ha: bool = True) -> None:
        command = CreateVmCommand(
            name=name,
            memory_mb=512,
            cpus=1,
            disk_gb=10,
            highly_available=ha,
            host=host,
            storage=None,
            networks=(),
            workload=Workload(),
            no_start=False,
        )
        job, _ = self.app.create_vm(command)
        assert (await self.finished(job)).state is JobState.COMPLETED, job


async def booted(tmp_path: Path) -> Manager:
    m = Manager(await sim_agents(tmp_path, AGENTS), tmp_path / "manager.db")
    await m.app.refresher.refresh_all()
    return m


@on_virtual_time
async def test_an_added_host_joins_its_cluster_and_takes_ha_vms(tmp_path: Path) -> None:
    app = await booted(tmp_path)
    node5 = app.sim.address("node5")
    jobs_before = len(app.app.list_jobs())
    job, host = app.admin.add(spec("node5", node5))
    assert (host.name, host.cluster, host.added_at_runtime) == ("node5", "cluster1", True)
    assert host.state is HostState.NOT_RESPONDING
    assert [v.name for v in host.volumes] == ["Volume1", "lun1"]
    assert app.app.get_cluster("cluster1").nodes == ("node1", "node2", "node3", "node5")

    done = await app.finished(job)
    assert (done.kind, done.target, done.state, done.progress) == (
        "add_host",
        "node5",
        JobState.COMPLETED,
        100,
    )
    assert done.message == "Added host node5 to cluster cluster1"
    assert len(app.app.list_jobs()) == jobs_before + 1
    view = app.app.get_host("node5")
    assert view.host.state is HostState.OK and view.host.added_at_runtime and view.rating > 0
    assert app.capacity == ["cluster1", "cluster1"]  # recorded, then refreshed
    cluster = app.app.get_cluster("cluster1")
    assert "node5" in cluster.visible_to("Volume1") and "node5" in cluster.visible_to("lun1")

    await app.create("web5", "node5")
    vm = app.app.get_vm("web5")
    assert (vm.host, vm.storage) == ("node5", StorageLocation(StorageKind.CSV, "Volume1"))
    assert "web5" in {v.spec.name for v in app.sim.vm_host("node5").list_vms()}
    await app.stop()


@on_virtual_time
async def test_a_standalone_host_can_be_added_too(tmp_path: Path) -> None:
    app = await booted(tmp_path)
    job, host = app.admin.add(spec("solo2", app.sim.address("solo2"), cluster=None, memory_mb=16384))
    assert host.cluster is None and host.volumes == ()
    assert (await app.finished(job)).message == "Added host solo2 to the manager as a standalone host"
    assert app.capacity[-1] is None
    await app.create("db2", "solo2", ha=False)
    assert app.app.get_vm("db2").storage == StorageLocation(StorageKind.LOCAL_DISK, "C")
    assert "db2" in {v.spec.name for v in app.sim.vm_host("solo2").list_vms()}
    await app.stop()


@on_virtual_time
async def test_a_bad_addition_is_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    app = await booted(tmp_path)
    node5 = app.sim.address("node5")
    hosts_before = app.app.list_hosts()
    jobs_before = app.app.list_jobs()
    refused = [
        (spec("node1", node5), AlreadyExistsError, "host node1 already exists"),
        (spec("node5", node5, cluster="cluster9"), NotFoundError, "cluster cluster9 does not exist"),
        (
            spec("node5", node5, profile="hyperv-2008"),
            FailedPreconditionError,
            "host node5 runs hyperv-2008 but cluster cluster1 runs hyperv-2008r2",
        ),
        (spec("node5", None), InvalidArgumentError, "host.address: is required"),  # type: ignore[arg-type]
    ]
    for candidate, error, message in refused:
        with pytest.raises(error) as caught:
            app.admin.add(candidate)
        assert message in caught.value.message
    assert app.app.list_hosts() == hosts_before and app.app.list_jobs() == jobs_before
    assert app.app.get_cluster("cluster1").nodes == ("node1", "node2", "node3")
    assert app.capacity == []
    await app.stop()


@on_virtual_time
async def test_a_host_that_does_not_answer_is_added_not_responding(tmp_path: Path) -> None:
    app = await booted(tmp_path)
    job, _ = app.admin.add(spec("node5", "node9.sim:50051"))  # no agent there
    done = await app.finished(job)
    assert done.state is JobState.FAILED
    assert done.error.startswith("host node5 was added to cluster cluster1 but does not answer: ")
    assert "havm host remove node5" in done.error
    assert app.app.get_host("node5").host.state is HostState.NOT_RESPONDING
    removed = await app.finished(app.admin.remove("node5"))
    assert removed.state is JobState.COMPLETED
    with pytest.raises(NotFoundError):
        app.app.get_host("node5")
    await app.stop()


@on_virtual_time
async def test_removal_is_refused_while_a_vm_or_a_migration_needs_the_host(tmp_path: Path) -> None:
    app = await booted(tmp_path)
    await app.finished(app.admin.add(spec("node5", app.sim.address("node5")))[0])
    await app.create("web5", "node5")
    await app.create("web6", "node5")
    with pytest.raises(FailedPreconditionError) as caught:
        app.admin.remove("node5")
    assert caught.value.message == (
        "host node5 cannot be removed: VMs web5 and web6 are placed on it; move or delete them first"
    )
    for name in ("web5", "web6"):
        await app.finished(app.app.operate_vm(name, VmOperation.TURN_OFF))
        assert (await app.finished(app.app.delete_vm(name))).state is JobState.COMPLETED

    now = datetime.now(UTC)
    queued = MigrationRecord(
        "m1", "id-x", "web1", MigrationKind.LIVE, MigrationState.QUEUED, "node1", "node5", now, now
    )
    app.app.store.put_migration(queued)
    with pytest.raises(FailedPreconditionError, match="a migration of VM web1 to or from it is under way"):
        app.admin.remove("node5")
    app.app.store.put_migration(replace(queued, state=MigrationState.FAILED))

    capacity_before = len(app.capacity)
    job = app.admin.remove("node5")
    assert (job.kind, job.target) == ("remove_host", "node5")
    assert (await app.finished(job)).message == "Removed host node5 from cluster cluster1"
    assert app.capacity[capacity_before:] == ["cluster1"]
    assert "node5" not in {h.host.name for h in app.app.list_hosts()}
    cluster = app.app.get_cluster("cluster1")
    assert cluster.nodes == ("node1", "node2", "node3")
    assert all("node5" not in seen for _, seen in cluster.visibility)
    with pytest.raises(NotFoundError, match="host node5 does not exist"):
        app.admin.remove("node5")
    assert app.sim.vm_host("node5").list_vms() == []  # the deletions reached its agent
    await app.stop()


@on_virtual_time
async def test_an_added_host_survives_a_restart_and_a_removed_topology_host_returns(tmp_path: Path) -> None:
    app = await booted(tmp_path)
    node5 = app.sim.address("node5")
    await app.finished(app.admin.add(spec("node5", node5))[0])
    await app.finished(app.admin.remove("node3"))
    assert app.app.get_cluster("cluster1").nodes == ("node1", "node2", "node5")

    await app.restart()
    node = app.app.get_host("node5").host
    assert node.added_at_runtime and node.cluster == "cluster1" and node.address == node5
    cluster = app.app.get_cluster("cluster1")
    # The topology's nodes first (node3 is back: the topology declares it), then node5.
    assert cluster.nodes == ("node1", "node2", "node3", "node5")
    assert "node5" in cluster.visible_to("Volume1") and "node5" in cluster.visible_to("lun1")
    await app.app.refresher.refresh_all()
    assert app.app.get_host("node5").host.state is HostState.OK
    await app.create("web5", "node5")
    await app.stop()


# --- through the manager process's gRPC API ------------------------------------------------


def host_config(name: str, address: str, **fields: object) -> common_pb2.HostConfig:
    config = common_pb2.HostConfig(
        name=name,
        cluster="cluster1",
        profile=common_pb2.PROFILE_HYPERV_2008R2,
        cpu=common_pb2.Cpu(
            vendor="GenuineIntel", model="Intel Xeon X5570", features=["sse4_2"], cores=8, mhz=2933
        ),
        memory_mb=32768,
        host_reserve_mb=2048,
        disks=[common_pb2.LocalDisk(name="C", capacity_bytes=500 * 1024**3)],
        networks=[common_pb2.Network(name="External", bound_to="nic")],
        address=address,
    )
    for key, value in fields.items():
        setattr(config, key, value)
    return config


@pytest.fixture
async def node5(tmp_path: Path) -> AsyncIterator[LoopbackAgent]:
    """node5's real agent on loopback, on the SAN of the other loopback agents."""
    agent = LoopbackAgent.for_host(
        parse_topology(AGENTS), "node5", tmp_path / "san", tmp_path / "hosts" / "node5"
    )
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


async def test_add_and_remove_host_over_grpc(
    stub: manager_pb2_grpc.ManagerServiceStub, manager: ManagerProcess, node5: LoopbackAgent
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AddHost(manager_pb2.AddHostRequest(host=host_config("node5", node5.address, memory_mb=0)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "host.memory_mb: must be a positive integer, got 0"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AddHost(manager_pb2.AddHostRequest(host=host_config("node1", node5.address)))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

    reply = await stub.AddHost(manager_pb2.AddHostRequest(host=host_config("node5", node5.address)))
    assert (reply.host.name, reply.host.cluster, reply.job.kind) == ("node5", "cluster1", "add_host")
    async for update in stub.WatchJob(manager_pb2.WatchJobRequest(id=reply.job.id)):
        job = update.job
    assert job.state == manager_pb2.JOB_STATE_COMPLETED, job.error
    host = (await stub.GetHost(manager_pb2.GetHostRequest(name="node5"))).host
    assert host.state == manager_pb2.HOST_STATE_OK
    cluster = (await stub.GetCluster(manager_pb2.GetClusterRequest(name="cluster1"))).cluster
    assert list(cluster.nodes) == ["node1", "node2", "node3", "node5"]

    created = await stub.CreateVm(
        manager_pb2.CreateVmRequest(name="web5", memory_mb=256, highly_available=True, host="node5")
    )
    async for update in stub.WatchJob(manager_pb2.WatchJobRequest(id=created.job.id)):
        job = update.job
    assert job.state == manager_pb2.JOB_STATE_COMPLETED, job.error
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RemoveHost(manager_pb2.RemoveHostRequest(name="node5"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "VM web5 is placed on it; move or delete it first" in caught.value.details()

    # The record outlives a kill -9 of the manager.
    manager.kill9()
    await manager.start()
    host = (await stub.GetHost(manager_pb2.GetHostRequest(name="node5"))).host
    assert host.cluster == "cluster1"
    assert node5.vm_host is not None
    assert [v.spec.name for v in node5.vm_host.list_vms()] == ["web5"]


# --- the failure detector judges an added host like any other --------------------------------


class Detecting:
    """The manager's HA service over the real agents on virtual time, hearing the beats
    the test gives for the hosts in `alive`."""

    def __init__(self, sim: SimAgents) -> None:
        self.sim = sim
        loop = asyncio.get_running_loop()
        self.app = ManagerApp(MemoryStore(), sim.client(SETTINGS), SETTINGS, monotonic=loop.time)
        self.app.load(managers_topology(sim))
        self.ha = self.app.enable_ha()
        self.alive = set(HOSTS)

    async def advance(self, seconds: float, step: float = 0.5) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await asyncio.sleep(min(step, end - loop.time()))
            for host in sorted(self.alive):
                self.ha.on_message(Heartbeat(host, "b", 1))
            self.ha.tick()
            await self.ha.idle()

    def state(self, host: str) -> HostState:
        return self.app.get_host(host).host.state

    def detector_events(self, host: str) -> list[str]:
        return [e.detail for e in self.app.events.recent(1000) if e.host == host and e.kind == "detector"]

    async def add(self, host: str) -> JobRecord:
        job, _ = self.app.host_admin.add(spec(host, self.sim.address(host)))
        async for update in self.app.watch_job(job.id):
            job = update
        return job


async def detecting(tmp_path: Path) -> Detecting:
    cluster = Detecting(await sim_agents(tmp_path, AGENTS))
    await cluster.app.refresher.refresh_all()
    cluster.ha.on_connection(True)
    await cluster.advance(10)
    return cluster


@on_virtual_time
async def test_the_detector_fences_an_added_host_that_goes_silent(tmp_path: Path) -> None:
    virtual = await detecting(tmp_path)
    job = await virtual.add("node5")
    assert job.state is JobState.COMPLETED and virtual.state("node5") is HostState.OK
    virtual.alive.add("node5")
    await virtual.advance(10)
    assert virtual.state("node5") is HostState.OK

    virtual.alive.discard("node5")
    virtual.sim.crash("node5")  # no beats, no answer on the management path
    await virtual.advance(8)
    assert virtual.state("node5") is HostState.FENCED
    assert any("is suspect" in detail for detail in virtual.detector_events("node5"))
    assert all(virtual.state(n) is HostState.OK for n in HOSTS)
    await virtual.app.stop()


@on_virtual_time
async def test_an_added_host_that_beats_is_never_suspect(tmp_path: Path) -> None:
    virtual = await detecting(tmp_path)
    virtual.alive.add("node5")  # its agent beats from the start, as a real one does
    assert (await virtual.add("node5")).state is JobState.COMPLETED
    await virtual.advance(10)
    assert virtual.state("node5") is HostState.OK
    assert virtual.detector_events("node5") == []
    await virtual.app.stop()


@on_virtual_time
async def test_the_apps_own_host_admin_tells_additions_and_removals_as_events(tmp_path: Path) -> None:
    app = await booted(tmp_path)
    node5 = app.sim.address("node5")
    job, _ = app.app.host_admin.add(spec("node5", node5))
    assert (await app.finished(job)).state is JobState.COMPLETED
    assert (await app.finished(app.app.host_admin.remove("node5"))).state is JobState.COMPLETED
    told = [e.detail for e in app.app.events.recent(100) if e.kind == "topology" and e.host == "node5"]
    assert told == [
        f"host node5 was added to cluster cluster1 at {node5}",
        "host node5 (added at runtime) was removed from cluster cluster1",
    ]
    # The cluster's reserve verdict was judged with node5 and without it.
    assert app.app.cluster_report(app.app.get_cluster("cluster1")).healthy_nodes == (
        "node1",
        "node2",
        "node3",
    )
    await app.stop()
