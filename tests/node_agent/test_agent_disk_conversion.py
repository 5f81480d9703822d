"""ConvertDisk on a real agent process: a stopped VM's pass-through disk becomes a data
disk in its directory, its journal intact; refusals change nothing; the data disk moves
with the VM's files when they move to other storage (network transfers carry it too:
test_agent_transfer)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from agent_testkit import CALL_TIMEOUT_S, Agent, host_config, vm_spec

from havm.v1 import agent_pb2, common_pb2
from node_agent.adapters.files import read_journal_records

StartAgent = Callable[..., Agent]
LOCAL_D = common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_LOCAL_DISK, name="D")
LUN1 = common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_LUN, name="lun1")


@pytest.fixture
def node(start_agent: StartAgent, tmp_path: Path) -> Agent:
    config = host_config(tmp_path)
    config["disks"] = [{"name": "C", "capacity_gb": 500}, {"name": "D", "capacity_gb": 10}]
    config["volumes"].append({"name": "lun2", "kind": "lun", "capacity_gb": 50})
    return start_agent(config)


def convert(agent: Agent, vm_id: str, disk: common_pb2.StorageLocation) -> list:
    request = agent_pb2.AgentServiceConvertDiskRequest(vm_id=vm_id, disk=disk)
    return list(agent.stub.ConvertDisk(request, timeout=CALL_TIMEOUT_S))


def records(path: Path) -> list[tuple[int, int]]:
    return [(r.seq, r.generation) for r in read_journal_records(path)]


def test_a_stopped_vm_s_local_pass_through_disk_becomes_a_data_disk_with_its_journal(
    node: Agent, tmp_path: Path
) -> None:
    spec = vm_spec(storage=(common_pb2.STORAGE_KIND_LUN, "lun1"), writes_per_s=200)
    spec.passthrough_disks.append(LOCAL_D)
    node.create(spec)
    node.operate(spec.id, agent_pb2.VM_OPERATION_START)
    image = node.state_dir / "disks" / "D" / "passthrough.img"
    deadline = time.monotonic() + 10
    while len(records(image)) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(grpc.RpcError) as running:
        convert(node, spec.id, LOCAL_D)
    assert running.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "is running: a pass-through disk is converted with the VM stopped" in (
        running.value.details() or ""
    )
    node.operate(spec.id, agent_pb2.VM_OPERATION_TURN_OFF)
    written = records(image)
    assert len(written) >= 20

    with pytest.raises(grpc.RpcError) as wrong:
        convert(node, spec.id, LUN1)
    assert wrong.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "passes no LUN lun1 through (its pass-through disks: local disk D)" in (
        wrong.value.details() or ""
    )

    updates = convert(node, spec.id, LOCAL_D)
    last = updates[-1]
    assert last.HasField("vm") and last.bytes_copied == last.bytes_total > 0
    assert list(last.vm.spec.passthrough_disks) == []
    [data] = last.vm.spec.data_disks
    assert (data.file, data.size_bytes, data.converted_from.name) == ("local-D.vhd", 10 * 1024**3, "D")
    vm_dir = tmp_path / "san" / "lun" / "lun1" / spec.id
    assert records(vm_dir / "local-D.vhd") == written
    assert not list(vm_dir.glob(".*converting"))
    assert [d.file for d in node.get(spec.id).spec.data_disks] == ["local-D.vhd"]

    # A storage move takes it along.
    moved = node.stub.MoveVmStorage(
        agent_pb2.AgentServiceMoveVmStorageRequest(
            vm_id=spec.id, storage=common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_LUN, name="lun2")
        ),
        timeout=CALL_TIMEOUT_S,
    )
    assert moved.bytes_copied >= len(written) * 64
    new_dir = tmp_path / "san" / "lun" / "lun2" / spec.id
    assert records(new_dir / "local-D.vhd") == written and not vm_dir.exists()
    node.operate(spec.id, agent_pb2.VM_OPERATION_START)  # runs with its data disk beside it
    assert node.get(spec.id).state == common_pb2.VM_STATE_RUNNING


def test_a_take_over_keeps_the_data_disks_stored_with_the_files(
    node: Agent, start_agent: StartAgent, tmp_path: Path
) -> None:
    spec = vm_spec(storage=(common_pb2.STORAGE_KIND_LUN, "lun1"), writes_per_s=200)
    spec.passthrough_disks.append(LOCAL_D)
    node.create(spec)
    convert(node, spec.id, LOCAL_D)
    other = start_agent(host_config(tmp_path, "node2"))
    # The caller's spec lists no data disk (it learned of the conversion only in part):
    # the files say better.
    del spec.passthrough_disks[:]
    taken = other.take_over(spec, 2)
    assert [d.file for d in taken.spec.data_disks] == ["local-D.vhd"]
