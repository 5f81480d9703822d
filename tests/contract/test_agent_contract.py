"""One contract, two ways to run the agent: the assertions the manager relies on, run
through the manager's own AgentService client against the agent app in process on
virtual time (what scenarios and the manager's own tests use, havm.scenario.sim_agent)
and against real agent processes over gRPC.

Both run the same agent app; what differs is everything around it (transport, clock,
threads, processes).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from havm.cli.local_cluster import load_topology
from havm.contract.host_config import agent_config, agent_config_json
from havm.ports import free_ports
from havm.scenario.sim_cluster import SimCluster
from havm.scenario.virtual_loop import VirtualTimeLoop
from manager.adapters.agent_client import AgentClient
from manager.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    ManagerError,
    MigrationFailure,
    NotFoundError,
    UnavailableError,
)
from manager.core.migration_phase import MigrationPhase
from manager.core.model import StorageKind, StorageLocation, VmOperation, VmRecord
from manager.core.settings import Settings
from manager.core.states import VmState

HOSTS = ("node1", "node2")
Check = Callable[[AgentClient, dict[str, str]], Awaitable[None]]


class World:
    """Runs a check against two agents of the default topology's cluster."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind, self.tmp = kind, tmp
        self.topology, _ = load_topology(None)
        self._processes: list[subprocess.Popen[bytes]] = []

    def run(self, check: Check) -> None:
        if self.kind == "sim":
            self._run_sim(check)
        else:
            self._run_real(check)

    def _run_sim(self, check: Check) -> None:
        loop = VirtualTimeLoop()

        async def main() -> None:
            cluster = SimCluster(loop, self.topology, self.tmp)
            await cluster.start(with_manager=False)
            client = AgentClient(Settings(), open_channel=cluster.network.channel)
            await check(client, {h: cluster.hosts[h].address for h in HOSTS})

        try:
            loop.run_until_complete(main())
        finally:
            loop.discard_all()
            loop.close()

    def _run_real(self, check: Check) -> None:
        ports = free_ports(len(HOSTS))
        addresses = {h: f"127.0.0.1:{port}" for h, port in zip(HOSTS, ports, strict=True)}
        for host in HOSTS:
            config = self.tmp / f"{host}.json"
            config.write_text(
                agent_config_json(agent_config(self.topology, self.topology.host(host), self.tmp / "san"))
            )
            command = [sys.executable, "-m", "node_agent", "--insecure", "--config", str(config)]
            command += ["--state-dir", str(self.tmp / host), "--listen", addresses[host]]
            self._processes.append(subprocess.Popen(command, stderr=subprocess.DEVNULL))

        async def main() -> None:
            client = AgentClient(Settings())
            deadline = time.monotonic() + 15
            for host, address in addresses.items():
                while True:
                    try:
                        await client.probe(host, address, 1.0)
                        break
                    except UnavailableError:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.1)
            try:
                await check(client, addresses)
            finally:
                await client.close()

        asyncio.run(main())

    def close(self) -> None:
        for process in self._processes:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(params=["sim", "real"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    w = World(request.param, tmp_path)
    try:
        yield w
    finally:
        w.close()


def vm(name: str, host: str = "node1") -> VmRecord:
    return VmRecord(
        id=f"id-{name}",
        name=name,
        host=host,
        state=VmState.STOPPED,
        highly_available=True,
        memory_mb=256,
        cpus=1,
        disk_gb=1,
        storage=StorageLocation(StorageKind.CSV, "Volume1"),
    )


def test_inventory_of_a_fresh_host(world: World) -> None:
    async def check(agents: AgentClient, at: dict[str, str]) -> None:
        inventory = await agents.get_inventory("node1", at["node1"])
        assert (inventory.host_name, inventory.cluster, inventory.profile) == (
            "node1",
            "cluster1",
            "hyperv-2008r2",
        )
        assert inventory.memory_mb == 32768 and inventory.vms == ()
        assert {v.name for v in inventory.volumes} == {"Volume1", "lun1", "lun2", "lun3"}
        assert inventory.boot_id

    world.run(check)


def test_create_start_stop_delete_and_their_refusals(world: World) -> None:
    async def check(agents: AgentClient, at: dict[str, str]) -> None:
        created = await agents.create_vm("node1", at["node1"], vm("web1"))
        assert created.state is VmState.STOPPED and created.lease_generation == 1
        with pytest.raises(AlreadyExistsError):
            await agents.create_vm("node1", at["node1"], vm("web1"))
        running = await agents.operate_vm("node1", at["node1"], "id-web1", VmOperation.START)
        assert running.state is VmState.RUNNING
        assert (await agents.get_vm("node1", at["node1"], "id-web1")).state is VmState.RUNNING
        with pytest.raises(NotFoundError):
            await agents.get_vm("node1", at["node1"], "id-nobody")
        with pytest.raises(FailedPreconditionError):
            await agents.delete_vm("node1", at["node1"], "id-web1")  # running: stop it first
        await agents.operate_vm("node1", at["node1"], "id-web1", VmOperation.TURN_OFF)
        await agents.delete_vm("node1", at["node1"], "id-web1")
        assert (await agents.get_inventory("node1", at["node1"])).vms == ()

    world.run(check)


def test_a_take_over_needs_a_newer_lease_and_fences_the_old_copy(world: World) -> None:
    async def check(agents: AgentClient, at: dict[str, str]) -> None:
        await agents.create_vm("node1", at["node1"], vm("db1"))
        await agents.operate_vm("node1", at["node1"], "id-db1", VmOperation.START)
        with pytest.raises(FailedPreconditionError):
            await agents.create_vm(
                "node2", at["node2"], vm("db1", "node2"), take_over=True, lease_generation=1
            )
        taken = await agents.create_vm(
            "node2", at["node2"], vm("db1", "node2"), take_over=True, lease_generation=2
        )
        assert taken.lease_generation == 2
        await agents.operate_vm("node2", at["node2"], "id-db1", VmOperation.START)
        await asyncio.sleep(1.0)  # a guest tick or more: the old copy sees the lease moved
        old = await agents.get_inventory("node1", at["node1"])
        assert all(v.state is not VmState.RUNNING for v in old.vms if v.id == "id-db1")
        assert (await agents.get_vm("node2", at["node2"], "id-db1")).state is VmState.RUNNING

    world.run(check)


def test_a_live_migration_hands_the_vm_over(world: World) -> None:
    async def check(agents: AgentClient, at: dict[str, str]) -> None:
        from manager.core.model import LiveMigrationOrder

        await agents.create_vm("node1", at["node1"], vm("mig1"))
        await agents.operate_vm("node1", at["node1"], "id-mig1", VmOperation.START)
        order = LiveMigrationOrder(
            vm_id="id-mig1",
            migration_id="m-1",
            destination_host="node2",
            destination_address=at["node2"],
            lease_generation=2,
            max_passes=0,
            blackout_budget_ms=0,
            bandwidth_mb_per_s=0.0,
        )
        updates = [p async for p in agents.migrate_vm("node1", at["node1"], order)]
        assert updates and updates[-1].phase is MigrationPhase.COMPLETED
        assert (await agents.get_vm("node2", at["node2"], "id-mig1")).state is VmState.RUNNING
        assert [v.id for v in (await agents.get_inventory("node1", at["node1"])).vms] == []

    world.run(check)


def test_a_migration_to_nowhere_fails_as_peer_gone_and_the_vm_stays(world: World) -> None:
    async def check(agents: AgentClient, at: dict[str, str]) -> None:
        from manager.core.model import LiveMigrationOrder

        await agents.create_vm("node1", at["node1"], vm("lost1"))
        await agents.operate_vm("node1", at["node1"], "id-lost1", VmOperation.START)
        nowhere = "127.0.0.1:9" if world.kind == "real" else "nowhere.sim:50051"
        order = LiveMigrationOrder(
            vm_id="id-lost1",
            migration_id="m-2",
            destination_host="node9",
            destination_address=nowhere,
            lease_generation=2,
            max_passes=0,
            blackout_budget_ms=0,
            bandwidth_mb_per_s=0.0,
        )
        with pytest.raises(ManagerError) as failed:
            _ = [p async for p in agents.migrate_vm("node1", at["node1"], order)]
        assert failed.value.migration_failure is MigrationFailure.PEER_GONE, failed.value.message
        assert (await agents.get_vm("node1", at["node1"], "id-lost1")).state is VmState.RUNNING

    world.run(check)


def test_an_unreachable_agent_is_unavailable(world: World) -> None:
    async def check(agents: AgentClient, at: dict[str, str]) -> None:
        with pytest.raises(UnavailableError):
            await agents.probe("node9", "127.0.0.1:9" if world.kind == "real" else "node9.sim:50051", 1.0)

    world.run(check)


def test_a_network_transfer_moves_a_stopped_vm_and_a_refusal_leaves_it(world: World) -> None:
    async def check(agents: AgentClient, at: dict[str, str]) -> None:
        from dataclasses import replace

        from manager.core.model import TransferOrder

        record = vm("tx1")
        await agents.create_vm("node1", at["node1"], record)

        def order(storage: StorageLocation, transfer_id: str) -> TransferOrder:
            moved = replace(record, host="node2", storage=storage, highly_available=False)
            return TransferOrder(transfer_id, "node2", at["node2"], moved, lease_generation=2)

        # Volume1 is one directory for both hosts: the destination finds the VM's files there.
        with pytest.raises(AlreadyExistsError) as refused:
            _ = [p async for p in agents.send_vm("node1", at["node1"], order(record.storage, "t-1"))]
        assert refused.value.message.startswith("host node2: CSV volume Volume1 of host node2 already holds")
        assert (await agents.get_vm("node1", at["node1"], "id-tx1")).state is VmState.STOPPED

        local = StorageLocation(StorageKind.LOCAL_DISK, "C")
        updates = [p async for p in agents.send_vm("node1", at["node1"], order(local, "t-2"))]
        assert updates[-1].vm is not None and updates[-1].vm.lease_generation == 2
        assert all(u.vm is None for u in updates[:-1])
        assert (await agents.get_vm("node2", at["node2"], "id-tx1")).state is VmState.STOPPED
        assert [v.id for v in (await agents.get_inventory("node1", at["node1"])).vms] == []

    world.run(check)
