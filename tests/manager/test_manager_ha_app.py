"""The HA service in process, on virtual time: detector verdicts, fencing, restarts, resume.

The agents are an in-memory port with shared lease records; the clock is a number the
test moves; nothing sleeps except to let spawned tasks run.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from manager.adapters.memory_store import MemoryStore
from manager.adapters.mqtt import Heartbeat, Status
from manager.app.manager import ManagerApp
from manager.core.errors import AlreadyExistsError, FailedPreconditionError, NotFoundError, UnavailableError
from manager.core.model import (
    DiskInfo,
    Inventory,
    NetworkInfo,
    ReportedVm,
    RestartPriority,
    StorageKind,
    StorageLocation,
    VmOperation,
    VmRecord,
    VolumeInfo,
)
from manager.core.settings import Settings
from manager.core.states import HostState, VmState
from manager.core.topology import Topology, parse_topology

DEFAULT = Path(__file__).resolve().parents[2] / "havm" / "cli" / "default_topology.yaml"
GIB = 1024**3
NODES = ("node1", "node2", "node3", "node4")
SETTINGS = Settings(heartbeat_interval=1.0, heartbeat_threshold=5)


class LeaseAgents:
    """In-memory agents sharing one lease table, as nodes share the SAN."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.vms: dict[str, dict[str, ReportedVm]] = {h.name: {} for h in topology.hosts}
        self.leases: dict[str, int] = {}
        self.silent: set[str] = set()
        self.refusing: set[str] = set()
        self.starts: list[tuple[str, str]] = []
        self.boot_ids: dict[str, str] = {}

    def _check(self, host: str) -> None:
        if host in self.silent:
            raise UnavailableError(f"agent of host {host} is unavailable")

    async def probe(self, host: str, address: str, timeout: float) -> None:
        self._check(host)

    async def get_inventory(self, host: str, address: str) -> Inventory:
        self._check(host)
        spec = self.topology.host(host)
        used = sum(v.memory_mb for v in self.vms[host].values() if v.state is VmState.RUNNING)
        return Inventory(
            host_name=host,
            cluster=spec.cluster,
            profile=spec.profile,
            cpu=spec.cpu,
            memory_mb=spec.memory_mb,
            memory_free_mb=spec.memory_mb - spec.host_reserve_mb - used,
            disks=tuple(DiskInfo(d.name, d.capacity_gb * GIB, d.capacity_gb * GIB) for d in spec.disks),
            networks=tuple(
                NetworkInfo(n.name, "virtual_network", n.bound_to, n.vlan_id) for n in spec.networks
            ),
            volumes=tuple(
                VolumeInfo(v.name, StorageKind(v.kind), v.capacity_gb * GIB, v.capacity_gb * GIB)
                for v in self.topology.volumes_visible_to(host)
            ),
            boot_id=self.boot_ids.get(host, "b"),
            vms=tuple(self.vms[host].values()),
        )

    async def get_vm(self, host: str, address: str, vm_id: str) -> ReportedVm:
        self._check(host)
        if vm_id not in self.vms[host]:
            raise NotFoundError(f"VM {vm_id} does not exist on host {host}")
        return self.vms[host][vm_id]

    async def create_vm(
        self, host: str, address: str, vm: VmRecord, take_over: bool = False, lease_generation: int = 0
    ) -> ReportedVm:
        self._check(host)
        await asyncio.sleep(0)
        if vm.id in self.vms[host]:
            raise AlreadyExistsError(f"VM {vm.id} already exists")
        if take_over and host in self.refusing:
            raise FailedPreconditionError(f"host {host} cannot take VM {vm.name} over")
        if take_over and lease_generation <= self.leases.get(vm.id, 0):
            raise FailedPreconditionError("stale lease generation")
        generation = lease_generation if take_over else self.leases.get(vm.id, 0) + 1
        self.leases[vm.id] = generation
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
            lease_generation=generation,
        )
        self.vms[host][vm.id] = reported
        return reported

    async def operate_vm(self, host: str, address: str, vm_id: str, operation: VmOperation) -> ReportedVm:
        self._check(host)
        await asyncio.sleep(0)
        state = {VmOperation.START: VmState.RUNNING, VmOperation.TURN_OFF: VmState.STOPPED}[operation]
        if operation is VmOperation.START:
            self.starts.append((host, vm_id))
        self.vms[host][vm_id] = replace(self.vms[host][vm_id], state=state)
        return self.vms[host][vm_id]

    async def delete_vm(self, host: str, address: str, vm_id: str) -> None:
        self._check(host)
        self.vms[host].pop(vm_id, None)

    async def close(self) -> None:
        pass

    def running(self, vm_id: str) -> list[str]:
        return [h for h, vms in self.vms.items() if vm_id in vms and vms[vm_id].state is VmState.RUNNING]


