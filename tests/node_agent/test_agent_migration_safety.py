"""Live migration between two agents in one process, over real gRPC on loopback, with a
failure placed exactly where a race would put it: a failover taking the lease at the
commit point, a copy fenced during the blackout, a destination that cannot resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_testkit import host_config

from node_agent.adapters.files import HostFiles
from node_agent.adapters.grpc_server import AgentServer
from node_agent.app import migration_out
from node_agent.app.guests import HostedVm
from node_agent.app.host import VmHost
from node_agent.core.config import parse_host_config
from node_agent.core.errors import AgentError, FailedPrecondition
from node_agent.core.lease import Lease
from node_agent.core.migration import MigrationPhase, MigrationRequest
from node_agent.core.power import Operation, PowerState
from node_agent.core.vm import StorageKind, StorageRef, VmSpec, Workload

CSV = StorageRef(StorageKind.CSV, "Volume1")
SPEC = VmSpec("vm-1", "web1", 16, 1, 1, CSV, ("External",), workload=Workload(4.0, 100.0))


@dataclass
class Node:
    host: VmHost
    server: AgentServer

    @property
    def name(self) -> str:
        return self.host.config.name


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    started: list[Node] = []
    for name in ("node1", "node2"):
        raw = host_config(tmp_path, name)
        raw["settings"] |= {"migration_stall_timeout_s": 2.0}
        config = parse_host_config(raw)
        files = HostFiles(config, tmp_path / "hosts" / name)
        files.prepare()
        host = VmHost(config, files)
        server = AgentServer(host, "127.0.0.1:0")
        await server.start()
        started.append(Node(host, server))
    yield started[0], started[1]
    for node in started:
        await node.server.stop(0)
        await node.host.stop()


def vm_dir(tmp_path: Path) -> Path:
    return tmp_path / "san" / "csv" / "Volume1" / "vm-1"


def lease(tmp_path: Path) -> dict[str, Any]:
    return json.loads((vm_dir(tmp_path) / "lease.json").read_text())


async def running_vm(node: Node) -> HostedVm:
    node.host.create_vm(SPEC)
    await node.host.operate(SPEC.id, Operation.START)
    await asyncio.sleep(0.1)
    vm = node.host.hosted(SPEC.id)
    assert vm is not None and vm.state is PowerState.RUNNING
    return vm


async def migrate(source: Node, destination: Node, generation: int = 2) -> list[Any]:
    request = MigrationRequest(
        vm_id=SPEC.id,
        migration_id="m-1",
        destination_host=destination.name,
        destination_address=destination.server.address,
        lease_generation=generation,
        max_passes=0,
        blackout_budget_ms=0,
        bandwidth_mb_per_s=0,
        storage=None,
    )
    return [update async for update in source.host.migrate_vm(request)]


async def gone(node: Node) -> None:
    """Wait until the node holds nothing of the VM, not even a skeleton."""
    async with asyncio.timeout(3):
        while SPEC.id in node.host.incoming or node.host.hosted(SPEC.id) is not None:
            await asyncio.sleep(0.02)


def write_foreign_lease(node: Node, tmp_path: Path, generation: int) -> None:
    node.host.files.write_lease(vm_dir(tmp_path), Lease(generation, "node3"))


async def test_a_failover_at_the_commit_point_wins_and_the_source_stays_stopped(
    nodes: tuple[Node, Node], tmp_path: Path
) -> None:
    node1, node2 = nodes
    source_vm = await running_vm(node1)
    swap = node1.host.files.swap_lease

    def failover_first(directory: Path, decide: Callable[[Lease | None], Lease]) -> Lease:
        # node3 takes the VM over with the same generation the migration was to write.
        write_foreign_lease(node1, tmp_path, 2)
        return swap(directory, decide)

    node1.host.files.swap_lease = failover_first  # type: ignore[method-assign]

    with pytest.raises(AgentError) as caught:
        await migrate(node1, node2)

    assert caught.value.code == "FAILED_PRECONDITION"
    assert caught.value.message.startswith("VM web1 fenced: the lease moved to node3 (generation 2)")
    assert "not resumed on host node1" in caught.value.message
    assert lease(tmp_path) == {"generation": 2, "owner": "node3"}
    assert node1.host.hosted(SPEC.id) is None and source_vm.task is None and source_vm.guest is None
    assert not (node1.host.files.registry_dir / "vm-1.json").exists()
    await gone(node2)


async def test_a_copy_fenced_during_the_blackout_does_not_hand_over(
    nodes: tuple[Node, Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node1, node2 = nodes
    await running_vm(node1)
    real_stop = migration_out.stop_guest

    async def stop_then_fail_over(vm: HostedVm) -> None:
        await real_stop(vm)
        write_foreign_lease(node1, tmp_path, 5)

    monkeypatch.setattr(migration_out, "stop_guest", stop_then_fail_over)

    with pytest.raises(AgentError) as caught:
        await migrate(node1, node2)

    assert caught.value.code == "FAILED_PRECONDITION" and "generation 5" in caught.value.message
    assert lease(tmp_path) == {"generation": 5, "owner": "node3"}
    assert node1.host.hosted(SPEC.id) is None
    await gone(node2)


async def test_a_destination_that_cannot_resume_keeps_the_vm_it_holds_the_lease_of(
    nodes: tuple[Node, Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node1, node2 = nodes
    await running_vm(node1)
    disks = node2.host.vms.disks
    real_open_journal = disks.open_journal

    def broken_disk(disk: Path) -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(disks, "open_journal", broken_disk)

    with pytest.raises(AgentError) as caught:
        await migrate(node1, node2)

    assert caught.value.code == "UNAVAILABLE" and "now belongs to host node2" in caught.value.message
    assert node1.host.hosted(SPEC.id) is None
    assert lease(tmp_path) == {"generation": 2, "owner": "node2"}
    kept = node2.host.hosted(SPEC.id)
    assert kept is not None and kept.state is PowerState.FAILED and kept.lease_generation == 2
    assert "Input/output error" in kept.reason and kept.migration_id == ""
    registry = json.loads((node2.host.files.registry_dir / "vm-1.json").read_text())
    assert registry["power_state"] == "failed" and registry["lease_generation"] == 2
    assert json.loads((vm_dir(tmp_path) / "vm.json").read_text())["owner_host"] == "node2"

    monkeypatch.setattr(disks, "open_journal", real_open_journal)
    view = await node2.host.operate(SPEC.id, Operation.START)
    assert view.state is PowerState.RUNNING


async def test_a_vm_busy_with_another_operation_is_not_migrated(
    nodes: tuple[Node, Node], tmp_path: Path
) -> None:
    node1, node2 = nodes
    vm = await running_vm(node1)
    async with vm.lock:
        with pytest.raises(FailedPrecondition) as caught:
            await migrate(node1, node2)
    assert "in the middle of another operation" in caught.value.message
    assert vm.migration_id == "" and vm.state is PowerState.RUNNING

    updates = await migrate(node1, node2)
    assert updates[-1].phase is MigrationPhase.COMPLETED
    assert lease(tmp_path) == {"generation": 2, "owner": "node2"}


async def test_a_storage_move_retires_the_old_files_before_the_guest_writes_again(
    nodes: tuple[Node, Node], tmp_path: Path
) -> None:
    node1, _ = nodes
    vm = await running_vm(node1)
    old_dir = vm.vm_dir
    seen: list[tuple[bool, str]] = []
    start = node1.host.vms.start_guest

    def start_and_look(started: HostedVm) -> None:
        seen.append(((old_dir / "vm.json").exists(), node1.host.get_vm(SPEC.id).migration_id))
        start(started)

    node1.host.vms.start_guest = start_and_look  # type: ignore[method-assign]

    result = await node1.host.move_vm_storage(SPEC.id, StorageRef(StorageKind.LUN, "lun1"))

    assert seen == [(False, "storage-move")]
    assert result.vm.migration_id == "" and result.vm.spec.storage.name == "lun1"
    assert not old_dir.exists()
