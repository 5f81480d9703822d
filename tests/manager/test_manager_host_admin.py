"""Hosts added and removed at runtime, in process against fake agents over real gRPC: the
records, the refusals, the capacity callback and a manager restart on the same database;
then AddHost and RemoveHost through the real manager process's gRPC API.

The manager application runs in the test's event loop on a SQLite store, as in the
migration tests; node5 is one more fake agent, started by the test, that the topology
does not name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from manager_fake_agent import FakeAgent, FakeHost
from manager_testkit import VOLUMES, ManagerProcess, topology_for

from havm.v1 import common_pb2, manager_pb2, manager_pb2_grpc
from manager.adapters.agent_client import AgentClient
from manager.adapters.memory_store import MemoryStore
from manager.adapters.mqtt import Heartbeat
from manager.adapters.sqlite_store import SqliteStore
from manager.app.host_admin import HostAdmin
from manager.app.manager import ManagerApp
from manager.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from manager.core.model import (
    CreateVmCommand,
    Inventory,
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
from manager.core.topology import HostSpec, parse_host_entry, parse_topology

SETTINGS = Settings(agent_call_timeout=1.0, agent_read_attempts=1)
DEFAULTS = topology_for({})["host_defaults"]


def spec(name: str, address: str, cluster: str | None = "cluster1", **entry: object) -> HostSpec:
    return replace(parse_host_entry({"name": name, "address": address, **entry}, DEFAULTS), cluster=cluster)


class Manager:
    """The manager app on a SQLite database, with a host admin that records its calls."""

    def __init__(self, agents: dict[str, FakeAgent], db: Path) -> None:
        self.topology = parse_topology(topology_for(agents))
        self.db = db
        self.capacity: list[str | None] = []
        self.agents = AgentClient(SETTINGS)
        self.app = self.open()

    def open(self) -> ManagerApp:
        app = ManagerApp(SqliteStore(self.db), AgentClient(SETTINGS), SETTINGS)
        app.load(self.topology)
        # The app's own service, but telling this test what the capacity service is told.
        self.admin = HostAdmin(
            app.store, self.agents, app.jobs, app.refresher, self.capacity.append, lambda: datetime.now(UTC)
        )
        return app

    async def restart(self) -> None:
        await self.stop()
        self.app = self.open()

    async def stop(self) -> None:
        await self.app.stop()
        self.app.store.close()

    async def close(self) -> None:
        await self.stop()
        await self.agents.close()

    async def finished(self, job: JobRecord) -> JobRecord:
        async for update in self.app.watch_job(job.id):
            job = update
        return job

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


@pytest.fixture
async def node5() -> AsyncIterator[FakeAgent]:
    agent = FakeAgent(FakeHost("node5", cluster="cluster1", volumes=VOLUMES))
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


@pytest.fixture
async def app(fake_agents: dict[str, FakeAgent], tmp_path: Path) -> AsyncIterator[Manager]:
    m = Manager(fake_agents, tmp_path / "manager.db")
    await m.app.refresher.refresh_all()
    yield m
    await m.close()


async def test_an_added_host_joins_its_cluster_and_takes_ha_vms(app: Manager, node5: FakeAgent) -> None:
    jobs_before = len(app.app.list_jobs())
    job, host = app.admin.add(spec("node5", node5.address))
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
    assert "web5" in {v.spec.name for v in node5.host.vms.values()}


async def test_a_standalone_host_can_be_added_too(app: Manager) -> None:
    solo = FakeAgent(FakeHost("solo2", memory_mb=16384))
    await solo.start()
    try:
        job, host = app.admin.add(spec("solo2", solo.address, cluster=None, memory_mb=16384))
        assert host.cluster is None and host.volumes == ()
        assert (await app.finished(job)).message == "Added host solo2 to the manager as a standalone host"
        assert app.capacity[-1] is None
        await app.create("db2", "solo2", ha=False)
        assert app.app.get_vm("db2").storage == StorageLocation(StorageKind.LOCAL_DISK, "C")
    finally:
        await solo.stop()


async def test_a_bad_addition_is_refused_before_anything_is_recorded(app: Manager, node5: FakeAgent) -> None:
    hosts_before = app.app.list_hosts()
    jobs_before = app.app.list_jobs()
    refused = [
        (spec("node1", node5.address), AlreadyExistsError, "host node1 already exists"),
        (spec("node5", node5.address, cluster="cluster9"), NotFoundError, "cluster cluster9 does not exist"),
        (
            spec("node5", node5.address, profile="hyperv-2008"),
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


async def test_a_host_that_does_not_answer_is_added_not_responding(app: Manager) -> None:
    job, _ = app.admin.add(spec("node5", "127.0.0.1:1"))
    done = await app.finished(job)
    assert done.state is JobState.FAILED
    assert done.error.startswith("host node5 was added to cluster cluster1 but does not answer: ")
    assert "havm host remove node5" in done.error
    assert app.app.get_host("node5").host.state is HostState.NOT_RESPONDING
    removed = await app.finished(app.admin.remove("node5"))
    assert removed.state is JobState.COMPLETED
    with pytest.raises(NotFoundError):
        app.app.get_host("node5")


async def test_removal_is_refused_while_a_vm_or_a_migration_needs_the_host(
    app: Manager, node5: FakeAgent
) -> None:
    await app.finished(app.admin.add(spec("node5", node5.address))[0])
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


async def test_an_added_host_survives_a_restart_and_a_removed_topology_host_returns(
    app: Manager, node5: FakeAgent
) -> None:
    await app.finished(app.admin.add(spec("node5", node5.address))[0])
    await app.finished(app.admin.remove("node3"))
    assert app.app.get_cluster("cluster1").nodes == ("node1", "node2", "node5")

    await app.restart()
    node = app.app.get_host("node5").host
    assert node.added_at_runtime and node.cluster == "cluster1" and node.address == node5.address
    cluster = app.app.get_cluster("cluster1")
    # The topology's nodes first (node3 is back: the topology declares it), then node5.
    assert cluster.nodes == ("node1", "node2", "node3", "node5")
    assert "node5" in cluster.visible_to("Volume1") and "node5" in cluster.visible_to("lun1")
    await app.app.refresher.refresh_all()
    assert app.app.get_host("node5").host.state is HostState.OK
    await app.create("web5", "node5")


# --- through the manager process's gRPC API ------------------------------------------------


def host_config(name: str, address: str, **fields: object) -> manager_pb2.HostConfig:
    config = manager_pb2.HostConfig(
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


async def test_add_and_remove_host_over_grpc(
    stub: manager_pb2_grpc.ManagerServiceStub, manager: ManagerProcess, node5: FakeAgent
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


# --- the failure detector judges an added host like any other --------------------------------


class MemoryAgents:
    """Agents that answer from their host descriptions; those in `silent` do not answer."""

    def __init__(self, hosts: list[HostSpec]) -> None:
        self.hosts = {h.name: h for h in hosts}
        self.silent: set[str] = set()

    def _check(self, host: str) -> None:
        if host in self.silent:
            raise UnavailableError(f"agent of host {host} is unavailable")

    async def probe(self, host: str, address: str, timeout: float) -> None:
        self._check(host)

    async def get_inventory(self, host: str, address: str) -> Inventory:
        self._check(host)
        spec = self.hosts[host]
        return Inventory(
            host_name=host,
            cluster=spec.cluster,
            profile=spec.profile,
            cpu=spec.cpu,
            memory_mb=spec.memory_mb,
            memory_free_mb=spec.memory_mb - spec.host_reserve_mb,
            disks=(),
            networks=(),
            volumes=(),
            boot_id="b",
            vms=(),
        )

    async def close(self) -> None:
        pass


class VirtualTimeCluster:
    """The manager's HA service on a clock the test moves, hearing the beats of `alive`."""

    def __init__(self) -> None:
        self.topology = parse_topology(
            {
                **topology_for({}),
                "hosts": [{"name": n, "address": f"127.0.0.1:{5001 + i}"} for i, n in enumerate(CLUSTER)],
            }
        )
        self.now = 0.0
        self.agents = MemoryAgents(list(self.topology.hosts))
        self.app = ManagerApp(MemoryStore(), self.agents, SETTINGS, monotonic=lambda: self.now)
        self.app.load(self.topology)
        self.ha = self.app.enable_ha()
        self.alive = set(self.agents.hosts)

    async def advance(self, seconds: float, step: float = 0.5) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for host in sorted(self.alive):
                self.ha.on_message(Heartbeat(host, "b", 1))
            self.ha.tick()
            await self.ha.idle()

    def state(self, host: str) -> HostState:
        return self.app.get_host(host).host.state

    def detector_events(self, host: str) -> list[str]:
        return [e.detail for e in self.app.events.recent(1000) if e.host == host and e.kind == "detector"]


