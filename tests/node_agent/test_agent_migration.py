"""Live migration between two real agent processes on loopback, sharing a SAN directory,
and storage moves: the memory and the journal arrive whole, failures leave the VM
running on exactly one host."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from agent_testkit import Agent, host_config, vm_spec, wait_until

from havm.v1 import agent_pb2, common_pb2
from node_agent.adapters.files import read_journal_records

pytestmark = pytest.mark.integration

CSV = (common_pb2.STORAGE_KIND_CSV, "Volume1")
LOCAL = (common_pb2.STORAGE_KIND_LOCAL_DISK, "C")
LUN = (common_pb2.STORAGE_KIND_LUN, "lun1")
MIGRATION_TIMEOUT_S = 30.0
INTEL = {"vendor": "GenuineIntel", "model": "Intel Xeon X5570", "cores": 8, "mhz": 2933}
NEHALEM = ["sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "vmx", "nx", "lm"]


def _config(tmp_path: Path, name: str, **overrides: Any) -> dict[str, Any]:
    config = host_config(tmp_path, name, **({"cpu": INTEL | {"features": NEHALEM}} | overrides))
    config["settings"] |= {"migration_stall_timeout_s": 2.0}
    return config


@pytest.fixture
def pair(start_agent, tmp_path: Path) -> tuple[Agent, Agent]:  # type: ignore[no-untyped-def]
    return start_agent(_config(tmp_path, "node1")), start_agent(_config(tmp_path, "node2"))


def busy_spec(
    vm_id: str = "vm-1", memory_mb: int = 32, dirty: float = 8.0, **extra: Any
) -> common_pb2.VmSpec:
    spec = vm_spec(vm_id, memory_mb=memory_mb, **extra)
    spec.workload.dirty_rate_mb_per_s = dirty
    spec.workload.journal_writes_per_s = 200.0
    return spec


def start_vm(agent: Agent, spec: common_pb2.VmSpec) -> None:
    agent.create(spec)
    agent.operate(spec.id, agent_pb2.VM_OPERATION_START)


def migrate_stream(
    source: Agent, destination: Agent, vm_id: str = "vm-1", generation: int = 2, **fields: Any
) -> Iterator[agent_pb2.AgentServiceMigrateVmResponse]:
    request = agent_pb2.AgentServiceMigrateVmRequest(
        vm_id=vm_id,
        migration_id=f"m-{vm_id}-{generation}",
        destination_host=destination.inventory().host.name,
        destination_address=destination.address,
        lease_generation=generation,
        **fields,
    )
    return source.stub.MigrateVm(request, timeout=MIGRATION_TIMEOUT_S)


def migrate(
    source: Agent, destination: Agent, **fields: Any
) -> list[agent_pb2.AgentServiceMigrateVmResponse]:
    return list(migrate_stream(source, destination, **fields))


def journal(disk: Path) -> list[tuple[int, int]]:
    """(seq, generation) of every valid record of a virtual disk, in slot order."""
    return [(record.seq, record.generation) for record in read_journal_records(disk)]


def assert_handed_over(records: list[tuple[int, int]], old: int, new: int) -> None:
    """Seqs unbroken from 1; the old generation's writes, then only the new one's."""
    assert [seq for seq, _ in records] == list(range(1, len(records) + 1))
    generations = [g for _, g in records]
    switch = generations.index(new)
    assert 0 < switch < len(generations)
    assert set(generations[:switch]) == {old} and set(generations[switch:]) == {new}


def lease(vm_dir: Path) -> dict[str, Any]:
    return json.loads((vm_dir / "lease.json").read_text())


def not_found(agent: Agent, vm_id: str) -> bool:
    try:
        agent.get(vm_id)
    except grpc.RpcError as exc:
        return exc.code() == grpc.StatusCode.NOT_FOUND
    return False


def running_and_writing(agent: Agent, vm_id: str = "vm-1") -> None:
    vm = agent.get(vm_id)
    assert vm.state == common_pb2.VM_STATE_RUNNING and vm.migration_id == ""
    before = agent.guest(vm_id).journal_last_seq
    wait_until(lambda: agent.guest(vm_id).journal_last_seq > before, what="the guest to write")


def test_live_migration_moves_memory_and_journal_whole(pair: tuple[Agent, Agent], tmp_path: Path) -> None:
    node1, node2 = pair
    start_vm(node1, busy_spec(networks=["External"]))
    cpu = node1.get("vm-1")
    assert cpu.cpu_vendor == "GenuineIntel" and "vmx" not in cpu.cpu_features and "sse4_2" in cpu.cpu_features
    time.sleep(0.3)

    updates = migrate(node1, node2)

    phases = [u.phase for u in updates]
    assert phases[0] == agent_pb2.MIGRATION_PHASE_PREPARING
    assert agent_pb2.MIGRATION_PHASE_PRE_COPY in phases and agent_pb2.MIGRATION_PHASE_BLACKOUT in phases
    final = updates[-1]
    assert final.phase == agent_pb2.MIGRATION_PHASE_COMPLETED
    assert final.memory_digest and final.memory_digest == final.resumed_digest
    assert getattr(final, "pass") >= 1 and final.bytes_sent >= 32 * 1024 * 1024
    assert 0 <= final.blackout_ms <= final.duration_ms
    assert final.vm.spec.id == "vm-1" and final.vm.lease_generation == 2
    assert list(final.vm.cpu_features) == list(cpu.cpu_features)

    assert not_found(node1, "vm-1")
    assert not (node1.state_dir / "vms" / "vm-1.json").exists()
    moved = node2.get("vm-1")
    assert moved.state == common_pb2.VM_STATE_RUNNING and moved.lease_generation == 2
    assert moved.migration_id == "" and moved.cpu_vendor == "GenuineIntel"
    running_and_writing(node2)
    vm_dir = tmp_path / "san" / "csv" / "Volume1" / "vm-1"
    assert lease(vm_dir) == {"generation": 2, "owner": "node2"}
    assert json.loads((vm_dir / "vm.json").read_text())["owner_host"] == "node2"

    node2.operate("vm-1", agent_pb2.VM_OPERATION_TURN_OFF)
    records = journal(vm_dir / "disk0.vhd")
    assert_handed_over(records, old=1, new=2)
    assert node2.guest("vm-1").journal_last_seq == len(records)


def test_an_incompatible_destination_is_refused_with_every_reason(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node1 = start_agent(_config(tmp_path, "node1"))
    amd = {
        "vendor": "AuthenticAMD",
        "model": "Opteron 2384",
        "features": ["sse3", "svm"],
        "cores": 8,
        "mhz": 2700,
    }
    node2 = start_agent(
        _config(tmp_path, "node2", cpu=amd, networks=[], memory_mb=2048, host_reserve_mb=2000)
    )
    start_vm(node1, busy_spec(memory_mb=64))

    with pytest.raises(grpc.RpcError) as info:
        migrate(node1, node2)

    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    message = info.value.details()
    assert "host node2 cannot take VM web1" in message
    assert "AuthenticAMD" in message and "not enough memory" in message and "'External'" in message
    assert message.endswith("VM web1 keeps running on host node1")
    running_and_writing(node1)
    assert not_found(node2, "vm-1") and node2.inventory().host.memory_free_mb == 48
    assert lease(tmp_path / "san" / "csv" / "Volume1" / "vm-1") == {"generation": 1, "owner": "node1"}

    # The same check on its own, with an Intel host of an older generation.
    older = {"vendor": "GenuineIntel", "model": "Xeon 5160", "features": ["sse3", "ssse3", "nx", "lm", "vmx"]}
    node3 = start_agent(_config(tmp_path, "node3", cpu=INTEL | older))
    vm = node1.get("vm-1")
    request = agent_pb2.AgentServiceCheckCompatibilityRequest(
        spec=vm.spec, cpu_vendor=vm.cpu_vendor, cpu_features=vm.cpu_features
    )
    reply = node3.stub.CheckCompatibility(request, timeout=5)
    assert not reply.compatible and len(reply.reasons) == 1
    assert "lacks sse4_1, sse4_2, popcnt" in reply.reasons[0]
    assert "processor compatibility mode" in reply.reasons[0]
    assert (
        node2.stub.CheckCompatibility(request, timeout=5)
        .reasons[0]
        .startswith("the processor of host node2 is AuthenticAMD")
    )


def _wait_for_phase(updates: Iterator[agent_pb2.AgentServiceMigrateVmResponse], phase: int) -> None:
    for update in updates:
        if update.phase == phase:
            return
    raise AssertionError(f"the migration ended before phase {phase}")


def test_destination_killed_during_pre_copy_leaves_the_vm_on_the_source(
    pair: tuple[Agent, Agent], tmp_path: Path
) -> None:
    node1, node2 = pair
    start_vm(node1, busy_spec(memory_mb=64))
    updates = migrate_stream(node1, node2, bandwidth_mb_per_s=32.0)
    _wait_for_phase(updates, agent_pb2.MIGRATION_PHASE_PRE_COPY)
    node2.kill9()

    with pytest.raises(grpc.RpcError) as info:
        list(updates)

    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "node2" in info.value.details() and "keeps running on host node1" in info.value.details()
    running_and_writing(node1)
    assert lease(tmp_path / "san" / "csv" / "Volume1" / "vm-1") == {"generation": 1, "owner": "node1"}
    node1.operate("vm-1", agent_pb2.VM_OPERATION_TURN_OFF)
    assert {g for _, g in journal(tmp_path / "san" / "csv" / "Volume1" / "vm-1" / "disk0.vhd")} == {1}


def test_source_killed_during_pre_copy_drops_the_skeleton(pair: tuple[Agent, Agent]) -> None:
    node1, node2 = pair
    free = node2.inventory().host.memory_free_mb
    start_vm(node1, busy_spec(memory_mb=64))
    updates = migrate_stream(node1, node2, bandwidth_mb_per_s=32.0)
    _wait_for_phase(updates, agent_pb2.MIGRATION_PHASE_PRE_COPY)

    skeleton = node2.get("vm-1")
    assert skeleton.state == common_pb2.VM_STATE_MIGRATING and skeleton.migration_id == "m-vm-1-2"
    assert node2.inventory().host.memory_free_mb == free - 64 and not node2.inventory().vms
    with pytest.raises(grpc.RpcError) as info:
        node2.operate("vm-1", agent_pb2.VM_OPERATION_TURN_OFF)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as info:
        node1.operate("vm-1", agent_pb2.VM_OPERATION_PAUSE)
    assert (
        info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "live-migrated" in info.value.details()
    )

    node1.kill9()
    # At once when the stream breaks, well before the stall timeout.
    wait_until(lambda: not_found(node2, "vm-1"), timeout=1.5, what="the skeleton to go")
    assert node2.inventory().host.memory_free_mb == free
    with pytest.raises(grpc.RpcError):
        list(updates)


def test_a_migration_that_cannot_converge_fails_cleanly(pair: tuple[Agent, Agent]) -> None:
    node1, node2 = pair
    start_vm(node1, busy_spec(memory_mb=16, dirty=400.0))

    with pytest.raises(grpc.RpcError) as info:
        migrate(node1, node2, bandwidth_mb_per_s=64.0, max_passes=3)

    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details().startswith("did not converge")
    running_and_writing(node1)
    wait_until(lambda: not_found(node2, "vm-1"), what="the skeleton to go")


def test_live_migration_with_the_disk_to_a_local_disk(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node1 = start_agent(_config(tmp_path, "node1", cluster=None))
    node2 = start_agent(_config(tmp_path, "node2", cluster=None))
    start_vm(node1, busy_spec(storage=LOCAL))
    time.sleep(0.3)

    final = migrate(node1, node2, storage=common_pb2.StorageLocation(kind=LOCAL[0], name="C"))[-1]

    assert final.phase == agent_pb2.MIGRATION_PHASE_COMPLETED and final.memory_digest == final.resumed_digest
    assert final.vm.spec.storage.kind == LOCAL[0]
    assert not (node1.state_dir / "disks" / "C" / "vm-1").exists()
    new_dir = node2.state_dir / "disks" / "C" / "vm-1"
    assert lease(new_dir) == {"generation": 2, "owner": "node2"}
    running_and_writing(node2)
    node2.operate("vm-1", agent_pb2.VM_OPERATION_TURN_OFF)
    assert_handed_over(journal(new_dir / "disk0.vhd"), old=1, new=2)


def test_storage_of_a_running_vm_moves_without_losing_a_write(agent: Agent, tmp_path: Path) -> None:
    start_vm(agent, busy_spec())
    time.sleep(0.3)
    written_before = agent.guest("vm-1").journal_last_seq

    request = agent_pb2.AgentServiceMoveVmStorageRequest(
        vm_id="vm-1", storage=common_pb2.StorageLocation(kind=LUN[0], name=LUN[1])
    )
    reply = agent.stub.MoveVmStorage(request, timeout=10)

    assert reply.vm.spec.storage.name == "lun1" and reply.bytes_copied > 0
    assert 0 <= reply.blackout_ms <= reply.duration_ms
    assert not (tmp_path / "san" / "csv" / "Volume1" / "vm-1").exists()
    new_dir = tmp_path / "san" / "lun" / "lun1" / "vm-1"
    running_and_writing(agent)
    agent.operate("vm-1", agent_pb2.VM_OPERATION_TURN_OFF)
    records = journal(new_dir / "disk0.vhd")
    assert [seq for seq, _ in records] == list(range(1, len(records) + 1))
    assert agent.guest("vm-1").journal_last_seq == len(records) > written_before > 0
    registry = json.loads((agent.state_dir / "vms" / "vm-1.json").read_text())
    assert registry["path"] == str(new_dir)


def test_processor_compatibility_mode_hides_newer_features(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = start_agent(_config(tmp_path, "node1"))
    start_vm(agent, busy_spec(processor_compatibility=True))
    assert list(agent.get("vm-1").cpu_features) == ["sse3", "nx", "lm"]
    update = agent_pb2.AgentServiceUpdateVmRequest(vm_id="vm-1", processor_compatibility=False)
    with pytest.raises(grpc.RpcError) as info:
        agent.stub.UpdateVm(update, timeout=5)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "stopped" in info.value.details()

    agent.operate("vm-1", agent_pb2.VM_OPERATION_TURN_OFF)
    assert agent.get("vm-1").cpu_vendor == ""
    vm = agent.stub.UpdateVm(update, timeout=5).vm
    assert not vm.spec.processor_compatibility
    saved = json.loads((tmp_path / "san" / "csv" / "Volume1" / "vm-1" / "vm.json").read_text())
    assert saved["processor_compatibility"] is False
    agent.operate("vm-1", agent_pb2.VM_OPERATION_START)
    agent.operate("vm-1", agent_pb2.VM_OPERATION_SAVE)
    assert "sse4_2" in agent.get("vm-1").cpu_features  # a saved VM keeps its processor


def test_an_armed_crash_point_kills_the_destination_when_pages_arrive(pair: tuple[Agent, Agent]) -> None:
    node1, node2 = pair
    start_vm(node1, busy_spec(memory_mb=16))
    (node2.state_dir / "crash-at").write_text("migration-destination-copying\n")

    with pytest.raises(grpc.RpcError) as info:
        migrate(node1, node2)

    assert node2.proc.wait(timeout=5) == 137
    assert "crash point migration-destination-copying reached" in node2.log()
    assert not (node2.state_dir / "crash-at").exists()  # consumed: the host starts normally again
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "node2" in info.value.details() and "keeps running on host node1" in info.value.details()
    running_and_writing(node1)
