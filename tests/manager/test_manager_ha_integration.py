"""High availability end to end: a real manager and broker, the real agent app of every
host on loopback (havm.scenario.sim_agent.LoopbackAgent), beats from the test.

The test plays the agents' heartbeat side itself (it publishes their heartbeats on the
real broker), so it decides exactly when a host falls silent. Stopping an agent makes
its probe fail: together, a silent power-off. A host that comes back is its agent
started again on its files, which finds out by itself which of its VMs were taken away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import grpc
import pytest
from manager_testkit import PYTHON, REPO_ROOT, ManagerProcess, eventually, free_port

from havm.scenario.sim_agent import LoopbackAgent, intercept
from havm.v1 import common_pb2, manager_pb2_grpc
from havm.v1 import manager_pb2 as m
from node_agent.core.power import Operation, PowerState

pytestmark = pytest.mark.integration
Stub = manager_pb2_grpc.ManagerServiceStub
INTERVAL = 0.2
THRESHOLD = 5  # a 1 s window


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    log = open(tmp_path / "broker.log", "ab")
    proc = subprocess.Popen(
        [PYTHON, "-m", "havm.broker", "--listen", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=log,
        cwd=str(REPO_ROOT),
    )
    log.close()
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "broker.log").read_text()
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(5)


Agents = dict[str, LoopbackAgent]


class Beats:
    """Publishes heartbeats for the hosts in `alive` every INTERVAL seconds, with the boot
    id of each host's running agent."""

    def __init__(self, port: int, agents: Agents) -> None:
        self.port = port
        self.agents = agents
        self.alive = set(agents)
        self.seq = 0

    def boot_id(self, host: str) -> str:
        vm_host = self.agents[host].vm_host
        return vm_host.boot_id if vm_host is not None else ""

    async def run(self) -> None:
        # A short operation timeout: when the test ends with the broker gone, leaving the
        # client must not wait long for an answer that will not come.
        async with aiomqtt.Client("127.0.0.1", self.port, timeout=2) as client:
            for host in self.alive:
                status = {"state": "online", "host": host, "boot_id": self.boot_id(host)}
                await client.publish(f"havm/v1/hosts/{host}/status", json.dumps(status), qos=1, retain=True)
            # A bad payload is ignored, not a crash.
            await client.publish("havm/v1/hosts/node3/heartbeat", b"\xff not json")
            while True:
                self.seq += 1
                for host in sorted(self.alive):
                    beat = {"host": host, "boot_id": self.boot_id(host), "seq": self.seq, "time": time.time()}
                    await client.publish(f"havm/v1/hosts/{host}/heartbeat", json.dumps(beat))
                await asyncio.sleep(INTERVAL)


def manager_args(broker: int) -> tuple[str, ...]:
    return (
        "--broker",
        f"127.0.0.1:{broker}",
        "--heartbeat-interval",
        str(INTERVAL),
        "--heartbeat-threshold",
        str(THRESHOLD),
        "--probe-timeout",
        "0.5",
    )


@pytest.fixture
async def ha_cluster(
    loopback_agents: Agents,
    topology_file: Callable[[dict[str, Any]], Path],
    tmp_path: Path,
    manager_processes: list[ManagerProcess],
    broker: int,
) -> AsyncIterator[tuple[Stub, Beats, ManagerProcess]]:
    beats = Beats(broker, loopback_agents)
    task = asyncio.get_running_loop().create_task(beats.run())
    # Periodic refreshes far apart: the detector, not a failed refresh, notices the failure.
    proc = ManagerProcess(
        topology_file(loopback_agents),
        tmp_path / "state",
        refresh_interval_s=30.0,
        extra_args=manager_args(broker),
    )
    manager_processes.append(proc)
    try:
        await proc.start()
        async with grpc.aio.insecure_channel(proc.address) as channel:
            yield manager_pb2_grpc.ManagerServiceStub(channel), beats, proc
    finally:
        task.cancel()
        # Leaving the broker takes one bounded MQTT exchange (timeout=2); on a loaded
        # machine give it room, so the leftover-task check judges the code, not the load.
        await asyncio.wait([task], timeout=20)


async def host_state(stub: Stub, name: str) -> int:
    return (await stub.GetHost(m.GetHostRequest(name=name))).host.state


async def vm(stub: Stub, name: str) -> m.Vm:
    return (await stub.GetVm(m.GetVmRequest(name=name))).vm


