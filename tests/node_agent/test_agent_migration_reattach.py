"""A caller that lost the progress stream of a live migration (a restarted manager) asks
the source agent again with the same migration id: it follows the migration from the
latest update on, beside the first caller if that one is still there, or learns how it
ended. Two agents in one process, over real gRPC on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from agent_testkit import InProcessNode, start_in_process_nodes, stop_in_process_nodes

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from node_agent.app.host import VmHost
from node_agent.core.errors import AgentError, FailedPrecondition, NotFound, Unavailable
from node_agent.core.migration import (
    REMEMBERED_MIGRATIONS,
    FinishedMigrations,
    MigrationPhase,
    MigrationProgress,
    MigrationRequest,
)
from node_agent.core.power import Operation, PowerState
from node_agent.core.vm import StorageKind, StorageRef, VmSpec, Workload

CSV = StorageRef(StorageKind.CSV, "Volume1")
SPEC = VmSpec("vm-1", "web1", 16, 1, 1, CSV, ("External",), workload=Workload(4.0, 100.0))
# 16 MB at 16 MB/s: a first pass of about a second, long enough to join it.
SLOW = 16.0
ORDER = list(MigrationPhase)
PB_PHASES = {
    agent_pb2.MIGRATION_PHASE_PREPARING: MigrationPhase.PREPARING,
    agent_pb2.MIGRATION_PHASE_DISK_COPY: MigrationPhase.DISK_COPY,
    agent_pb2.MIGRATION_PHASE_PRE_COPY: MigrationPhase.PRE_COPY,
    agent_pb2.MIGRATION_PHASE_BLACKOUT: MigrationPhase.BLACKOUT,
    agent_pb2.MIGRATION_PHASE_COMPLETED: MigrationPhase.COMPLETED,
}


Pair = tuple[InProcessNode, InProcessNode]


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Pair]:
    settings = {"migration_stall_timeout_s": 2.0, "migration_progress_interval_s": 0.05}
    started = await start_in_process_nodes(tmp_path, settings)
    yield started[0], started[1]
    await stop_in_process_nodes(started)


@pytest.fixture
async def stub(nodes: Pair) -> AsyncIterator[agent_pb2_grpc.AgentServiceStub]:
    """A client of node1's AgentService, as the manager talks to it."""
    async with grpc.aio.insecure_channel(nodes[0].server.address) as channel:
        yield agent_pb2_grpc.AgentServiceStub(channel)


async def running_vm(node: InProcessNode) -> None:
    node.host.create_vm(SPEC)
    await node.host.operate(SPEC.id, Operation.START)
    await asyncio.sleep(0.1)


def request(
    destination: InProcessNode, migration_id: str = "m-1", generation: int = 2, **extra: Any
) -> MigrationRequest:
    fields: dict[str, Any] = {
        "max_passes": 0,
        "blackout_budget_ms": 0,
        "bandwidth_mb_per_s": 0,
        "storage": None,
    } | extra
    return MigrationRequest(
        vm_id=SPEC.id,
        migration_id=migration_id,
        destination_host=destination.name,
        destination_address=destination.server.address,
        lease_generation=generation,
        **fields,
    )


def nothing_but(migration_id: str) -> MigrationRequest:
    """A request naming only the migration: were it taken for a new one, its checks would refuse it."""
    return MigrationRequest(
        vm_id="",
        migration_id=migration_id,
        destination_host="",
        destination_address="",
        lease_generation=0,
        max_passes=0,
        blackout_budget_ms=0,
        bandwidth_mb_per_s=0,
        storage=None,
    )


async def until_phase(
    updates: AsyncIterator[MigrationProgress], phase: MigrationPhase
) -> list[MigrationProgress]:
    seen = []
    async for update in updates:
        seen.append(update)
        if update.phase is phase:
            return seen
    raise AssertionError(f"the migration ended before {phase.value}")


async def collect(updates: AsyncIterator[MigrationProgress]) -> list[MigrationProgress]:
    return [update async for update in updates]


def assert_forward(updates: list[MigrationProgress]) -> None:
    positions = [ORDER.index(update.phase) for update in updates]
    assert positions == sorted(positions)
    assert [u.bytes_sent for u in updates] == sorted(u.bytes_sent for u in updates)


def same_figures(a: MigrationProgress, b: MigrationProgress) -> None:
    assert a.phase is b.phase is MigrationPhase.COMPLETED
    assert (a.duration_ms, a.blackout_ms, a.memory_digest, a.resumed_digest) == (
        b.duration_ms,
        b.blackout_ms,
        b.memory_digest,
        b.resumed_digest,
    )
    assert (a.bytes_sent, a.pass_number, a.vm) == (b.bytes_sent, b.pass_number, b.vm)


