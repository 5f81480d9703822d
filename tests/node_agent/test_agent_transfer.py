"""Network transfer of a VM at rest between two agents in one process, over real gRPC on
loopback: the files arrive byte for byte, the source lets its copy go only once the
destination holds the VM, and every failure before that (a refusal, a cut stream, a
damaged chunk, a malformed offer) leaves the VM whole on the source and nothing of it
at the destination."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from agent_testkit import InProcessNode, start_in_process_nodes, stop_in_process_nodes
from google_crc32c import value as crc32c

from havm.contract.identity import PeerIdentity, Role
from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from node_agent.adapters.api_roles import AgentAdmission
from node_agent.adapters.files import DiskFile, read_journal_records
from node_agent.adapters.migration_network import CUT_FILE
from node_agent.adapters.transfer_messages import chunk_request_bytes, transfer_message_to_pb
from node_agent.adapters.vm_messages import spec_to_pb
from node_agent.core.errors import Corrupted, FailedPrecondition, InvalidArgument
from node_agent.core.lease import Lease
from node_agent.core.power import Operation, PowerState
from node_agent.core.transfer import (
    CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    FileChunk,
    FileDigest,
    FilesEnd,
    FilesOffer,
    ReceivedFiles,
    VmFile,
    chunk_size,
    chunk_spans,
    pause_s,
)
from node_agent.core.vm import StorageKind, StorageRef, VmSpec, Workload

MIB = 1 << 20
LOCAL_C = StorageRef(StorageKind.LOCAL_DISK, "C")
SPEC = VmSpec("vm-1", "web1", 16, 1, 1, LOCAL_C, ("External",), workload=Workload(1.0, 400.0))
STALL_S = 0.6
Pair = tuple[InProcessNode, InProcessNode]


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Pair]:
    started = await start_in_process_nodes(tmp_path, {"migration_stall_timeout_s": STALL_S})
    yield started[0], started[1]
    await stop_in_process_nodes(started)


@pytest.fixture
async def stub(nodes: Pair) -> AsyncIterator[agent_pb2_grpc.AgentServiceStub]:
    """A client of node1, as the manager is."""
    async with grpc.aio.insecure_channel(nodes[0].server.address) as channel:
        yield agent_pb2_grpc.AgentServiceStub(channel)


def vm_dir(node: InProcessNode, spec: VmSpec = SPEC) -> Path:
    return Path(node.host.files.vm_dir(spec))


def send_request(
    destination: InProcessNode, spec: VmSpec = SPEC, generation: int = 2, **fields: object
) -> agent_pb2.AgentServiceSendVmRequest:
    return agent_pb2.AgentServiceSendVmRequest(
        vm_id=SPEC.id,
        transfer_id=fields.pop("transfer_id", "t-1"),  # type: ignore[arg-type]
        destination_host=destination.name,
        destination_address=destination.server.address,
        spec=spec_to_pb(spec),
        lease_generation=generation,
        **fields,  # type: ignore[arg-type]
    )


async def send(
    stub: agent_pb2_grpc.AgentServiceStub, request: agent_pb2.AgentServiceSendVmRequest
) -> list[agent_pb2.AgentServiceSendVmResponse]:
    return [update async for update in stub.SendVm(request, timeout=10)]


async def send_refused(
    stub: agent_pb2_grpc.AgentServiceStub, request: agent_pb2.AgentServiceSendVmRequest
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await send(stub, request)
    return refused.value


async def vm_with_journal(node: InProcessNode, state: PowerState, spec: VmSpec = SPEC) -> None:
    """A VM whose guest wrote journal records, then stopped or saved."""
    node.host.create_vm(spec)
    await node.host.operate(spec.id, Operation.START)
    async with asyncio.timeout(3):
        while (await node.host.guest_status(spec.id)).journal.last_seq < 20:
            await asyncio.sleep(0.02)
    await node.host.operate(spec.id, Operation.SAVE if state is PowerState.SAVED else Operation.TURN_OFF)


def write_far(node: InProcessNode, offset: int, size: int) -> None:
    """Data well beyond the journal: a written extent of its own, with holes around it."""
    with open(vm_dir(node) / "disk0.vhd", "r+b") as disk:
        disk.seek(offset)
        disk.write(os.urandom(size))


def written_bytes(disk: Path) -> dict[int, bytes]:
    """The written extents of a disk file and their contents."""
    blocks = DiskFile(disk)
    try:
        return {offset: blocks.read(offset, size) for offset, size in blocks.extents()}
    finally:
        blocks.close()


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.name != "disk0.vhd"}


def assert_whole_at_source(node: InProcessNode, state: PowerState, before: dict[str, bytes]) -> None:
    vm = node.host.hosted(SPEC.id)
    assert vm is not None and vm.state is state and vm.migration_id == "" and vm.lease_generation == 1
    assert not vm.lock.locked()
    assert files_of(vm_dir(node)) == before
    registry = json.loads((node.host.files.registry_dir / f"{SPEC.id}.json").read_text())
    assert (registry["power_state"], registry["lease_generation"]) == (state.value, 1)


def assert_nothing_at(node: InProcessNode, spec: VmSpec = SPEC) -> None:
    assert node.host.hosted(spec.id) is None
    assert not vm_dir(node, spec).exists()
    assert not (node.host.files.registry_dir / f"{spec.id}.json").exists()
    assert node.host.vms.arriving_by_transfer(spec.id) is None


# Moves that succeed


async def test_a_stopped_vm_moves_with_its_journal_and_the_source_lets_it_go(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    await vm_with_journal(node1, PowerState.STOPPED)
    write_far(node1, 700 * MIB + 12345, 3 * MIB)
    source_disk = vm_dir(node1) / "disk0.vhd"
    written = written_bytes(source_disk)
    journal = read_journal_records(source_disk)
    assert len(written) == 2 and len(journal) >= 20

    updates = await send(stub, send_request(node2))

    total = sum(len(data) for data in written.values())
    assert all(u.bytes_total == total for u in updates)
    assert [u.bytes_sent for u in updates] == sorted(u.bytes_sent for u in updates)
    final = updates[-1]
    assert [u.HasField("vm") for u in updates].count(True) == 1 and final.HasField("vm")
    assert final.bytes_sent == total and final.duration_ms >= 0 and final.mb_per_s > 0
    assert final.vm.spec.id == SPEC.id and final.vm.state == common_pb2.VM_STATE_STOPPED
    assert final.vm.lease_generation == 2 and final.vm.migration_id == ""

    arrived = vm_dir(node2) / "disk0.vhd"
    assert arrived.stat().st_size == 1 << 30
    with open(arrived, "rb") as disk:
        for offset, data in written.items():
            disk.seek(offset)
            assert disk.read(len(data)) == data
    assert read_journal_records(arrived) == journal
    assert json.loads((vm_dir(node2) / "lease.json").read_text()) == {"generation": 2, "owner": "node2"}
    assert json.loads((vm_dir(node2) / "vm.json").read_text())["owner_host"] == "node2"
    moved = node2.host.hosted(SPEC.id)
    assert moved is not None and moved.state is PowerState.STOPPED and moved.lease_generation == 2
    registry = json.loads((node2.host.files.registry_dir / f"{SPEC.id}.json").read_text())
    assert (registry["power_state"], registry["lease_generation"]) == ("stopped", 2)
    assert (await node2.host.guest_status(SPEC.id)).journal.last_seq == journal[-1].seq
    assert_nothing_at(node1)

    await node2.host.operate(SPEC.id, Operation.START)  # it runs there, writing on its journal
    assert (await node2.host.guest_status(SPEC.id)).state is PowerState.RUNNING
    await node2.host.operate(SPEC.id, Operation.TURN_OFF)


async def test_a_saved_vm_arrives_saved_with_its_image_and_processor_and_restores(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    await vm_with_journal(node1, PowerState.SAVED)
    saved = node1.host.hosted(SPEC.id)
    assert saved is not None and saved.cpu is not None
    cpu, image = saved.cpu, (vm_dir(node1) / "memory.vsv").read_bytes()
    digest = (await node1.host.guest_status(SPEC.id)).memory_digest
    journal = read_journal_records(vm_dir(node1) / "disk0.vhd")

    final = (await send(stub, send_request(node2)))[-1]

    assert final.vm.state == common_pb2.VM_STATE_SAVED
    assert (final.vm.cpu_vendor, tuple(final.vm.cpu_features)) == (cpu.vendor, cpu.features)
    assert final.bytes_total == final.bytes_sent > len(image)
    assert (vm_dir(node2) / "memory.vsv").read_bytes() == image
    assert read_journal_records(vm_dir(node2) / "disk0.vhd") == journal
    moved = node2.host.hosted(SPEC.id)
    assert moved is not None and moved.state is PowerState.SAVED and moved.cpu == cpu
    assert_nothing_at(node1)

    assert (await node2.host.guest_status(SPEC.id)).memory_digest == digest
    await node2.host.operate(SPEC.id, Operation.RESTORE)
    assert (await node2.host.guest_status(SPEC.id)).journal.last_seq >= journal[-1].seq
    await node2.host.operate(SPEC.id, Operation.TURN_OFF)


async def test_a_caller_that_goes_away_does_not_stop_the_transfer(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    await vm_with_journal(node1, PowerState.STOPPED)
    write_far(node1, 64 * MIB, 8 * MIB)
    call = stub.SendVm(send_request(node2, bandwidth_mb_per_s=32.0), timeout=10)
    first = await call.read()
    assert isinstance(first, agent_pb2.AgentServiceSendVmResponse) and first.bytes_total > 8 * MIB
    leaving = node1.host.get_vm(SPEC.id)
    assert (leaving.state, leaving.migration_id) == (PowerState.STOPPED, "t-1")
    with pytest.raises(FailedPrecondition, match="VM web1 is stopped and its files are being moved"):
        await node1.host.operate(SPEC.id, Operation.START)
    call.cancel()  # the manager went away

    # A caller asking again for the same transfer follows it to its end.
    final = (await send(stub, send_request(node2, bandwidth_mb_per_s=32.0)))[-1]
    assert final.HasField("vm") and final.vm.lease_generation == 2
    async with asyncio.timeout(3):
        while node1.host.transfers:
            await asyncio.sleep(0.02)
    moved = node2.host.hosted(SPEC.id)
    assert moved is not None and moved.lease_generation == 2
    assert_nothing_at(node1)


# Refusals: the source keeps the VM as it was


async def test_a_running_vm_is_refused_naming_its_state(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    node1.host.create_vm(SPEC)
    await node1.host.operate(SPEC.id, Operation.START)

    refused = await send_refused(stub, send_request(node2))

    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.details().startswith("VM web1 is running; only a stopped or saved VM can be sent")
    vm = node1.host.hosted(SPEC.id)
    assert vm is not None and vm.state is PowerState.RUNNING and vm.migration_id == ""
    await node1.host.operate(SPEC.id, Operation.TURN_OFF)


async def test_requests_that_do_not_hold_are_refused_before_anything_moves(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    node1.host.create_vm(SPEC)
    before = files_of(vm_dir(node1))
    cases = [
        (send_request(node2, replace(SPEC, id="vm-2")), grpc.StatusCode.INVALID_ARGUMENT, "spec.id:"),
        (send_request(node2, generation=1), grpc.StatusCode.FAILED_PRECONDITION, "lease_generation: 1"),
        (send_request(node2, transfer_id=""), grpc.StatusCode.INVALID_ARGUMENT, "transfer_id: is required"),
        (send_request(node1), grpc.StatusCode.INVALID_ARGUMENT, "destination_host: VM vm-1 is already"),
        (
            send_request(node2, replace(SPEC, disk_gb=0)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "spec.disk_gb: the disk of VM web1 is 1 GB",
        ),
    ]
    for request, code, sentence in cases:
        refused = await send_refused(stub, request)
        assert (refused.code(), sentence in refused.details()) == (code, True), refused.details()
    assert_whole_at_source(node1, PowerState.STOPPED, before)
    assert_nothing_at(node2)


async def test_a_refusal_at_the_destination_is_passed_on_and_leaves_the_source_whole(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    await vm_with_journal(node1, PowerState.SAVED)
    before = files_of(vm_dir(node1))

    # No room: the destination's disk C holds 500 GB.
    refused = await send_refused(stub, send_request(node2, replace(SPEC, disk_gb=600)))
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (
        refused.details()
        == "host node2: not enough room on local disk C for VM web1: needs 600 GB, 500 GB free"
    )
    assert_nothing_at(node2)

    # A network the destination lacks.
    refused = await send_refused(stub, send_request(node2, replace(SPEC, networks=("Internal",))))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details().startswith("host node2: spec.networks:"), refused.details()

    # The VM is there already.
    node2.host.create_vm(replace(SPEC, name="other"))
    refused = await send_refused(stub, send_request(node2))
    assert refused.code() == grpc.StatusCode.ALREADY_EXISTS
    assert refused.details() == "host node2: VM web1 (vm-1) already exists on host node2"
    assert_whole_at_source(node1, PowerState.SAVED, before)
    arrived = node2.host.hosted(SPEC.id)
    assert arrived is not None and arrived.spec.name == "other"


# Cuts and damage: nothing stays at the destination


async def test_a_destination_gone_in_the_middle_leaves_the_source_whole_and_nothing_there(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    await vm_with_journal(node1, PowerState.STOPPED)
    write_far(node1, 128 * MIB, 16 * MIB)
    before = files_of(vm_dir(node1))
    call = stub.SendVm(send_request(node2, bandwidth_mb_per_s=16.0), timeout=10)
    async with asyncio.timeout(3):
        while True:
            update = await call.read()
            assert isinstance(update, agent_pb2.AgentServiceSendVmResponse)
            if update.bytes_sent >= 2 * MIB:
                break
    assert (vm_dir(node2) / "disk0.vhd").exists()

    await node2.server.stop(0)  # the destination goes away mid-stream

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        while await call.read() is not grpc.aio.EOF:
            pass
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert failed.value.details().startswith(f"host node2 ({node2.server.address}) went away")
    assert_whole_at_source(node1, PowerState.STOPPED, before)
    async with asyncio.timeout(2):
        while vm_dir(node2).exists():
            await asyncio.sleep(0.02)
    assert_nothing_at(node2)


async def raw_transfer(
    destination: InProcessNode,
    messages: Iterable[agent_pb2.AgentServiceReceiveVmRequest],
    silent_s: float = 0,
) -> grpc.aio.AioRpcError:
    """A source written by hand: sends `messages`, then stays silent up to `silent_s`
    before it closes its side; returns the refusal it gets."""
    refused_already = asyncio.Event()

    async def requests() -> AsyncIterator[agent_pb2.AgentServiceReceiveVmRequest]:
        for message in messages:
            yield message
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(refused_already.wait(), silent_s)

    async with grpc.aio.insecure_channel(destination.server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await agent_pb2_grpc.AgentServiceStub(channel).ReceiveVm(requests(), timeout=5)
        refused_already.set()
        await asyncio.sleep(0.01)  # the request iterator ends
    return refused.value


def offer(spec: VmSpec = SPEC, **fields: object) -> agent_pb2.AgentServiceReceiveVmRequest:
    values: dict[str, object] = {
        "transfer_id": "t-1",
        "source_host": "node1",
        "spec": spec_to_pb(spec),
        "lease_generation": 2,
        "state": common_pb2.VM_STATE_STOPPED,
        "disk_bytes": 2 * MIB,
    }
    return agent_pb2.AgentServiceReceiveVmRequest(offer=agent_pb2.VmFilesOffer(**(values | fields)))  # type: ignore[arg-type]


def chunk(
    offset: int, data: bytes, crc: int | None = None, file: int = agent_pb2.VM_FILE_DISK
) -> agent_pb2.AgentServiceReceiveVmRequest:
    request = agent_pb2.AgentServiceReceiveVmRequest()
    request.chunk.file = file
    request.chunk.offset = offset
    request.chunk.data = data
    request.chunk.crc32c = crc32c(data) if crc is None else crc
    return request


async def test_a_damaged_chunk_is_data_loss_naming_it_and_nothing_stays(nodes: Pair) -> None:
    _, node2 = nodes
    data = os.urandom(MIB)
    refused = await raw_transfer(node2, [offer(), chunk(0, data), chunk(5 * MIB, data, crc=crc32c(data) ^ 1)])
    assert refused.code() == grpc.StatusCode.DATA_LOSS
    assert refused.details() == (
        "chunk.crc32c: the chunk of the virtual disk at offset 5242880 arrived damaged (CRC-32C mismatch)"
    )
    assert_nothing_at(node2)


async def test_a_stream_that_ends_early_or_falls_silent_leaves_nothing(nodes: Pair) -> None:
    _, node2 = nodes
    data = os.urandom(MIB)
    refused = await raw_transfer(node2, [offer(), chunk(0, data)])
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == "end: the network transfer of VM web1 ended before its end message"
    assert_nothing_at(node2)

    refused = await raw_transfer(node2, [offer(), chunk(0, data)], silent_s=STALL_S * 3)
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    assert refused.details().startswith("host node1 fell silent for 0.6 s while host node2 waited")
    assert_nothing_at(node2)

    end = agent_pb2.AgentServiceReceiveVmRequest(end=agent_pb2.VmFilesEnd(disk_digest="00" * 32))
    refused = await raw_transfer(node2, [offer(), chunk(0, data), chunk(MIB, data), end])
    assert refused.code() == grpc.StatusCode.DATA_LOSS
    assert (
        "the virtual disk of VM web1 arrived different from the source's (end digest mismatch)"
        in refused.details()
    )
    assert_nothing_at(node2)

    # A chunk changed on its way together with its CRC-32: only the end digest tells.
    changed = data[:-1] + bytes([data[-1] ^ 1])
    sent = digest_of(*(FileChunk(VmFile.DISK, offset, data, crc32c(data)) for offset in (0, MIB)))
    end = agent_pb2.AgentServiceReceiveVmRequest(end=agent_pb2.VmFilesEnd(disk_digest=sent.hexdigest()))
    refused = await raw_transfer(node2, [offer(), chunk(0, data), chunk(MIB, changed), end])
    assert refused.code() == grpc.StatusCode.DATA_LOSS
    assert "arrived different from the source's (end digest mismatch)" in refused.details()
    assert_nothing_at(node2)


async def test_malformed_offers_and_chunks_are_invalid_argument_naming_the_field(nodes: Pair) -> None:
    _, node2 = nodes
    data = os.urandom(4096)
    cases = [
        ([chunk(0, data)], "offer: the first message of a network transfer must be its offer"),
        (
            [offer(state=common_pb2.VM_STATE_RUNNING)],
            "offer.state: must be VM_STATE_STOPPED or VM_STATE_SAVED",
        ),
        ([offer(disk_bytes=2 << 30)], "offer.disk_bytes: 2147483648 does not fit the 1 GB disk of VM web1"),
        ([offer(saved_state_bytes=10)], "offer.saved_state_bytes: a stopped VM has no saved state"),
        ([offer(lease_generation=0)], "offer.lease_generation: must be positive, got 0"),
        ([offer(transfer_id="")], "offer.transfer_id: is required"),
        ([offer(), chunk((1 << 30) - 100, data)], "chunk.offset: the chunk of the virtual disk at offset"),
        (
            [offer(), chunk(MIB, data), chunk(0, data)],
            "chunk.offset: the chunk of the virtual disk at offset 0 overlaps",
        ),
        (
            [offer(), chunk(0, data, file=7)],
            "chunk.file: must be VM_FILE_DISK, VM_FILE_SAVED_STATE or VM_FILE_DATA_DISK, got 7",
        ),
        ([offer(), chunk(0, data, file=agent_pb2.VM_FILE_SAVED_STATE)], "chunk.file: VM web1 is stopped"),
        (
            [offer(disk_bytes=4096), chunk(0, data + data)],
            "chunk.data: the chunk of the virtual disk at offset 0 goes",
        ),
        ([offer(), offer()], "offer: a network transfer has only one"),
        ([agent_pb2.AgentServiceReceiveVmRequest()], "message: one of offer, chunk or end is required"),
    ]
    for messages, sentence in cases:
        refused = await raw_transfer(node2, messages)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
        assert refused.details().startswith(sentence), refused.details()
        assert_nothing_at(node2)


async def test_offers_this_host_cannot_take_are_refused_and_nothing_stays(nodes: Pair) -> None:
    _, node2 = nodes
    lun = replace(SPEC, storage=StorageRef(StorageKind.LUN, "lun1"))
    node2.host.create_vm(replace(lun, id="vm-9", name="db9"))
    amd = {"cpu_vendor": "AuthenticAMD", "cpu_features": ["sse3"]}
    saved = {"state": common_pb2.VM_STATE_SAVED, "saved_state_bytes": 100}
    cases = [
        (
            offer(**saved | amd),
            grpc.StatusCode.FAILED_PRECONDITION,
            "host node2 cannot take saved VM web1: the processor",
        ),
        (
            offer(lun),
            grpc.StatusCode.FAILED_PRECONDITION,
            "LUN lun1 already holds VM vm-9; it cannot also hold VM web1",
        ),
        (
            offer(replace(SPEC, disk_gb=501)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "not enough room on local disk C",
        ),
        (offer(replace(SPEC, cpus=64)), grpc.StatusCode.INVALID_ARGUMENT, "spec.cpus: VM web1 asks for 64"),
    ]
    for request, code, sentence in cases:
        refused = await raw_transfer(node2, [request])
        assert (refused.code(), refused.details().startswith(sentence)) == (code, True), refused.details()
        assert_nothing_at(node2)

    node2.host.begin_stop()
    refused = await raw_transfer(node2, [offer()])
    assert (refused.code(), refused.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        "host node2 is stopping; it takes no VM now",
    )


async def test_a_cut_migration_network_is_a_silent_destination_and_the_source_keeps_the_vm(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub, tmp_path: Path
) -> None:
    node1, node2 = nodes
    await vm_with_journal(node1, PowerState.STOPPED)
    write_far(node1, 64 * MIB, 16 * MIB)
    before = files_of(vm_dir(node1))
    call = stub.SendVm(send_request(node2, bandwidth_mb_per_s=16.0), timeout=10)
    assert isinstance(await call.read(), agent_pb2.AgentServiceSendVmResponse)
    (tmp_path / "state" / "node2" / CUT_FILE).touch()  # `havm fault isolate node2 --from migration`

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        while await call.read() is not grpc.aio.EOF:
            pass
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert failed.value.details() == f"host node2 ({node2.server.address}) did not answer within 0.6 s"
    assert_whole_at_source(node1, PowerState.STOPPED, before)
    async with asyncio.timeout(3):
        while vm_dir(node2).exists():
            await asyncio.sleep(0.02)
    assert_nothing_at(node2)


async def test_files_another_host_took_over_meanwhile_are_kept_when_the_copy_leaves(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    on_csv = replace(SPEC, storage=StorageRef(StorageKind.CSV, "Volume1"))
    node1.host.create_vm(on_csv)
    write_far_at = vm_dir(node1, on_csv) / "disk0.vhd"
    with open(write_far_at, "r+b") as disk:
        disk.seek(32 * MIB)
        disk.write(os.urandom(8 * MIB))
    call = stub.SendVm(send_request(node2, bandwidth_mb_per_s=32.0), timeout=10)
    assert isinstance(await call.read(), agent_pb2.AgentServiceSendVmResponse)
    # A failover elsewhere takes the VM's files over while they travel.
    node1.host.files.write_lease(vm_dir(node1, on_csv), Lease(5, "node3"))

    while (update := await call.read()) is not grpc.aio.EOF:
        assert isinstance(update, agent_pb2.AgentServiceSendVmResponse)
        final = update

    assert final.vm.lease_generation == 2 and node2.host.hosted(SPEC.id) is not None
    assert node1.host.hosted(SPEC.id) is None
    assert not (node1.host.files.registry_dir / f"{SPEC.id}.json").exists()
    kept = vm_dir(node1, on_csv)
    assert json.loads((kept / "lease.json").read_text()) == {"generation": 5, "owner": "node3"}
    assert (kept / "vm.json").exists() and (kept / "disk0.vhd").exists()


# The parts on their own


def test_extents_are_the_written_regions_of_a_sparse_disk(tmp_path: Path) -> None:
    disk = DiskFile(tmp_path / "disk0.vhd", create_bytes=1 << 30)
    try:
        assert disk.extents() == []
        disk.write(64, b"x" * 64)
        disk.write(300 * MIB + 1, b"y" * (2 * MIB))
        found = disk.extents()
    finally:
        disk.close()
    assert found[0][0] == 0 and found[0][1] >= 128
    assert len(found) == 2 and found[1][0] <= 300 * MIB + 1 and sum(found[1]) >= 302 * MIB + 1
    assert list(chunk_spans(found, 1 << 30, MIB))[1:] == [
        (found[1][0], MIB),
        (found[1][0] + MIB, MIB),
        (found[1][0] + 2 * MIB, found[1][1] - 2 * MIB),
    ]


def test_the_ledger_takes_chunks_in_order_and_checks_the_end() -> None:
    offered = FilesOffer("t", "node1", SPEC, 2, PowerState.SAVED, 8, 6, None)
    ledger = ReceivedFiles(offered)
    ledger.admit(FileChunk(VmFile.DISK, 100, b"abcd", 0))
    with pytest.raises(InvalidArgument, match="overlaps"):
        ledger.admit(FileChunk(VmFile.DISK, 102, b"ab", 0))
    with pytest.raises(InvalidArgument, match="must follow the 0 bytes"):
        ledger.admit(FileChunk(VmFile.SAVED_STATE, 3, b"ab", 0))
    ledger.admit(FileChunk(VmFile.SAVED_STATE, 0, b"abc", 0))
    ledger.admit(FileChunk(VmFile.SAVED_STATE, 3, b"def", 0))
    with pytest.raises(InvalidArgument, match="beyond the 6 saved state bytes"):
        ledger.admit(FileChunk(VmFile.SAVED_STATE, 6, b"g", 0))
    disk, saved = digest_of(FileChunk(VmFile.DISK, 100, b"abcd", 0)), FileDigest()
    for piece in (FileChunk(VmFile.SAVED_STATE, 0, b"abc", 0), FileChunk(VmFile.SAVED_STATE, 3, b"def", 0)):
        saved.add(piece)
    with pytest.raises(InvalidArgument, match="4 disk bytes arrived, the offer announced 8"):
        ledger.check_complete(FilesEnd(disk.hexdigest(), saved.hexdigest()))
    ledger.admit(FileChunk(VmFile.DISK, 4096, b"efgh", 0))
    disk.add(FileChunk(VmFile.DISK, 4096, b"efgh", 0))
    with pytest.raises(Corrupted, match="saved state of VM web1 arrived different"):
        ledger.check_complete(FilesEnd(disk.hexdigest(), FileDigest().hexdigest()))
    ledger.check_complete(FilesEnd(disk.hexdigest().upper(), saved.hexdigest()))


def digest_of(*chunks: FileChunk) -> FileDigest:
    digest = FileDigest()
    for piece in chunks:
        digest.add(piece)
    return digest


def test_the_end_digest_tells_any_chunk_missing_duplicated_reordered_moved_or_changed() -> None:
    a, b = os.urandom(4096), os.urandom(4096)
    sent = [FileChunk(VmFile.DISK, 0, a, crc32c(a)), FileChunk(VmFile.DISK, 8192, b, crc32c(b))]
    changed = a[:-1] + bytes([a[-1] ^ 1])
    arrivals = [
        sent[:1],
        [sent[0], sent[1], sent[1]],
        sent[::-1],
        [sent[0], FileChunk(VmFile.DISK, 4096, b, crc32c(b))],
        [FileChunk(VmFile.DISK, 0, changed, crc32c(changed)), sent[1]],
        [sent[0], FileChunk(VmFile.DISK, 8192, b[:-1], crc32c(b[:-1]))],
    ]
    expected = digest_of(*sent).hexdigest()
    assert digest_of(*sent).hexdigest() == expected
    assert all(digest_of(*arrived).hexdigest() != expected for arrived in arrivals)


def test_a_chunk_framed_by_hand_is_the_request_protobuf_writes() -> None:
    data = os.urandom(4096)
    for piece in (
        FileChunk(VmFile.DISK, 0, data, 0),
        FileChunk(VmFile.DISK, 5 << 40, data, 0xFFFFFFFF),
        FileChunk(VmFile.SAVED_STATE, 300, b"x", crc32c(b"x")),
        FileChunk(VmFile.DISK, 1, b"", 1),
    ):
        assert chunk_request_bytes(piece) == transfer_message_to_pb(piece).SerializeToString()


def test_a_capped_sender_waits_only_when_ahead_in_chunks_the_stall_timeout_allows() -> None:
    assert pause_s(16 * MIB, 0.5, 16.0) == pytest.approx(0.5)
    assert pause_s(16 * MIB, 2.0, 16.0) == 0.0
    assert pause_s(16 * MIB, 0.0, 0.0) == 0.0
    assert chunk_size(0.0, 5.0) == CHUNK_BYTES == chunk_size(300.0, 3.0)
    # 1 MB/s and a 2 s stall timeout: a chunk takes at most half a second.
    assert chunk_size(1.0, 2.0) == MIB // 2
    assert chunk_size(0.001, 2.0) == MIN_CHUNK_BYTES


def test_only_the_manager_orders_a_transfer_and_only_agents_stream_one() -> None:
    admission = AgentAdmission("node2", "cluster1")
    send_vm, receive_vm = "/havm.v1.AgentService/SendVm", "/havm.v1.AgentService/ReceiveVm"
    manager = PeerIdentity(Role.MANAGER, "manager")
    admin = PeerIdentity(Role.ADMIN, "admin")
    assert admission.refusal(manager, send_vm) is None
    assert (
        admission.refusal(admin, send_vm)
        == "SendVm is ordered by the manager only; admin identity 'admin' may not"
    )
    # Transfers cross the cluster boundary: a standalone host's agent, or another cluster's.
    for agent in (PeerIdentity(Role.AGENT, "s1"), PeerIdentity(Role.AGENT, "n1", "cluster2")):
        assert admission.refusal(agent, receive_vm) is None
        assert admission.refusal(agent, send_vm) is not None
    assert admission.refusal(manager, receive_vm) == (
        "host node2 takes network transfers only from agents; manager identity 'manager' is not one"
    )
    assert admission.refusal(admin, receive_vm) is not None


async def test_a_converted_data_disk_travels_with_its_vm_and_its_journal(
    nodes: Pair, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    node1, node2 = nodes
    lun1 = StorageRef(StorageKind.LUN, "lun1")
    spec = replace(SPEC, passthrough_disks=(lun1,))
    await vm_with_journal(node1, PowerState.STOPPED, spec)
    image = Path(node1.host.files.passthrough_image(lun1))
    written = read_journal_records(image)
    assert len(written) >= 20
    updates = [u async for u in node1.host.convert_disk(spec.id, lun1)]
    converted = updates[-1].vm
    assert converted is not None and [d.file for d in converted.spec.data_disks] == ["lun-lun1.vhd"]
    assert read_journal_records(vm_dir(node1) / "lun-lun1.vhd") == written

    final = (await send(stub, send_request(node2, converted.spec)))[-1]
    assert [d.file for d in final.vm.spec.data_disks] == ["lun-lun1.vhd"]
    assert final.bytes_sent == final.bytes_total and final.bytes_total >= 2 * len(written) * 64
    assert read_journal_records(vm_dir(node2) / "lun-lun1.vhd") == written
    assert (vm_dir(node2) / "lun-lun1.vhd").stat().st_size == image.stat().st_size
    assert_nothing_at(node1)
    await node2.host.operate(SPEC.id, Operation.START)
    assert (await node2.host.guest_status(SPEC.id)).state is PowerState.RUNNING