async def create_running(stub: Stub, name: str, host: str, **fields: object) -> None:
    reply = await stub.CreateVm(m.CreateVmRequest(name=name, memory_mb=1024, host=host, **fields))
    async for update in stub.WatchJob(m.WatchJobRequest(id=reply.job.id), timeout=10):
        last = update.job
    assert last.state == m.JOB_STATE_COMPLETED, last.error


async def all_ok(stub: Stub) -> None:
    async def check() -> bool:
        hosts = (await stub.ListHosts(m.ListHostsRequest())).hosts
        return all(h.state == m.HOST_STATE_OK for h in hosts)

    await eventually(check, timeout=10, what="every host ok")


def on_agent(agents: Agents, host: str, vm_id: str) -> Any:
    """What `host`'s running agent holds of the VM (None if nothing)."""
    vm_host = agents[host].vm_host
    assert vm_host is not None, f"the agent of {host} is not running"
    return next((v for v in vm_host.list_vms() if v.spec.id == vm_id), None)


def running_copies(agents: Agents, vm_id: str) -> list[str]:
    """The hosts whose running agent runs the VM."""
    return [
        n
        for n, a in agents.items()
        if a.vm_host is not None
        and any(v.spec.id == vm_id and v.state is PowerState.RUNNING for v in a.vm_host.list_vms())
    ]


def slow_starts(agent: LoopbackAgent, seconds: float) -> Callable[[], None]:
    """Every START the agent carries out takes `seconds` more; returns what undoes it."""
    assert agent.vm_host is not None

    def wrap(operate: Callable[..., Any]) -> Callable[..., Any]:
        async def slow(vm_id: str, operation: Operation) -> Any:
            if operation is Operation.START:
                await asyncio.sleep(seconds)
            return await operate(vm_id, operation)

        return slow

    return intercept(agent.vm_host, "operate", wrap)


async def test_silent_power_off_fences_the_host_and_restarts_its_ha_vms_elsewhere(
    ha_cluster: tuple[Stub, Beats, ManagerProcess], loopback_agents: Agents
) -> None:
    stub, beats, proc = ha_cluster
    await all_ok(stub)
    await create_running(stub, "db1", "node1", highly_available=True, restart_priority=1)
    await create_running(stub, "web1", "node1", highly_available=True, restart_priority=3)
    await create_running(stub, "keep1", "node1", highly_available=True, restart_priority=4)
    await create_running(stub, "solo1", "standalone1")
    before = {name: await vm(stub, name) for name in ("db1", "web1", "keep1")}
    assert before["db1"].restart_priority == 1 and before["db1"].failover_count == 0
    old_generation = on_agent(loopback_agents, "node1", before["db1"].id).lease_generation

    # Freeze-like silence shorter than the window changes nothing.
    beats.alive.discard("node2")
    await asyncio.sleep(0.5)
    beats.alive.add("node2")
    await asyncio.sleep(0.6)
    assert await host_state(stub, "node2") == m.HOST_STATE_OK

    # Silent power-off of node1: no beats, no answer on the management path.
    beats.alive.discard("node1")
    await loopback_agents["node1"].stop()

    async def fenced() -> bool:
        return await host_state(stub, "node1") == m.HOST_STATE_FENCED

    await eventually(fenced, timeout=10, what=f"node1 fenced\n{proc.log()[-3000:]}")
    for name in ("db1", "web1"):
        moved = await vm(stub, name)
        assert moved.state == common_pb2.VM_STATE_RUNNING, moved.reason
        assert moved.host in ("node2", "node3") and moved.failover_count == 1
        assert on_agent(loopback_agents, moved.host, moved.id).lease_generation > old_generation
        assert running_copies(loopback_agents, moved.id) == [moved.host]
    kept = await vm(stub, "keep1")
    assert kept.host == "node1" and kept.failover_count == 0 and "priority none" in kept.reason

    # The stream tells the story in order: suspect, not responding, fencing, restarts, fenced.
    details: list[str] = []
    async for reply in stub.WatchEvents(m.WatchEventsRequest(replay=1000), timeout=2):
        details.append(f"{reply.event.kind} {reply.event.host} {reply.event.vm} {reply.event.detail}")
        if "node1 fencing => fenced" in details[-1]:
            break
    joined = "\n".join(details)
    order = ["node1 ok => suspect", "node1 suspect => not_responding", "node1 not_responding => fencing"]
    positions = [joined.index(step) for step in order]
    assert positions == sorted(positions), joined
    restarts = [d for d in details if d.startswith("failover") and "restarting VM" in d]
    assert "db1" in restarts[0] and "web1" in restarts[1], restarts

    # node1 comes back (its agent forgets the fenced copies): it rejoins as ok.
    await loopback_agents["node1"].start()
    beats.alive.add("node1")

    async def back() -> bool:
        return await host_state(stub, "node1") == m.HOST_STATE_OK

    await eventually(back, timeout=10, what="node1 ok again")
    for name in ("db1", "web1"):
        moved = await vm(stub, name)
        assert moved.host != "node1" and moved.state == common_pb2.VM_STATE_RUNNING
        assert on_agent(loopback_agents, "node1", moved.id) is None
        assert running_copies(loopback_agents, moved.id) == [moved.host]
    # The VM left there (restart priority none) is node1's still: its agent started it again.
    assert running_copies(loopback_agents, kept.id) == ["node1"]