CLUSTER = ("node1", "node2", "node3")


@pytest.fixture
async def virtual() -> AsyncIterator[VirtualTimeCluster]:
    cluster = VirtualTimeCluster()
    await cluster.app.refresher.refresh_all()
    cluster.ha.on_connection(True)
    await cluster.advance(10)
    yield cluster
    await cluster.app.stop()


async def test_the_detector_fences_an_added_host_that_goes_silent(virtual: VirtualTimeCluster) -> None:
    node5 = spec("node5", "127.0.0.1:5005")
    virtual.agents.hosts["node5"] = node5
    job, _ = virtual.app.host_admin.add(node5)
    async for update in virtual.app.watch_job(job.id):
        job = update
    assert job.state is JobState.COMPLETED and virtual.state("node5") is HostState.OK
    virtual.alive.add("node5")
    await virtual.advance(10)
    assert virtual.state("node5") is HostState.OK

    virtual.alive.discard("node5")
    virtual.agents.silent.add("node5")
    await virtual.advance(8)
    assert virtual.state("node5") is HostState.FENCED
    assert any("is suspect" in detail for detail in virtual.detector_events("node5"))
    assert all(virtual.state(n) is HostState.OK for n in CLUSTER)


async def test_an_added_host_that_beats_is_never_suspect(virtual: VirtualTimeCluster) -> None:
    node5 = spec("node5", "127.0.0.1:5005")
    virtual.agents.hosts["node5"] = node5
    virtual.alive.add("node5")  # its agent beats from the start, as a real one does
    job, _ = virtual.app.host_admin.add(node5)
    async for update in virtual.app.watch_job(job.id):
        job = update
    await virtual.advance(10)
    assert virtual.state("node5") is HostState.OK
    assert virtual.detector_events("node5") == []


async def test_the_apps_own_host_admin_tells_additions_and_removals_as_events(
    app: Manager, node5: FakeAgent
) -> None:
    job, _ = app.app.host_admin.add(spec("node5", node5.address))
    assert (await app.finished(job)).state is JobState.COMPLETED
    assert (await app.finished(app.app.host_admin.remove("node5"))).state is JobState.COMPLETED
    told = [e.detail for e in app.app.events.recent(100) if e.kind == "topology" and e.host == "node5"]
    assert told == [
        f"host node5 was added to cluster cluster1 at {node5.address}",
        "host node5 (added at runtime) was removed from cluster cluster1",
    ]
    # The cluster's reserve verdict was judged with node5 and without it.
    assert app.app.cluster_report(app.app.get_cluster("cluster1")).healthy_nodes == (
        "node1",
        "node2",
        "node3",
    )