def pb_request(migration_id: str, reattach: bool = False) -> agent_pb2.AgentServiceMigrateVmRequest:
    return agent_pb2.AgentServiceMigrateVmRequest(migration_id=migration_id, reattach=reattach)


async def test_a_caller_reattaching_during_pre_copy_follows_the_migration_to_the_same_end(
    nodes: Pair,
) -> None:
    node1, node2 = nodes
    await running_vm(node1)
    first = node1.host.migrate_vm(request(node2, bandwidth_mb_per_s=SLOW))
    first_seen = await until_phase(first, MigrationPhase.PRE_COPY)
    migration = node1.host.outgoing["m-1"]

    second = node1.host.migrate_vm(nothing_but("m-1"))
    # A new migration of the same VM is still refused, as before.
    with pytest.raises(FailedPrecondition, match="being live-migrated \\(migration m-1\\)"):
        node1.host.migrate_vm(request(node2, migration_id="m-2", generation=3))
    first_rest, second_seen = await asyncio.gather(collect(first), collect(second))

    assert second_seen[0].phase is MigrationPhase.PRE_COPY  # the phase at once, not from the start
    assert second_seen[0].bytes_sent >= first_seen[-1].bytes_sent
    assert len(second_seen) > 2
    assert_forward(first_seen + first_rest)
    assert_forward(second_seen)
    same_figures(second_seen[-1], first_rest[-1])
    assert second_seen[-1].memory_digest == second_seen[-1].resumed_digest
    assert MigrationPhase.BLACKOUT in [u.phase for u in second_seen]
    assert migration.listening == 0 and node1.host.outgoing == {}
    arrived = node2.host.hosted(SPEC.id)
    assert arrived is not None and arrived.state is PowerState.RUNNING and arrived.lease_generation == 2