async def test_heartbeat_only_isolation_is_no_failover(
    ha_cluster: tuple[Stub, Beats, ManagerProcess], loopback_agents: Agents
) -> None:
    stub, beats, _ = ha_cluster
    await all_ok(stub)
    await create_running(stub, "app1", "node2", highly_available=True)
    beats.alive.discard("node2")

    async def isolated() -> bool:
        return await host_state(stub, "node2") == m.HOST_STATE_ISOLATED

    await eventually(isolated, timeout=10, what="node2 isolated")
    await asyncio.sleep(1.0)
    app1 = await vm(stub, "app1")
    assert app1.host == "node2" and app1.failover_count == 0
    assert await host_state(stub, "node2") == m.HOST_STATE_ISOLATED
    assert running_copies(loopback_agents, app1.id) == ["node2"]
    beats.alive.add("node2")

    async def ok() -> bool:
        return await host_state(stub, "node2") == m.HOST_STATE_OK

    await eventually(ok, timeout=10, what="node2 ok again")


async def test_manager_killed_mid_failover_finishes_it_after_restart_and_runs_nothing_twice(
    ha_cluster: tuple[Stub, Beats, ManagerProcess],
    loopback_agents: Agents,
    manager_processes: list[ManagerProcess],
    broker: int,
) -> None:
    stub, beats, proc = ha_cluster
    await all_ok(stub)
    names = ("a1", "a2", "a3")
    for name in names:
        await create_running(stub, name, "node1", highly_available=True)
    ids = {name: (await vm(stub, name)).id for name in names}
    retained: list[bytes] = []

    async def watch_state() -> None:
        async with aiomqtt.Client("127.0.0.1", broker) as client:
            await client.subscribe("havm/v1/state/hosts/node1")
            async for message in client.messages:
                retained.append(bytes(message.payload))  # type: ignore[arg-type]

    watcher = asyncio.get_running_loop().create_task(watch_state())
    try:
        # Restarts on node3 are slow: the manager dies with the VMs restarted on node2
        # running and those on node3 taken over, not started.
        undo = slow_starts(loopback_agents["node3"], 1.0)
        beats.alive.discard("node1")
        await loopback_agents["node1"].stop()

        async def fencing() -> bool:
            return await host_state(stub, "node1") == m.HOST_STATE_FENCING

        await eventually(fencing, timeout=10, what="node1 fencing")
        await asyncio.sleep(0.8)  # some restarts done, others not
        proc.kill9()
        undo()
        again = ManagerProcess(
            proc.topology, proc.state_dir, refresh_interval_s=30.0, extra_args=manager_args(broker)
        )
        manager_processes.append(again)
        await again.start()
        async with grpc.aio.insecure_channel(again.address) as channel:
            stub2 = manager_pb2_grpc.ManagerServiceStub(channel)

            async def fenced() -> bool:
                return await host_state(stub2, "node1") == m.HOST_STATE_FENCED

            await eventually(fenced, timeout=15, what=f"node1 fenced after restart\n{again.log()[-3000:]}")
            assert "resuming the failover of host node1" in again.log()
            for name in names:
                record = await vm(stub2, name)
                assert record.state == common_pb2.VM_STATE_RUNNING, record.reason
                assert record.failover_count == 1
                assert running_copies(loopback_agents, ids[name]) == [record.host]
        await eventually(
            lambda: asyncio.sleep(0, b'{"state": "fenced"}' in retained), timeout=5, what="retained state"
        )
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
