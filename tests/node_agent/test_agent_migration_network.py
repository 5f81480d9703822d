"""A host's live-migration network cut like a pulled cable (the file `havm fault isolate
HOST --from migration` creates): both ends of the stream see a silent peer. Cut for
longer than the stall timeout, the migration fails with the VM still running on its
source and the destination's skeleton gone; a cut healed within it only delays the
stream. Two agents in one process, over real gRPC on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from agent_testkit import InProcessNode, start_in_process_nodes, stop_in_process_nodes

from node_agent.adapters.migration_network import CUT_FILE, POLL_S
from node_agent.app.migration_out import OutgoingMigration
from node_agent.core.errors import AgentError
from node_agent.core.migration import MigrationPhase, MigrationProgress, MigrationRequest
from node_agent.core.power import Operation, PowerState
from node_agent.core.vm import StorageKind, StorageRef, VmSpec, Workload

CSV = StorageRef(StorageKind.CSV, "Volume1")
SPEC = VmSpec("vm-1", "web1", 32, 1, 1, CSV, ("External",), workload=Workload(4.0, 50.0))
STALL_S = 1.0
Pair = tuple[InProcessNode, InProcessNode]


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Pair]:
    settings = {"migration_stall_timeout_s": STALL_S, "migration_progress_interval_s": 0.05}
    started = await start_in_process_nodes(tmp_path, settings)
    yield started[0], started[1]
    await stop_in_process_nodes(started)


def request(destination: InProcessNode, migration_id: str, generation: int) -> MigrationRequest:
    # 32 MB at 16 MB/s: two seconds of pre-copy to cut into.
    return MigrationRequest(
        SPEC.id, migration_id, destination.name, destination.server.address, generation, 0, 0, 16.0, None
    )


def cut(node: InProcessNode, tmp_path: Path) -> Path:
    flag = tmp_path / "state" / node.name / CUT_FILE
    flag.touch()
    return flag


async def pre_copy(updates: AsyncIterator[MigrationProgress]) -> None:
    async for update in updates:
        if update.phase is MigrationPhase.PRE_COPY and update.bytes_sent > 0:
            return
    raise AssertionError("the migration ended before its pre-copy")


async def finish(updates: AsyncIterator[MigrationProgress]) -> MigrationProgress:
    last = None
    async for update in updates:
        last = update
    assert last is not None
    return last


async def start(node1: InProcessNode) -> None:
    node1.host.create_vm(SPEC)
    await node1.host.operate(SPEC.id, Operation.START)
    await asyncio.sleep(0.1)


@pytest.mark.parametrize("side", ["destination", "source"])
async def test_a_cut_longer_than_the_stall_timeout_leaves_the_vm_on_its_source(
    nodes: Pair, tmp_path: Path, side: str
) -> None:
    node1, node2 = nodes
    await start(node1)
    updates = node1.host.migrate_vm(request(node2, "m-1", 2))
    await pre_copy(updates)
    flag = cut(node2 if side == "destination" else node1, tmp_path)
    began = time.monotonic()
    with pytest.raises(AgentError, match="did not answer within 1 s; VM web1 keeps running on host node1"):
        await finish(updates)
    assert time.monotonic() - began >= STALL_S * 0.9  # the silence, not an error, ended it
    vm = node1.host.hosted(SPEC.id)
    assert vm is not None and vm.state is PowerState.RUNNING and vm.migration_id in ("", None)
    for _ in range(100):  # the destination's own stall timeout drops the skeleton
        if not node2.host.incoming:
            break
        await asyncio.sleep(0.05)
    assert node2.host.incoming == {} and node2.host.hosted(SPEC.id) is None

    flag.unlink()
    final = await finish(node1.host.migrate_vm(request(node2, "m-2", 2)))
    assert final.phase is MigrationPhase.COMPLETED
    assert final.memory_digest == final.resumed_digest
    assert node1.host.hosted(SPEC.id) is None
    moved = node2.host.hosted(SPEC.id)
    assert moved is not None and moved.state is PowerState.RUNNING


async def test_a_cut_healed_within_the_stall_timeout_only_delays(nodes: Pair, tmp_path: Path) -> None:
    node1, node2 = nodes
    await start(node1)
    updates = node1.host.migrate_vm(request(node2, "m-1", 2))
    await pre_copy(updates)
    migration = node1.host.outgoing["m-1"]
    flag = cut(node1, tmp_path)
    await asyncio.sleep(2 * POLL_S)
    sent_when_cut = migration._bytes_sent
    await asyncio.sleep(STALL_S / 2 - 2 * POLL_S)
    assert migration._bytes_sent == sent_when_cut  # nothing went out while cut
    flag.unlink()
    final = await finish(updates)
    assert final.bytes_sent > sent_when_cut
    assert final.phase is MigrationPhase.COMPLETED and final.memory_digest == final.resumed_digest
    moved = node2.host.hosted(SPEC.id)
    assert moved is not None and moved.state is PowerState.RUNNING and node1.host.hosted(SPEC.id) is None


@pytest.mark.parametrize("moves_files", [False, True], ids=["shared-storage", "csv-to-lun"])
@pytest.mark.parametrize("side", ["destination", "source"])
async def test_a_cut_at_the_commit_point_leaves_the_vm_running_on_the_destination(
    nodes: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: str, moves_files: bool
) -> None:
    """The lease moved, then the network went: the commit never arrives. The destination
    reads the lease the source moved (on the old files too, when they move) and resumes."""
    node1, node2 = nodes
    await start(node1)
    hand_over = OutgoingMigration._hand_over_lease

    async def cut_then_hand_over(self: OutgoingMigration) -> None:
        cut(node2 if side == "destination" else node1, tmp_path)
        await asyncio.sleep(2 * POLL_S)  # noticed by now: nothing crosses from here on
        await hand_over(self)

    monkeypatch.setattr(OutgoingMigration, "_hand_over_lease", cut_then_hand_over)
    order = request(node2, "m-1", 2)
    if moves_files:
        order = replace(order, storage=StorageRef(StorageKind.LUN, "lun1"))
    with pytest.raises(AgentError, match="now belongs to host node2"):
        await finish(node1.host.migrate_vm(order))
    assert node1.host.hosted(SPEC.id) is None  # the source let it go
    for _ in range(100):  # the destination waits twice the stall timeout, then reads the lease
        moved = node2.host.hosted(SPEC.id)
        if moved is not None and moved.state is PowerState.RUNNING:
            break
        await asyncio.sleep(0.05)
    moved = node2.host.hosted(SPEC.id)
    assert moved is not None and moved.state is PowerState.RUNNING, node2.host.incoming
    assert moved.spec.storage == (StorageRef(StorageKind.LUN, "lun1") if moves_files else CSV)
    assert node2.host.incoming == {}