async def test_the_first_listener_going_away_stops_neither_the_migration_nor_the_second(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    await running_vm(node1)
    pb = agent_pb2.AgentServiceMigrateVmRequest(
        vm_id=SPEC.id,
        migration_id="m-1",
        destination_host=node2.name,
        destination_address=node2.server.address,
        lease_generation=2,
        bandwidth_mb_per_s=SLOW,
    )
    first = stub.MigrateVm(pb)
    while PB_PHASES[(await first.read()).phase] is not MigrationPhase.PRE_COPY:
        pass
    migration = node1.host.outgoing["m-1"]
    second = stub.MigrateVm(pb_request("m-1"))
    joined = await second.read()
    assert PB_PHASES[joined.phase] is MigrationPhase.PRE_COPY and migration.listening == 2

    first.cancel()  # as a manager killed mid-migration
    async with asyncio.timeout(2):
        while migration.listening != 1:
            await asyncio.sleep(0.01)

    rest = []
    while (update := await second.read()) is not grpc.aio.EOF:
        rest.append(update)
    phases = [PB_PHASES[u.phase] for u in [joined, *rest]]
    assert phases == sorted(phases, key=ORDER.index) and phases[-1] is MigrationPhase.COMPLETED
    final = rest[-1]
    assert final.memory_digest and final.memory_digest == final.resumed_digest
    assert final.vm.spec.id == SPEC.id and final.vm.lease_generation == 2
    assert migration.listening == 0 and node1.host.hosted(SPEC.id) is None
    arrived = node2.host.hosted(SPEC.id)
    assert arrived is not None and arrived.state is PowerState.RUNNING


async def test_a_caller_reattaching_after_the_end_gets_the_final_update(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    await running_vm(node1)
    final = (await collect(node1.host.migrate_vm(request(node2))))[-1]
    assert final.phase is MigrationPhase.COMPLETED and node1.host.outgoing == {}

    again = await collect(node1.host.migrate_vm(nothing_but("m-1")))
    assert len(again) == 1
    same_figures(again[0], final)

    over_grpc = [update async for update in stub.MigrateVm(pb_request("m-1"))]
    assert len(over_grpc) == 1
    pb = over_grpc[0]
    assert PB_PHASES[pb.phase] is MigrationPhase.COMPLETED
    assert (pb.duration_ms, pb.blackout_ms, pb.memory_digest, pb.resumed_digest) == (
        final.duration_ms,
        final.blackout_ms,
        final.memory_digest,
        final.resumed_digest,
    )
    assert (pb.bytes_sent, getattr(pb, "pass")) == (final.bytes_sent, final.pass_number)
    assert pb.vm.spec.id == SPEC.id and pb.vm.lease_generation == 2
    assert pb.vm.state == common_pb2.VM_STATE_RUNNING

    # An agent restart forgets the id: the request is a new migration, and fails as one.
    restarted = VmHost(node1.host.config, node1.host.files)
    await restarted.recover()
    with pytest.raises(NotFound, match="host node1 has no VM with id vm-1"):
        restarted.migrate_vm(request(node2))
    # Asked only to follow, it says it knows no such migration, and starts nothing.
    with pytest.raises(NotFound, match="host node1 knows no live migration m-1"):
        restarted.migrate_vm(request(node2, reattach=True))
    following = [update async for update in stub.MigrateVm(pb_request("m-1", reattach=True))]
    assert PB_PHASES[following[-1].phase] is MigrationPhase.COMPLETED  # the running agent remembers
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        [update async for update in stub.MigrateVm(pb_request("m-unknown", reattach=True))]
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    assert "knows no live migration m-unknown" in (unknown.value.details() or "")


async def test_a_caller_reattaching_to_a_failed_migration_gets_the_same_error(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    node1, node2 = nodes
    await running_vm(node1)
    monkeypatch.setattr(node2.host.vms, "compatibility", lambda spec, cpu: ["host node2 is full"])
    with pytest.raises(AgentError) as failed:
        await collect(node1.host.migrate_vm(request(node2)))
    assert failed.value.code == "FAILED_PRECONDITION"
    assert "host node2 cannot take VM web1: host node2 is full" in failed.value.message

    for _ in range(2):  # every caller gets its own exception, the same failure
        with pytest.raises(AgentError) as again:
            await collect(node1.host.migrate_vm(nothing_but("m-1")))
        assert again.value is not failed.value
        assert (again.value.code, again.value.message) == (failed.value.code, failed.value.message)
        assert again.value.__traceback__ is not None and again.value.__context__ is None

    with pytest.raises(grpc.aio.AioRpcError) as over_grpc:
        [update async for update in stub.MigrateVm(pb_request("m-1"))]
    assert over_grpc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert over_grpc.value.details() == failed.value.message

    vm = node1.host.hosted(SPEC.id)
    assert vm is not None and vm.state is PowerState.RUNNING and vm.migration_id == ""
    assert node1.host.outgoing == {}  # nothing was started again


async def test_several_callers_following_one_migration_all_get_its_end(nodes: Pair) -> None:
    node1, node2 = nodes
    await running_vm(node1)
    first = node1.host.migrate_vm(request(node2))
    listeners = [node1.host.migrate_vm(nothing_but("m-1")) for _ in range(3)]
    results = await asyncio.gather(*(collect(updates) for updates in [first, *listeners]))
    finals = [updates[-1] for updates in results]
    for final in finals[1:]:
        same_figures(final, finals[0])
    for updates in results:
        assert_forward(updates)


def test_only_the_last_64_outcomes_are_remembered() -> None:
    assert REMEMBERED_MIGRATIONS == 64
    finished = FinishedMigrations()
    for n in range(REMEMBERED_MIGRATIONS + 1):
        outcome = (
            Unavailable(f"host node2 went away ({n})")
            if n % 2
            else MigrationProgress(MigrationPhase.COMPLETED, pass_number=n)
        )
        finished.remember(f"m-{n}", outcome)

    assert len(finished) == REMEMBERED_MIGRATIONS
    assert finished.get("m-0") is None
    assert isinstance(finished.get("m-1"), Unavailable)
    last = finished.get(f"m-{REMEMBERED_MIGRATIONS}")
    assert isinstance(last, MigrationProgress) and last.pass_number == REMEMBERED_MIGRATIONS


async def test_a_host_forgets_its_oldest_outcome_and_starts_afresh_for_its_id(
    nodes: Pair,
) -> None:
    node1, node2 = nodes
    host = node1.host
    assert host.finished_migrations.limit == REMEMBERED_MIGRATIONS
    await running_vm(node1)
    for n in range(REMEMBERED_MIGRATIONS + 1):
        host.finished_migrations.remember(
            f"m-{n}", MigrationProgress(MigrationPhase.COMPLETED, pass_number=n)
        )

    kept = host.follow_migration("m-1")
    assert kept is not None and [u.pass_number for u in await collect(kept)] == [1]
    assert host.follow_migration("m-0") is None
    # Forgotten, the id is a new request again: it goes through the checks of a new migration.
    with pytest.raises(FailedPrecondition, match="lease_generation: 1 must be newer"):
        host.migrate_vm(request(node2, migration_id="m-0", generation=1))
    final = (await collect(host.migrate_vm(request(node2, migration_id="m-0"))))[-1]
    assert final.phase is MigrationPhase.COMPLETED and final.memory_digest == final.resumed_digest
    # Remembered in turn, as the newest: the oldest left goes.
    assert host.finished_migrations.get("m-0") == final and host.follow_migration("m-1") is None
