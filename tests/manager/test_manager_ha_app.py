"""The HA service in process, on virtual time: detector verdicts, fencing, restarts, resume.

The agents are the real agent app of every host (havm.scenario.sim_agent), sharing the
SAN's lease records; a failed host is a crashed agent. The test gives the heartbeats
itself and moves virtual time with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from havm.contract.topology import parse_topology
from havm.scenario.sim_agent import SimAgents, intercept, on_virtual_time
from manager.adapters.memory_store import MemoryStore
from manager.adapters.mqtt import Heartbeat, Status
from manager.app.manager import ManagerApp
from manager.core.model import (
    RestartPriority,
    StorageKind,
    StorageLocation,
    VmOperation,
    VmRecord,
)
from manager.core.settings import Settings
from manager.core.states import HostState, VmState
from node_agent.core.errors import FailedPrecondition
from node_agent.core.power import Operation, PowerState

DEFAULT = Path(__file__).resolve().parents[2] / "havm" / "cli" / "default_topology.yaml"
GIB = 1024**3
NODES = ("node1", "node2", "node3", "node4")
SETTINGS = Settings(heartbeat_interval_s=1.0, heartbeat_threshold=5)


class Cluster:
    """The app with HA over the real agents of the default topology, on virtual time.

    Heartbeats are the test's to give (`advance`), so that which hosts beat is its choice;
    the agents' own reach no manager here. Every START an agent carries out is counted,
    and a node in `refusing` fails every take-over, at the agent's seams."""

    def __init__(self, sim: SimAgents, seams: Seams, store: MemoryStore | None = None) -> None:
        self.sim, self.seams = sim, seams
        self.agents = sim.client(SETTINGS)
        self.store = store or MemoryStore()
        loop = asyncio.get_running_loop()
        self.app = ManagerApp(self.store, self.agents, SETTINGS, monotonic=loop.time)
        self.app.load(sim.topology)
        self.ha = self.app.enable_ha()
        self.alive = {h.name for h in sim.topology.hosts}

    @classmethod
    async def booted(cls, tmp_path: Path) -> Cluster:
        topology = parse_topology(yaml.safe_load(DEFAULT.read_text()))
        sim = SimAgents(asyncio.get_running_loop(), topology, tmp_path)  # type: ignore[arg-type]
        await sim.start()
        seams = Seams()
        for host in NODES + ("standalone1",):
            intercept(sim.vm_host(host), "operate", seams.counting_starts(host))
            intercept(sim.vm_host(host), "create_vm", seams.refusing_take_overs(host))
        return cls(sim, seams)

    @property
    def starts(self) -> list[tuple[str, str]]:
        return self.seams.starts

    @property
    def refusing(self) -> set[str]:
        return self.seams.refusing

    async def start(self) -> None:
        await self.app.refresher.refresh_all()
        self.ha.on_connection(True)

    def crash(self, host: str) -> None:
        """The host dies: no more beats, its agent refuses connections."""
        self.alive.discard(host)
        self.sim.crash(host)

    async def boot(self, host: str) -> None:
        """A new agent boots on the host's files and beats again (the seams come along)."""
        self.sim.start_host(host)
        await asyncio.sleep(0.5)  # it recovers its VMs, then serves
        intercept(self.sim.vm_host(host), "operate", self.seams.counting_starts(host))
        intercept(self.sim.vm_host(host), "create_vm", self.seams.refusing_take_overs(host))
        self.alive.add(host)

    async def advance(self, seconds: float, step: float = 1.0) -> None:
        """Move virtual time, beating for the hosts alive, judging at every step."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await asyncio.sleep(min(step, end - loop.time()))
            for host in self.alive:
                self.ha.on_message(Heartbeat(host, "b", 1))
            self.ha.tick()
            await self.ha.idle()

    def address(self, host: str) -> str:
        return self.sim.address(host)

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
        reported = await self.agents.create_vm(host, self.address(host), vm)
        await self.agents.operate_vm(host, self.address(host), vm.id, VmOperation.START)
        self.store.put_vm(replace(vm, state=VmState.RUNNING, lease_generation=reported.lease_generation))
        return vm

    def running(self, vm_id: str) -> list[str]:
        """The hosts whose agent runs the VM now."""
        hosts = [h for h, spec in self.sim.cluster.hosts.items() if spec.vm_host is not None]
        return [
            h
            for h in sorted(hosts)
            if any(
                v.spec.id == vm_id and v.state is PowerState.RUNNING for v in self.sim.vm_host(h).list_vms()
            )
        ]

    def lease(self, vm_id: str, host: str) -> int:
        """The lease generation the VM's copy on `host` holds."""
        return self.sim.vm_host(host).get_vm(vm_id).lease_generation

    def vm(self, name: str) -> VmRecord:
        record = self.store.get_vm_by_name(name)
        assert record is not None
        return record

    def host(self, name: str) -> HostState:
        record = self.store.get_host(name)
        assert record is not None
        return record.state


