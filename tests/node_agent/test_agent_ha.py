"""High availability on the agent side, with real agent processes sharing one SAN directory:
take-over with storage leases, fencing of the copy left behind, and what a fenced host
does when it comes back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from agent_testkit import Agent, host_config, vm_spec, wait_until

from havm.ports import free_port
from havm.v1 import agent_pb2, common_pb2
from node_agent.adapters.files import read_journal_records

pytestmark = pytest.mark.integration

OP = agent_pb2
ST = common_pb2
LUN = (common_pb2.STORAGE_KIND_LUN, "lun1")
LOCAL = (common_pb2.STORAGE_KIND_LOCAL_DISK, "C")


def rpc_error(call, *args) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value


def vm_dir(tmp_path: Path) -> Path:
    return tmp_path / "san" / "csv" / "Volume1" / "vm-1"


def two_hosts(start_agent, tmp_path: Path) -> tuple[Agent, Agent]:  # type: ignore[no-untyped-def]
    return start_agent(host_config(tmp_path, name="node1")), start_agent(host_config(tmp_path, name="node2"))


def test_take_over_fences_the_running_copy(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node1, node2 = two_hosts(start_agent, tmp_path)
    created = node1.create(vm_spec())
    assert created.lease_generation == 1
    assert json.loads((vm_dir(tmp_path) / "lease.json").read_text()) == {"generation": 1, "owner": "node1"}
    node1.operate("vm-1", OP.VM_OPERATION_START)
    wait_until(lambda: node1.guest("vm-1").journal_last_seq >= 5, what="journal writes on node1")
    assert node1.inventory().vms[0].lease_generation == 1

    taken = node2.take_over(vm_spec(), 2)
    assert taken.state == ST.VM_STATE_STOPPED and taken.lease_generation == 2
    fenced_at = time.monotonic()
    wait_until(lambda: not node1.inventory().vms, timeout=1.0, what="node1 to drop the fenced VM")
    assert time.monotonic() - fenced_at < 1.0
    assert "VM web1 fenced: the lease moved to node2 (generation 2)" in node1.log()
    assert node1.inventory().host.memory_free_mb == 6144  # the fenced copy released its memory
    disk = vm_dir(tmp_path) / "disk0.vhd"
    at_fence = read_journal_records(disk)
    time.sleep(0.3)
    assert read_journal_records(disk) == at_fence, "the fenced copy must not write any more"
    last_of_node1 = at_fence[-1].seq
    assert {r.generation for r in at_fence} == {1}
    # The fenced host forgets the VM but leaves its files to the new owner.
    assert not (node1.state_dir / "vms" / "vm-1.json").exists()
    assert json.loads((vm_dir(tmp_path) / "lease.json").read_text()) == {"generation": 2, "owner": "node2"}

    node2.operate("vm-1", OP.VM_OPERATION_START)
    assert node2.get("vm-1").lease_generation == 2
    wait_until(lambda: node2.guest("vm-1").journal_last_seq >= last_of_node1 + 5, what="journal on node2")
    records = read_journal_records(disk)
    assert [r.seq for r in records] == list(range(1, len(records) + 1)), "no gap, no repeated seq"
    assert records[:last_of_node1] == at_fence
    assert {r.generation for r in records[last_of_node1:]} == {2}
    assert "Traceback" not in node1.log() + node2.log()


def test_a_copy_that_writes_nothing_is_fenced_too(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node1, node2 = two_hosts(start_agent, tmp_path)
    node1.create(vm_spec(writes_per_s=0.0))
    node1.operate("vm-1", OP.VM_OPERATION_START)
    assert node1.get("vm-1").state == ST.VM_STATE_RUNNING
    node2.take_over(vm_spec(writes_per_s=0.0), 2)
    wait_until(lambda: not node1.inventory().vms, timeout=1.0, what="node1 to stop its idle copy")
    assert "VM web1 fenced: the lease moved to node2 (generation 2)" in node1.log()


def test_take_over_refusals_and_a_retried_take_over(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node1, node2 = two_hosts(start_agent, tmp_path)
    node1.create(vm_spec())

    error = rpc_error(node2.create, vm_spec())
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "VM web1 (vm-1) already has files on CSV volume Volume1; take it over instead"
    error = rpc_error(node2.take_over, vm_spec("vm-9", "ghost"), 2)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "VM ghost (vm-9) has no files on CSV volume Volume1 to take over"
    error = rpc_error(node2.take_over, vm_spec(storage=LOCAL), 2)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "only VMs on a CSV volume or LUN can be taken over" in error.details()
    error = rpc_error(node2.take_over, vm_spec(), 0)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    assert node2.take_over(vm_spec(), 4).lease_generation == 4
    assert node2.take_over(vm_spec(), 4).lease_generation == 4  # a retry changes nothing
    error = rpc_error(node1.take_over, vm_spec(), 3)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "cannot take over VM web1: stale lease generation 3: storage holds 4"
    assert json.loads((vm_dir(tmp_path) / "lease.json").read_text()) == {"generation": 4, "owner": "node2"}
    # node1's idle copy lost its lease: it may not start, and it is forgotten.
    assert [v.spec.id for v in node1.inventory().vms] == []

    # Taking it back with a newer generation works, and node2's idle copy cannot start.
    assert node1.take_over(vm_spec(), 5).lease_generation == 5
    error = rpc_error(node2.operate, "vm-1", OP.VM_OPERATION_START)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "VM web1 fenced: the lease moved to node1 (generation 5)"
    assert [v.spec.id for v in node2.inventory().vms] == []


def test_a_fenced_host_that_comes_back_does_not_run_its_old_copy(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config1 = host_config(tmp_path, name="node1")
    node1 = start_agent(config1)
    node1.create(vm_spec(storage=LUN))
    node1.operate("vm-1", OP.VM_OPERATION_START)
    wait_until(lambda: node1.guest("vm-1").journal_last_seq >= 3, what="journal writes")
    node1.kill9()
    lun_vm = tmp_path / "san" / "lun" / "lun1" / "vm-1"
    at_crash = read_journal_records(lun_vm / "disk0.vhd")
    # The manager moved the lease on (as a take-over that crashed before writing vm.json would).
    (lun_vm / "lease.json").write_text(json.dumps({"generation": 7, "owner": "node3"}))

    again = start_agent(config1, state_dir=node1.state_dir)
    assert [v.spec.id for v in again.inventory().vms] == []
    assert "fenced while the agent was away" in again.log()
    time.sleep(0.3)
    assert read_journal_records(lun_vm / "disk0.vhd") == at_crash
    assert not (node1.state_dir / "vms" / "vm-1.json").exists()


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("power_off", ST.VM_STATE_STOPPED),
        ("shut_down", ST.VM_STATE_STOPPED),
        ("leave_running", ST.VM_STATE_RUNNING),
    ],
)
def test_an_isolated_host_applies_its_isolation_response(  # type: ignore[no-untyped-def]
    start_agent, tmp_path: Path, response: str, expected: int
) -> None:
    config = host_config(tmp_path)
    config["settings"] |= {
        "isolation_timeout_s": 1.0,
        "isolation_check_interval_s": 0.1,
        "isolation_response": response,
    }
    nowhere = f"127.0.0.1:{free_port()}"  # no broker listens there: the heartbeat path is down
    agent = start_agent(config, None, nowhere)
    agent.create(vm_spec())
    agent.operate("vm-1", OP.VM_OPERATION_START)
    agent.create(vm_spec("vm-2", "web2"))
    agent.operate("vm-2", OP.VM_OPERATION_START)
    agent.operate("vm-2", OP.VM_OPERATION_PAUSE)
    last_call = time.monotonic()

    # No gRPC call from here on: a call would be management contact and end the isolation.
    wait_until(lambda: "isolated: no management call and no broker" in agent.log(), timeout=5)
    # The agent counts from the call's arrival, this test from its answer: under load the
    # two are apart by up to the call's own latency.
    assert time.monotonic() - last_call >= 0.9
    time.sleep(0.3)  # let the power operations finish
    assert f"isolation response {response}" in agent.log()
    states = {v.spec.id: v.state for v in agent.inventory().vms}
    paused = ST.VM_STATE_PAUSED if response == "leave_running" else ST.VM_STATE_STOPPED
    assert states == {"vm-1": expected, "vm-2": paused}
    assert agent.log().count("isolated: no management call") == 1
    assert "Traceback" not in agent.log()


def test_management_calls_keep_a_host_without_broker_from_isolating(  # type: ignore[no-untyped-def]
    start_agent, tmp_path: Path
) -> None:
    config = host_config(tmp_path)
    config["settings"] |= {"isolation_timeout_s": 0.6, "isolation_check_interval_s": 0.05}
    agent = start_agent(config, None, f"127.0.0.1:{free_port()}")
    agent.create(vm_spec())
    agent.operate("vm-1", OP.VM_OPERATION_START)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert agent.get("vm-1").state == ST.VM_STATE_RUNNING
        time.sleep(0.2)
    assert "isolated" not in agent.log()


def test_a_shutdown_under_way_when_the_copy_is_fenced_ends_not_found(  # type: ignore[no-untyped-def]
    start_agent, tmp_path: Path
) -> None:
    config1 = host_config(tmp_path, name="node1")
    config1["settings"]["shutdown_grace_s"] = 0.6
    node1 = start_agent(config1)
    node2 = start_agent(host_config(tmp_path, name="node2"))
    node1.create(vm_spec())
    node1.operate("vm-1", OP.VM_OPERATION_START)
    request = agent_pb2.AgentServiceOperateVmRequest(vm_id="vm-1", operation=OP.VM_OPERATION_SHUTDOWN)
    shutdown = node1.stub.OperateVm.future(request, timeout=5)
    time.sleep(0.1)  # the guest keeps writing during the shutdown's grace period
    node2.take_over(vm_spec(), 2)
    with pytest.raises(grpc.RpcError) as caught:
        shutdown.result()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "VM web1 is no longer on host node1: it was fenced meanwhile"
    assert node1.inventory().vms == []
    assert not (node1.state_dir / "vms" / "vm-1.json").exists(), "a late operation must not revive it"


def test_deleting_a_copy_whose_lease_moved_leaves_the_files(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node1 = start_agent(host_config(tmp_path, name="node1"))
    node1.create(vm_spec())
    # A take-over that wrote its lease and stopped before vm.json: the files are node2's now.
    (vm_dir(tmp_path) / "lease.json").write_text(json.dumps({"generation": 3, "owner": "node2"}))
    node1.delete("vm-1")
    assert node1.inventory().vms == []
    assert (vm_dir(tmp_path) / "disk0.vhd").exists() and (vm_dir(tmp_path) / "vm.json").exists()


def test_deleting_a_copy_whose_shared_files_cannot_be_read_leaves_them(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node1 = start_agent(host_config(tmp_path, name="node1"))
    node1.create(vm_spec())
    # Unreadable on shared storage: they may be another host's by now, so they stay.
    (vm_dir(tmp_path) / "vm.json").write_text("{not json")
    node1.delete("vm-1")
    assert node1.inventory().vms == []
    assert (vm_dir(tmp_path) / "disk0.vhd").exists() and (vm_dir(tmp_path) / "vm.json").exists()