class Cluster:
    def __init__(self, store: MemoryStore | None = None, agents: LeaseAgents | None = None) -> None:
        topology = parse_topology(yaml.safe_load(DEFAULT.read_text()))
        topology = topology.with_addresses(
            {h.name: f"127.0.0.1:{5000 + i}" for i, h in enumerate(topology.hosts)}
        )
        self.now = 0.0
        self.agents = agents or LeaseAgents(topology)
        self.store = store or MemoryStore()
        self.app = ManagerApp(self.store, self.agents, SETTINGS, monotonic=lambda: self.now)
        self.app.load(topology)
        self.ha = self.app.enable_ha()
        self.alive = {h.name for h in topology.hosts}

    async def start(self) -> None:
        await self.app.refresher.refresh_all()
        self.ha.on_connection(True)

    async def advance(self, seconds: float, step: float = 1.0) -> None:
        """Move virtual time, beating for the hosts alive, judging at every step."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for host in self.alive:
                self.ha.on_message(Heartbeat(host, "b", 1))
            self.ha.tick()
            await self.ha.idle()

    async def create(self, name: str, host: str, memory_mb: int = 1024, **kw: object) -> VmRecord:
        vm = VmRecord(
            id=f"id-{name}",
            name=name,
            host=host,
            state=VmState.STOPPED,
            highly_available=True,
            memory_mb=memory_mb,
            cpus=1,
            disk_gb=20,
            storage=StorageLocation(StorageKind.CSV, "Volume1"),
            **kw,
        )
        reported = await self.agents.create_vm(host, "", vm)
        await self.agents.operate_vm(host, "", vm.id, VmOperation.START)
        self.store.put_vm(replace(vm, state=VmState.RUNNING, lease_generation=reported.lease_generation))
        return vm

    def vm(self, name: str) -> VmRecord:
        record = self.store.get_vm_by_name(name)
        assert record is not None
        return record

    def host(self, name: str) -> HostState:
        record = self.store.get_host(name)
        assert record is not None
        return record.state


@pytest.fixture
async def cluster() -> Cluster:
    c = Cluster()
    await c.start()
    return c


async def test_crash_via_last_will_restarts_ha_vms_by_priority_with_newer_leases(cluster: Cluster) -> None:
    await cluster.create("high1", "node1", restart_priority=RestartPriority.HIGH)
    await cluster.create("low1", "node1", restart_priority=RestartPriority.LOW)
    await cluster.create("none1", "node1", restart_priority=RestartPriority.NONE)
    await cluster.advance(6)
    assert cluster.host("node1") is HostState.OK
    cluster.alive.discard("node1")
    cluster.agents.silent.add("node1")
    cluster.ha.on_message(Status("node1", False, ""))
    await cluster.advance(1, step=0.1)  # at once, not after the 5 s window
    assert cluster.host("node1") is HostState.FENCED
    for name in ("high1", "low1"):
        vm = cluster.vm(name)
        assert vm.state is VmState.RUNNING and vm.host != "node1" and vm.failover_count == 1
        assert vm.lease_generation == 2 and cluster.agents.leases[vm.id] == 2
        assert vm.failover_from is None
    started = [vm_id for _, vm_id in cluster.agents.starts[-2:]]
    assert started == ["id-high1", "id-low1"]
    none1 = cluster.vm("none1")
    assert none1.host == "node1" and "priority none" in none1.reason
    kinds = [e.kind for e in cluster.app.events.recent(1000)]
    assert {"host_state", "vm_state", "detector", "failover"} <= set(kinds)


async def test_restart_failures_retry_then_other_nodes_then_fail(cluster: Cluster) -> None:
    await cluster.create("db1", "node1")
    await cluster.advance(6)
    cluster.agents.refusing.update({"node2", "node3", "node4"})
    cluster.alive.discard("node1")
    cluster.agents.silent.add("node1")
    await cluster.advance(8)
    db1 = cluster.vm("db1")
    assert db1.state is VmState.FAILED, db1.reason
    assert "restart failed on" in db1.reason
    assert db1.failover_from is None
    assert cluster.host("node1") is HostState.FENCED
    failed = [e for e in cluster.app.events.recent(1000) if "restart of VM db1" in e.detail]
    # Each node: one attempt plus restart_attempts_same_node retries.
    assert len(failed) == 3 * (1 + SETTINGS.restart_attempts_same_node)


async def test_a_vm_that_fits_nowhere_waits_until_capacity_returns(cluster: Cluster) -> None:
    await cluster.create("big1", "node1", memory_mb=20000)
    for node in ("node2", "node3", "node4"):
        await cluster.create(f"fill-{node}", node, memory_mb=20000)
    await cluster.app.refresher.refresh_all()
    await cluster.advance(6)
    cluster.alive.discard("node1")
    cluster.agents.silent.add("node1")
    await cluster.advance(8)
    big1 = cluster.vm("big1")
    assert big1.state is VmState.WAITING and big1.reason.startswith("no node can take it now: ")
    assert cluster.host("node1") is HostState.FENCED
    # Capacity appears: a VM on node3 stops.
    await cluster.agents.operate_vm("node3", "", "id-fill-node3", VmOperation.TURN_OFF)
    await cluster.app.refresher.refresh(["node3"])
    cluster.ha.retry_waiting()
    await cluster.ha.idle()
    big1 = cluster.vm("big1")
    assert big1.state is VmState.RUNNING and big1.host == "node3" and big1.failover_count == 1


async def test_a_vm_waiting_for_capacity_can_be_deleted(cluster: Cluster) -> None:
    await cluster.create("big1", "node1", memory_mb=20000)
    for node in ("node2", "node3", "node4"):
        await cluster.create(f"fill-{node}", node, memory_mb=20000)
    await cluster.app.refresher.refresh_all()
    await cluster.advance(6)
    cluster.alive.discard("node1")
    cluster.agents.silent.add("node1")
    await cluster.advance(8)
    assert cluster.vm("big1").state is VmState.WAITING
    job = cluster.app.delete_vm("big1")
    done = [j async for j in cluster.app.watch_job(job.id)][-1]
    assert done.error == "" and cluster.store.get_vm_by_name("big1") is None


async def test_a_resumed_failover_never_starts_a_vm_twice() -> None:
    first = Cluster()
    await first.start()
    vm = await first.create("db1", "node1")
    await first.advance(6)
    # The manager was killed after the take-over and start on node2, before recording them.
    first.agents.silent.add("node1")
    record = first.vm("db1")
    await first.agents.create_vm(
        "node2", "", replace(record, host="node2"), take_over=True, lease_generation=2
    )
    await first.agents.operate_vm("node2", "", vm.id, VmOperation.START)
    first.store.put_host(replace(first.store.get_host("node1"), state=HostState.FENCING))  # type: ignore[arg-type]
    first.store.put_vm(replace(record, failover_from="node1", restart_target="node2", lease_generation=2))
    starts = len(first.agents.starts)
    second = Cluster(first.store, first.agents)
    second.ha.resume()
    await second.ha.idle()
    db1 = second.vm("db1")
    assert db1.host == "node2" and db1.state is VmState.RUNNING and db1.failover_count == 1
    assert len(first.agents.starts) == starts
    assert first.agents.running(vm.id) == ["node1", "node2"] or first.agents.running(vm.id) == ["node2"]
    assert second.host("node1") is HostState.FENCED


async def test_broker_loss_judges_no_host_until_a_full_window_after_reconnect(cluster: Cluster) -> None:
    await cluster.create("db1", "node1")
    await cluster.advance(6)
    cluster.ha.on_connection(False)
    cluster.alive.clear()  # the manager hears nothing
    await cluster.advance(20)
    assert all(cluster.host(n) is HostState.OK for n in NODES)
    cluster.ha.on_connection(True)
    cluster.alive.update(NODES)
    await cluster.advance(10)
    assert all(cluster.host(n) is HostState.OK for n in NODES)
    assert cluster.vm("db1").failover_count == 0


async def test_watch_events_replays_then_follows(cluster: Cluster) -> None:
    cluster.app.events.emit("detector", "first")
    stream = cluster.app.watch_events(1)
    assert (await anext(stream)).detail == "first"
    cluster.app.events.emit("failover", "second", host="node1")
    event = await asyncio.wait_for(anext(stream), 1)
    assert (event.kind, event.host, event.detail) == ("failover", "node1", "second")
    await stream.aclose()


async def test_watch_events_without_follow_ends_after_the_replay(cluster: Cluster) -> None:
    for detail in ("one", "two", "three"):
        cluster.app.events.emit("detector", detail)
    stream = cluster.app.watch_events(2, follow=False)
    replayed = [event.detail async for event in stream]
    assert replayed == ["two", "three"]


async def test_non_ha_vms_of_a_failed_standalone_host_stay_down_and_are_reported(cluster: Cluster) -> None:
    vm = VmRecord(
        id="id-solo",
        name="solo1",
        host="standalone1",
        state=VmState.RUNNING,
        highly_available=False,
        memory_mb=512,
        cpus=1,
        disk_gb=10,
        storage=StorageLocation(StorageKind.LOCAL_DISK, "C"),
    )
    await cluster.agents.create_vm("standalone1", "", vm)
    await cluster.agents.operate_vm("standalone1", "", vm.id, VmOperation.START)
    cluster.store.put_vm(vm)
    await cluster.advance(6)
    cluster.alive.discard("standalone1")
    cluster.agents.silent.add("standalone1")
    await cluster.advance(8)
    solo = cluster.vm("solo1")
    assert solo.state is VmState.UNKNOWN and solo.host == "standalone1"
    assert solo.reason == "host standalone1 is not responding"
    assert cluster.host("standalone1") is HostState.FENCED


async def test_a_manager_stopped_between_verdict_and_fencing_fences_on_start() -> None:
    first = Cluster()
    await first.start()
    await first.create("db1", "node1")
    first.agents.silent.add("node1")
    node1 = first.store.get_host("node1")
    assert node1 is not None
    first.store.put_host(
        replace(node1, state=HostState.NOT_RESPONDING, state_reason="gone", fence_decided=True)
    )
    second = Cluster(first.store, first.agents)
    second.ha.resume()
    await second.ha.idle()
    assert second.host("node1") is HostState.FENCED
    db1 = second.vm("db1")
    assert db1.state is VmState.RUNNING and db1.host != "node1"


async def test_a_not_responding_host_without_the_decision_is_not_fenced_on_start() -> None:
    # Whatever its reason says: only the stored decision counts.
    first = Cluster()
    await first.start()
    await first.create("db1", "node1")
    node1 = first.store.get_host("node1")
    assert node1 is not None
    first.store.put_host(
        replace(node1, state=HostState.NOT_RESPONDING, state_reason="no heartbeat and the probe failed: gone")
    )
    second = Cluster(first.store, first.agents)
    second.ha.resume()
    await second.ha.idle()
    assert second.host("node1") is HostState.NOT_RESPONDING
    assert second.vm("db1").host == "node1"


async def test_the_detector_stores_its_decision_with_the_state(cluster: Cluster) -> None:
    await cluster.create("db1", "node1")
    await cluster.advance(6)
    cluster.alive.discard("node1")
    cluster.agents.silent.add("node1")
    seen = []
    put_host = cluster.store.put_host

    def spy(host):  # type: ignore[no-untyped-def]
        seen.append((host.state, host.fence_decided))
        put_host(host)

    cluster.store.put_host = spy  # type: ignore[method-assign]
    await cluster.advance(8)
    assert (HostState.NOT_RESPONDING, True) in seen
    assert seen[-1] == (HostState.FENCED, False)


async def test_waiting_vms_are_retried_as_soon_as_a_vm_stops(cluster: Cluster) -> None:
    await cluster.create("big1", "node1", memory_mb=20000)
    for node in ("node2", "node3", "node4"):
        await cluster.create(f"fill-{node}", node, memory_mb=20000)
    await cluster.app.refresher.refresh_all()
    await cluster.advance(6)
    cluster.alive.discard("node1")
    cluster.agents.silent.add("node1")
    await cluster.advance(8)
    assert cluster.vm("big1").state is VmState.WAITING
    cluster.ha._capacity_changed = False
    cluster.ha.retry_waiting()
    await cluster.ha.idle()
    assert not cluster.ha._capacity_changed  # waiting again is no new room
    await cluster.agents.operate_vm("node4", "", "id-fill-node4", VmOperation.TURN_OFF)
    await cluster.app.refresher.refresh(["node4"])
    assert cluster.ha._capacity_changed