@dataclass
class Seams:
    """What the test injects into the agents' VmHost: STARTs counted, take-overs refused."""

    starts: list[tuple[str, str]] = field(default_factory=list)
    refusing: set[str] = field(default_factory=set)

    def counting_starts(self, host: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(operate: Callable[..., Any]) -> Callable[..., Any]:
            async def counted(vm_id: str, operation: Operation) -> Any:
                if operation is Operation.START:
                    self.starts.append((host, vm_id))
                return await operate(vm_id, operation)

            return counted

        return wrap

    def refusing_take_overs(self, host: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(create_vm: Callable[..., Any]) -> Callable[..., Any]:
            def create(spec: Any, take_over: bool = False, lease_generation: int = 0, **more: Any) -> Any:
                if take_over and host in self.refusing:
                    raise FailedPrecondition(f"host {host} cannot take VM {spec.label} over")
                return create_vm(spec, take_over, lease_generation, **more)

            return create

        return wrap


async def booted(tmp_path: Path) -> Cluster:
    c = await Cluster.booted(tmp_path)
    await c.start()
    return c


@on_virtual_time
async def test_crash_via_last_will_restarts_ha_vms_by_priority_with_newer_leases(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("high1", "node1", restart_priority=RestartPriority.HIGH)
    await cluster.create("low1", "node1", restart_priority=RestartPriority.LOW)
    await cluster.create("none1", "node1", restart_priority=RestartPriority.NONE)
    await cluster.advance(6)
    assert cluster.host("node1") is HostState.OK
    cluster.crash("node1")
    cluster.ha.on_message(Status("node1", False, ""))
    await cluster.advance(1, step=0.1)  # at once, not after the 5 s window
    assert cluster.host("node1") is HostState.FENCED
    for name in ("high1", "low1"):
        vm = cluster.vm(name)
        assert vm.state is VmState.RUNNING and vm.host != "node1" and vm.failover_count == 1
        assert vm.lease_generation == 2 and cluster.lease(vm.id, vm.host or "") == 2
        assert vm.failover_from is None
    started = [vm_id for _, vm_id in cluster.starts[-2:]]
    assert started == ["id-high1", "id-low1"]
    none1 = cluster.vm("none1")
    assert none1.host == "node1" and "priority none" in none1.reason
    kinds = [e.kind for e in cluster.app.events.recent(1000)]
    assert {"host_state", "vm_state", "detector", "failover"} <= set(kinds)


@on_virtual_time
async def test_restart_failures_retry_then_other_nodes_then_fail(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("db1", "node1")
    await cluster.advance(6)
    cluster.refusing.update({"node2", "node3", "node4"})
    cluster.crash("node1")
    await cluster.advance(8)
    db1 = cluster.vm("db1")
    assert db1.state is VmState.FAILED, db1.reason
    assert "restart failed on" in db1.reason
    assert db1.failover_from is None
    assert cluster.host("node1") is HostState.FENCED
    failed = [e for e in cluster.app.events.recent(1000) if "restart of VM db1" in e.detail]
    # Each node: one attempt plus restart_attempts_same_node retries.
    assert len(failed) == 3 * (1 + SETTINGS.restart_attempts_same_node)


@on_virtual_time
async def test_a_vm_that_fits_nowhere_waits_until_capacity_returns(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("big1", "node1", memory_mb=20000)
    for node in ("node2", "node3", "node4"):
        await cluster.create(f"fill-{node}", node, memory_mb=20000)
    await cluster.app.refresher.refresh_all()
    await cluster.advance(6)
    cluster.crash("node1")
    await cluster.advance(8)
    big1 = cluster.vm("big1")
    assert big1.state is VmState.WAITING and big1.reason.startswith("no node can take it now: ")
    assert cluster.host("node1") is HostState.FENCED
    # Capacity appears: a VM on node3 is turned off (by the manager: one turned off on
    # the host behind its back would be started again).
    job = cluster.app.operate_vm("fill-node3", VmOperation.TURN_OFF)
    assert [j async for j in cluster.app.watch_job(job.id)][-1].error == ""
    await cluster.app.refresher.refresh(["node3"])
    cluster.ha.retry_waiting()
    await cluster.ha.idle()
    big1 = cluster.vm("big1")
    assert big1.state is VmState.RUNNING and big1.host == "node3" and big1.failover_count == 1


@on_virtual_time
async def test_a_vm_waiting_for_capacity_can_be_deleted(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("big1", "node1", memory_mb=20000)
    for node in ("node2", "node3", "node4"):
        await cluster.create(f"fill-{node}", node, memory_mb=20000)
    await cluster.app.refresher.refresh_all()
    await cluster.advance(6)
    cluster.crash("node1")
    await cluster.advance(8)
    assert cluster.vm("big1").state is VmState.WAITING
    job = cluster.app.delete_vm("big1")
    done = [j async for j in cluster.app.watch_job(job.id)][-1]
    assert done.error == "" and cluster.store.get_vm_by_name("big1") is None


@on_virtual_time
async def test_a_resumed_failover_never_starts_a_vm_twice(tmp_path: Path) -> None:
    first = await booted(tmp_path)
    vm = await first.create("db1", "node1")
    await first.advance(6)
    # The manager was killed after the take-over and start on node2, before recording them.
    first.crash("node1")
    record = first.vm("db1")
    await first.agents.create_vm(
        "node2", first.address("node2"), replace(record, host="node2"), take_over=True, lease_generation=2
    )
    await first.agents.operate_vm("node2", first.address("node2"), vm.id, VmOperation.START)
    first.store.put_host(replace(first.store.get_host("node1"), state=HostState.FENCING))  # type: ignore[arg-type]
    first.store.put_vm(replace(record, failover_from="node1", restart_target="node2", lease_generation=2))
    starts = len(first.starts)
    second = Cluster(first.sim, first.seams, first.store)
    second.ha.resume()
    await second.ha.idle()
    db1 = second.vm("db1")
    assert db1.host == "node2" and db1.state is VmState.RUNNING and db1.failover_count == 1
    assert len(first.starts) == starts
    assert first.running(vm.id) == ["node1", "node2"] or first.running(vm.id) == ["node2"]
    assert second.host("node1") is HostState.FENCED


@on_virtual_time
async def test_broker_loss_judges_no_host_until_a_full_window_after_reconnect(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
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


@on_virtual_time
async def test_watch_events_replays_then_follows(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    cluster.app.events.emit("detector", "first")
    stream = cluster.app.watch_events(1)
    assert (await anext(stream)).detail == "first"
    cluster.app.events.emit("failover", "second", host="node1")
    event = await asyncio.wait_for(anext(stream), 1)
    assert (event.kind, event.host, event.detail) == ("failover", "node1", "second")
    await stream.aclose()


@on_virtual_time
async def test_watch_events_without_follow_ends_after_the_replay(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    for detail in ("one", "two", "three"):
        cluster.app.events.emit("detector", detail)
    stream = cluster.app.watch_events(2, follow=False)
    replayed = [event.detail async for event in stream]
    assert replayed == ["two", "three"]


@on_virtual_time
async def test_non_ha_vms_of_a_failed_standalone_host_stay_down_and_are_reported(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
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
    await cluster.agents.create_vm("standalone1", cluster.address("standalone1"), vm)
    await cluster.agents.operate_vm("standalone1", cluster.address("standalone1"), vm.id, VmOperation.START)
    cluster.store.put_vm(vm)
    await cluster.advance(6)
    cluster.crash("standalone1")
    await cluster.advance(8)
    solo = cluster.vm("solo1")
    assert solo.state is VmState.UNKNOWN and solo.host == "standalone1"
    assert solo.reason == "host standalone1 is not responding"
    assert cluster.host("standalone1") is HostState.FENCED


@on_virtual_time
async def test_a_manager_stopped_between_verdict_and_fencing_fences_on_start(tmp_path: Path) -> None:
    first = await booted(tmp_path)
    await first.create("db1", "node1")
    first.crash("node1")
    node1 = first.store.get_host("node1")
    assert node1 is not None
    first.store.put_host(
        replace(node1, state=HostState.NOT_RESPONDING, state_reason="gone", fence_decided=True)
    )
    second = Cluster(first.sim, first.seams, first.store)
    second.ha.resume()
    await second.ha.idle()
    assert second.host("node1") is HostState.FENCED
    db1 = second.vm("db1")
    assert db1.state is VmState.RUNNING and db1.host != "node1"


@on_virtual_time
async def test_a_not_responding_host_without_the_decision_is_not_fenced_on_start(tmp_path: Path) -> None:
    # Whatever its reason says: only the stored decision counts.
    first = await booted(tmp_path)
    await first.create("db1", "node1")
    node1 = first.store.get_host("node1")
    assert node1 is not None
    first.store.put_host(
        replace(node1, state=HostState.NOT_RESPONDING, state_reason="no heartbeat and the probe failed: gone")
    )
    second = Cluster(first.sim, first.seams, first.store)
    second.ha.resume()
    await second.ha.idle()
    assert second.host("node1") is HostState.NOT_RESPONDING
    assert second.vm("db1").host == "node1"


@on_virtual_time
async def test_the_detector_stores_its_decision_with_the_state(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("db1", "node1")
    await cluster.advance(6)
    cluster.crash("node1")
    seen = []
    put_host = cluster.store.put_host

    def spy(host):  # type: ignore[no-untyped-def]
        seen.append((host.state, host.fence_decided))
        put_host(host)

    cluster.store.put_host = spy  # type: ignore[method-assign]
    await cluster.advance(8)
    assert (HostState.NOT_RESPONDING, True) in seen
    assert seen[-1] == (HostState.FENCED, False)


@on_virtual_time
async def test_waiting_vms_are_retried_as_soon_as_a_vm_stops(tmp_path: Path) -> None:
    cluster = await booted(tmp_path)
    await cluster.create("big1", "node1", memory_mb=20000)
    for node in ("node2", "node3", "node4"):
        await cluster.create(f"fill-{node}", node, memory_mb=20000)
    await cluster.app.refresher.refresh_all()
    await cluster.advance(6)
    cluster.crash("node1")
    await cluster.advance(8)
    assert cluster.vm("big1").state is VmState.WAITING
    cluster.ha._capacity_changed = False
    cluster.ha.retry_waiting()
    await cluster.ha.idle()
    assert not cluster.ha._capacity_changed  # waiting again is no new room
    job = cluster.app.operate_vm("fill-node4", VmOperation.TURN_OFF)
    assert [j async for j in cluster.app.watch_job(job.id)][-1].error == ""
    await cluster.app.refresher.refresh(["node4"])
    assert cluster.ha._capacity_changed


@on_virtual_time
async def test_an_ha_vm_turned_off_on_its_host_is_started_again_unless_its_priority_is_none(
    tmp_path: Path,
) -> None:
    """As a cluster brings a failed resource back online: the manager records why the VM
    is off, says so in an event, and starts it again on its host; `none` leaves it off."""
    cluster = await booted(tmp_path)
    await cluster.create("back1", "node2")
    await cluster.create("left1", "node2", restart_priority=RestartPriority.NONE)
    for vm_id in ("id-back1", "id-left1"):
        await cluster.agents.operate_vm("node2", cluster.address("node2"), vm_id, VmOperation.TURN_OFF)
    await cluster.app.refresher.refresh(["node2"])
    left = cluster.vm("left1")
    assert left.state is VmState.STOPPED and left.reason == "turned off on host node2 outside the manager"
    await cluster.advance(2)
    assert cluster.vm("back1").state is VmState.RUNNING and cluster.running("id-back1") == ["node2"]
    assert cluster.vm("left1").state is VmState.STOPPED and cluster.running("id-left1") == []
    said = [e.detail for e in cluster.app.events.recent(1000) if e.kind == "outside_change"]
    assert said == [
        "VM back1 was turned off on host node2 outside the manager; starting it again there, "
        "as a cluster brings a failed resource back online",
        "VM left1 was turned off on host node2 outside the manager; left off: its restart priority is none",
    ]
