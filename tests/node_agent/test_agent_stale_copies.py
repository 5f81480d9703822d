"""Stale copies with real agent processes sharing one SAN directory: a copy at rest that
another host took over leaves this host's inventory (never its files); a copy that still
holds its lease, or whose lease cannot be read, stays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agent_testkit import Agent, host_config, vm_spec, wait_until

from havm.v1 import agent_pb2, common_pb2
from node_agent.adapters.files import read_journal_records

pytestmark = pytest.mark.integration

OP = agent_pb2
ST = common_pb2


def vm_dir(tmp_path: Path, vm_id: str) -> Path:
    return tmp_path / "san" / "csv" / "Volume1" / vm_id


def ids(agent: Agent) -> list[str]:
    return [vm.spec.id for vm in agent.inventory().vms]


@pytest.mark.parametrize(
    ("rest", "state"),
    [("turned off", ST.VM_STATE_STOPPED), ("saved", ST.VM_STATE_SAVED)],
    ids=["stopped", "saved"],
)
def test_a_copy_at_rest_taken_over_elsewhere_leaves_the_inventory_not_the_storage(  # type: ignore[no-untyped-def]
    start_agent, tmp_path: Path, rest: str, state: int
) -> None:
    node1 = start_agent(host_config(tmp_path, name="node1"))
    node2 = start_agent(host_config(tmp_path, name="node2"))
    node1.create(vm_spec())
    node1.create(vm_spec("vm-2", "web2"))
    node1.operate("vm-1", OP.VM_OPERATION_START)
    wait_until(lambda: node1.guest("vm-1").journal_last_seq >= 3, what="journal writes on node1")
    operation = OP.VM_OPERATION_TURN_OFF if rest == "turned off" else OP.VM_OPERATION_SAVE
    assert node1.operate("vm-1", operation).state == state
    written = read_journal_records(vm_dir(tmp_path, "vm-1") / "disk0.vhd")
    assert ids(node1) == ["vm-1", "vm-2"]

    # The cluster restarts vm-1 on node2 (a failover while node1 was cut off, say).
    assert node2.take_over(vm_spec(), 2).state == state

    assert ids(node1) == ["vm-2"], "the stale copy is still reported"
    assert (
        "VM web1: the copy here" in node1.log()
        and "is stale: node2 holds the VM at generation 2" in node1.log()
    )
    assert not (node1.state_dir / "vms" / "vm-1.json").exists()
    # The files are node2's now: all of them stay.
    files = vm_dir(tmp_path, "vm-1")
    assert json.loads((files / "lease.json").read_text()) == {"generation": 2, "owner": "node2"}
    assert json.loads((files / "vm.json").read_text())["owner_host"] == "node2"
    assert read_journal_records(files / "disk0.vhd") == written
    assert (files / "memory.vsv").exists() is (rest == "saved")
    # The copy that still holds its lease stays.
    assert node1.get("vm-2").lease_generation == 1
    assert (node1.state_dir / "vms" / "vm-2.json").exists()

    assert node2.operate("vm-1", OP.VM_OPERATION_START).state == ST.VM_STATE_RUNNING
    wait_until(lambda: node2.guest("vm-1").journal_last_seq > written[-1].seq, what="journal on node2")
    assert ids(node2) == ["vm-1"]
    assert "Traceback" not in node1.log() + node2.log()


def test_a_copy_whose_lease_cannot_be_read_stays(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node1 = start_agent(host_config(tmp_path, name="node1"))
    node1.create(vm_spec())
    (vm_dir(tmp_path, "vm-1") / "lease.json").write_text("{not json")
    for _ in range(3):
        assert ids(node1) == ["vm-1"]
    # Said once, not at every refresh.
    assert node1.log().count("VM web1: its lease cannot be read") == 1
    assert (node1.state_dir / "vms" / "vm-1.json").exists()

    # Readable again and held by another host at a newer generation: now it goes.
    (vm_dir(tmp_path, "vm-1") / "lease.json").write_text(json.dumps({"generation": 4, "owner": "node3"}))
    assert ids(node1) == []
    assert (vm_dir(tmp_path, "vm-1") / "disk0.vhd").exists()


def test_a_copy_retaken_by_this_host_is_kept(start_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node1 = start_agent(host_config(tmp_path, name="node1"))
    node2 = start_agent(host_config(tmp_path, name="node2"))
    node1.create(vm_spec())
    node2.take_over(vm_spec(), 2)
    assert ids(node1) == []
    # Back to node1 with a newer generation: node1's copy holds the lease, node2's is stale.
    assert node1.take_over(vm_spec(), 3).lease_generation == 3
    assert ids(node1) == ["vm-1"] and ids(node2) == []
    assert node1.get("vm-1").lease_generation == 3
