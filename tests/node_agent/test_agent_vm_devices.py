"""A VM's pass-through disks, the ISO image in its DVD drive and the resources added to
its cluster group, against real agent processes: created, reported, changed by UpdateVm
and HostAdminService, kept in the VM's configuration across a restart, carried by a live
migration and a take-over, judged by the compatibility check, and every refusal's status
and sentence. A VM persisted before these fields existed still loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from agent_testkit import CALL_TIMEOUT_S, Agent, host_config, vm_spec

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

StartAgent = Callable[..., Agent]
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
EXISTS, PRECONDITION = grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION
LUN, CSV = common_pb2.STORAGE_KIND_LUN, common_pb2.STORAGE_KIND_CSV
LOCAL = common_pb2.STORAGE_KIND_LOCAL_DISK
ISO = r"C:\Windows\system32\vmguest.iso"


def _config(tmp_path: Path, name: str = "node1", **overrides: Any) -> dict[str, Any]:
    """A host with a second local disk and three LUNs beside the CSV."""
    config = host_config(tmp_path, name, **overrides)
    config["disks"] = [{"name": "C", "capacity_gb": 500}, {"name": "D", "capacity_gb": 100}]
    config["volumes"] = [
        {"name": "Volume1", "kind": "csv", "capacity_gb": 2048},
        *({"name": f"lun{i}", "kind": "lun", "capacity_gb": 50} for i in (1, 2, 3)),
    ]
    config["settings"] |= {"migration_stall_timeout_s": 2.0}
    return config


@pytest.fixture
def node1(start_agent: StartAgent, tmp_path: Path) -> Agent:
    return start_agent(_config(tmp_path))


def disk(kind: int, name: str) -> common_pb2.StorageLocation:
    return common_pb2.StorageLocation(kind=kind, name=name)  # type: ignore[arg-type]


def resource(name: str, type_: str = "Generic Service") -> common_pb2.ClusterResource:
    return common_pb2.ClusterResource(name=name, type=type_)


def disks_of(vm: common_pb2.VmRuntime) -> list[tuple[str, str]]:
    return [(common_pb2.StorageKind.Name(d.kind), d.name) for d in vm.spec.passthrough_disks]


def resources_of(vm: common_pb2.VmRuntime) -> list[tuple[str, str]]:
    return [(r.name, r.type) for r in vm.spec.cluster_resources]


def update(agent: Agent, vm_id: str, **fields: Any) -> common_pb2.VmRuntime:
    request = agent_pb2.AgentServiceUpdateVmRequest(vm_id=vm_id, **fields)
    return agent.stub.UpdateVm(request, timeout=CALL_TIMEOUT_S).vm


def add_resource(agent: Agent, vm_id: str, name: str, type_: str = "Generic Service") -> common_pb2.VmRuntime:
    request = agent_pb2.HostAdminServiceAddClusterResourceRequest(vm_id=vm_id, resource=resource(name, type_))
    return (
        agent_pb2_grpc.HostAdminServiceStub(agent.channel)
        .AddClusterResource(request, timeout=CALL_TIMEOUT_S)
        .vm
    )


def remove_resource(agent: Agent, vm_id: str, name: str) -> common_pb2.VmRuntime:
    request = agent_pb2.HostAdminServiceRemoveClusterResourceRequest(vm_id=vm_id, name=name)
    stub = agent_pb2_grpc.HostAdminServiceStub(agent.channel)
    return stub.RemoveClusterResource(request, timeout=CALL_TIMEOUT_S).vm


def refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def assert_refused(error: grpc.RpcError, code: grpc.StatusCode, sentence: str) -> None:
    assert (error.code(), error.details()[: len(sentence)]) == (code, sentence), error.details()
    assert "\n" not in error.details()


def test_a_vm_keeps_its_devices_and_resources_across_a_restart(
    start_agent: StartAgent, node1: Agent, tmp_path: Path
) -> None:
    spec = vm_spec(
        "vm-1",
        "db1",
        highly_available=True,
        passthrough_disks=[disk(LUN, "lun2"), disk(LOCAL, "D")],
        iso_image=ISO,
        cluster_resources=[resource("Replication db1", "Replication Service")],
    )
    created = node1.create(spec)
    assert disks_of(created) == [("STORAGE_KIND_LUN", "lun2"), ("STORAGE_KIND_LOCAL_DISK", "D")]
    assert created.spec.iso_image == ISO
    assert resources_of(created) == [("Replication db1", "Replication Service")]
    assert node1.inventory().vms[0].spec == created.spec

    stored = json.loads((tmp_path / "san" / "csv" / "Volume1" / "vm-1" / "vm.json").read_text())
    assert stored["passthrough_disks"] == [
        {"kind": "lun", "name": "lun2"},
        {"kind": "local_disk", "name": "D"},
    ]
    assert (stored["iso_image"], stored["cluster_resources"]) == (
        ISO,
        [{"name": "Replication db1", "type": "Replication Service"}],
    )
    assert node1.terminate() == 0
    again = start_agent(_config(tmp_path), state_dir=node1.state_dir)
    assert again.get("vm-1").spec == created.spec


def test_a_vm_persisted_without_the_fields_loads_with_none(
    start_agent: StartAgent, node1: Agent, tmp_path: Path
) -> None:
    node1.create(vm_spec("vm-old", "old1"))
    assert node1.terminate() == 0
    path = tmp_path / "san" / "csv" / "Volume1" / "vm-old" / "vm.json"
    doc = json.loads(path.read_text())
    for key in ("passthrough_disks", "iso_image", "cluster_resources"):
        del doc[key]
    path.write_text(json.dumps(doc))

    vm = start_agent(_config(tmp_path), state_dir=node1.state_dir).get("vm-old")
    assert (vm.spec.name, list(vm.spec.passthrough_disks), vm.spec.iso_image) == ("old1", [], "")
    assert list(vm.spec.cluster_resources) == []


def test_every_bad_configuration_is_refused_with_a_sentence_naming_the_field(node1: Agent) -> None:
    node1.create(vm_spec("vm-a", "a", passthrough_disks=[disk(LUN, "lun3")]))
    node1.create(vm_spec("vm-f", "f", storage=(LUN, "lun1")))
    cases: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
        (
            {"passthrough_disks": [disk(CSV, "Volume1")]},
            INVALID,
            "spec.passthrough_disks[0]: CSV volume Volume1 is a volume, not a disk to pass through; "
            "pass through a LUN or a local disk",
        ),
        (
            {"passthrough_disks": [disk(common_pb2.STORAGE_KIND_UNSPECIFIED, "x")]},
            INVALID,
            "spec.passthrough_disks[0].kind: must be LUN or LOCAL_DISK",
        ),
        ({"passthrough_disks": [disk(LUN, "")]}, INVALID, "spec.passthrough_disks[0].name: must name"),
        (
            {"passthrough_disks": [disk(LUN, "lun9")]},
            PRECONDITION,
            "spec.passthrough_disks[0]: host node1 cannot see LUN lun9",
        ),
        (
            {"passthrough_disks": [disk(LOCAL, "E")]},
            PRECONDITION,
            "spec.passthrough_disks[0]: host node1 has no local disk E",
        ),
        (
            {"passthrough_disks": [disk(LUN, "lun2"), disk(LUN, "lun2")]},
            INVALID,
            "spec.passthrough_disks[1]: LUN lun2 is listed twice",
        ),
        (
            {"storage": disk(LUN, "lun2"), "passthrough_disks": [disk(LUN, "lun2")]},
            INVALID,
            "spec.passthrough_disks[0]: LUN lun2 holds the files of VM b itself; "
            "it cannot also be passed through to its guest",
        ),
        (
            {"passthrough_disks": [disk(LUN, "lun3")]},
            PRECONDITION,
            "spec.passthrough_disks[0]: LUN lun3 is already passed through to VM a on host node1",
        ),
        (
            {"passthrough_disks": [disk(LUN, "lun1")]},
            PRECONDITION,
            "spec.passthrough_disks[0]: LUN lun1 holds the files of VM f; a disk that holds VM files "
            "cannot be passed through",
        ),
        (
            {"storage": disk(LUN, "lun3")},
            PRECONDITION,
            "spec.storage: LUN lun3 is passed through to VM a on host node1; it cannot hold VM files",
        ),
        ({"iso_image": "x" * 261}, INVALID, "spec.iso_image: the path has 261 characters; at most 260"),
        ({"iso_image": "a\nb.iso"}, INVALID, "spec.iso_image: the path must not contain control"),
        (
            {"cluster_resources": [resource("R")]},
            INVALID,
            "spec.cluster_resources: VM b is not highly available: it has no cluster group",
        ),
        (
            {"highly_available": True, "cluster_resources": [resource("Virtual Machine b")]},
            INVALID,
            "spec.cluster_resources[0].name: 'Virtual Machine b' is one of the cluster group's own",
        ),
    ]
    for fields, code, sentence in cases:
        spec = vm_spec("vm-b", "b")
        if "storage" in fields:
            spec.storage.CopyFrom(fields.pop("storage"))
        for key, value in fields.items():
            if isinstance(value, list):
                getattr(spec, key).extend(value)
            else:
                setattr(spec, key, value)
        assert_refused(refused(node1.create, spec), code, sentence)
    assert sorted(vm.spec.id for vm in node1.inventory().vms) == ["vm-a", "vm-f"]


def test_pass_through_disks_change_while_stopped_and_the_iso_in_any_state(node1: Agent) -> None:
    node1.create(vm_spec("vm-1", "web1", memory_mb=64))
    attached = update(node1, "vm-1", replace_passthrough_disks=True, passthrough_disks=[disk(LUN, "lun2")])
    assert disks_of(attached) == [("STORAGE_KIND_LUN", "lun2")]
    # Unset fields leave everything as it is.
    assert update(node1, "vm-1").spec == attached.spec

    node1.operate("vm-1", agent_pb2.VM_OPERATION_START)
    error = refused(update, node1, "vm-1", replace_passthrough_disks=True)
    assert_refused(
        error, PRECONDITION, "VM web1 is running; pass-through disks can be changed only while it is stopped"
    )
    inserted = update(node1, "vm-1", iso_image=ISO)
    assert (inserted.spec.iso_image, inserted.state) == (ISO, common_pb2.VM_STATE_RUNNING)
    assert_refused(
        refused(update, node1, "vm-1", iso_image="y" * 300), INVALID, "iso_image: the path has 300"
    )
    ejected = update(node1, "vm-1", iso_image="")
    assert ejected.spec.iso_image == ""
    assert disks_of(ejected) == [("STORAGE_KIND_LUN", "lun2")]

    node1.operate("vm-1", agent_pb2.VM_OPERATION_TURN_OFF)
    error = refused(
        update, node1, "vm-1", replace_passthrough_disks=True, passthrough_disks=[disk(CSV, "Volume1")]
    )
    assert_refused(error, INVALID, "passthrough_disks[0]: CSV volume Volume1 is a volume, not a disk")
    detached = update(node1, "vm-1", replace_passthrough_disks=True)
    assert disks_of(detached) == []
    assert node1.get("vm-1").spec == detached.spec

    # A LUN passed through stays visible to the host until it is detached.
    update(node1, "vm-1", replace_passthrough_disks=True, passthrough_disks=[disk(LUN, "lun3")])
    request = agent_pb2.HostAdminServiceRemoveVolumeRequest(name="lun3")
    error = refused(agent_pb2_grpc.HostAdminServiceStub(node1.channel).RemoveVolume, request, timeout=5)
    assert_refused(
        error,
        PRECONDITION,
        "LUN lun3 is passed through to VM web1 of host node1; detach it before the host stops seeing it",
    )


def test_the_compatibility_check_names_each_pass_through_disk_that_cannot_move(node1: Agent) -> None:
    node1.create(vm_spec("vm-a", "a", passthrough_disks=[disk(LUN, "lun3")]))
    spec = vm_spec(
        "vm-x",
        "x",
        passthrough_disks=[disk(LOCAL, "D"), disk(LUN, "lun9"), disk(LUN, "lun3"), disk(LUN, "lun2")],
    )
    request = agent_pb2.AgentServiceCheckCompatibilityRequest(spec=spec)
    reply = node1.stub.CheckCompatibility(request, timeout=CALL_TIMEOUT_S)
    assert not reply.compatible
    assert list(reply.reasons) == [
        "VM x has local disk D passed through to its guest: a VM with a local pass-through disk "
        "cannot move to another host",
        "host node1 cannot see LUN lun9, which is passed through to VM x",
        "LUN lun3, passed through to VM x, is already passed through to VM a on host node1",
    ]


def test_cluster_resources_are_added_removed_and_refused(node1: Agent) -> None:
    node1.create(vm_spec("vm-ha", "db1", highly_available=True))
    node1.create(vm_spec("vm-plain", "web1"))
    added = add_resource(node1, "vm-ha", "Replication db1", "Replication Service")
    assert resources_of(added) == [("Replication db1", "Replication Service")]
    assert resources_of(add_resource(node1, "vm-ha", "Backup agent")) == [
        ("Replication db1", "Replication Service"),
        ("Backup agent", "Generic Service"),
    ]
    cases: list[tuple[Callable[[], Any], grpc.StatusCode, str]] = [
        (
            lambda: add_resource(node1, "vm-plain", "R"),
            PRECONDITION,
            "VM web1 is not highly available: it has no cluster group",
        ),
        (lambda: add_resource(node1, "vm-none", "R"), NOT_FOUND, "host node1 has no VM with id vm-none"),
        (lambda: add_resource(node1, "vm-ha", ""), INVALID, "resource.name: is required"),
        (lambda: add_resource(node1, "vm-ha", "R", ""), INVALID, "resource.type: is required"),
        (
            lambda: add_resource(node1, "vm-ha", "R" * 129),
            INVALID,
            "resource.name: has 129 characters; at most 128",
        ),
        (lambda: add_resource(node1, "vm-ha", "R", "T" * 129), INVALID, "resource.type: has 129 characters"),
        (
            lambda: add_resource(node1, "vm-ha", "replication DB1"),
            EXISTS,
            "the cluster group of VM db1 already has a resource named 'Replication db1'",
        ),
        (
            lambda: add_resource(node1, "vm-ha", "Virtual Machine db1"),
            INVALID,
            "resource.name: 'Virtual Machine db1' is one of the cluster group's own resources of VM db1",
        ),
        (
            lambda: add_resource(node1, "vm-ha", "Virtual Machine Configuration db1"),
            INVALID,
            "resource.name: 'Virtual Machine Configuration db1' is one of the cluster group's own",
        ),
        (
            lambda: remove_resource(node1, "vm-ha", "Nope"),
            NOT_FOUND,
            "the cluster group of VM db1 has no resource named 'Nope' (added resources: "
            "'Replication db1', 'Backup agent')",
        ),
        (
            lambda: remove_resource(node1, "vm-ha", "Virtual Machine db1"),
            INVALID,
            "name: 'Virtual Machine db1' is one of the cluster group's own resources",
        ),
        (lambda: remove_resource(node1, "vm-plain", "R"), PRECONDITION, "VM web1 is not highly available"),
        (lambda: remove_resource(node1, "vm-none", "R"), NOT_FOUND, "host node1 has no VM with id vm-none"),
    ]
    for call, code, sentence in cases:
        assert_refused(refused(call), code, sentence)
    removed = remove_resource(node1, "vm-ha", "backup AGENT")
    assert resources_of(removed) == [("Replication db1", "Replication Service")]
    assert resources_of(node1.get("vm-ha")) == resources_of(removed)


def _migrate(source: Agent, destination: Agent, vm_id: str, generation: int) -> None:
    request = agent_pb2.AgentServiceMigrateVmRequest(
        vm_id=vm_id,
        migration_id=f"m-{vm_id}-{generation}",
        destination_host=destination.inventory().host.name,
        destination_address=destination.address,
        lease_generation=generation,
    )
    updates = list(source.stub.MigrateVm(request, timeout=30))
    assert updates[-1].phase == agent_pb2.MIGRATION_PHASE_COMPLETED


@pytest.mark.integration
def test_the_configuration_moves_with_the_vm_and_survives_restarts(
    start_agent: StartAgent, tmp_path: Path
) -> None:
    node1 = start_agent(_config(tmp_path, "node1"))
    node2 = start_agent(_config(tmp_path, "node2"))
    spec = vm_spec(
        "vm-1",
        "db1",
        memory_mb=32,
        highly_available=True,
        passthrough_disks=[disk(LUN, "lun2")],
        iso_image=ISO,
    )
    node1.create(spec)
    add_resource(node1, "vm-1", "Replication db1", "Replication Service")
    node1.operate("vm-1", agent_pb2.VM_OPERATION_START)
    # A resource added on node1 moves with the VM, with its pass-through LUN and ISO image.
    assert node1.terminate() == 0
    node1 = start_agent(_config(tmp_path, "node1"), state_dir=node1.state_dir)
    assert resources_of(node1.get("vm-1")) == [("Replication db1", "Replication Service")]
    _migrate(node1, node2, "vm-1", 2)
    moved = node2.get("vm-1")
    assert moved.state == common_pb2.VM_STATE_RUNNING
    assert (disks_of(moved), moved.spec.iso_image) == ([("STORAGE_KIND_LUN", "lun2")], ISO)
    assert resources_of(moved) == [("Replication db1", "Replication Service")]

    # A take-over keeps the resources stored with the files, whatever the caller sent.
    node2.operate("vm-1", agent_pb2.VM_OPERATION_TURN_OFF)
    add_resource(node2, "vm-1", "Backup agent")
    taken = node1.take_over(spec, 3)
    assert resources_of(taken) == [
        ("Replication db1", "Replication Service"),
        ("Backup agent", "Generic Service"),
    ]
    assert disks_of(taken) == [("STORAGE_KIND_LUN", "lun2")]

    # A local pass-through disk ties a VM to its host.
    node1.create(vm_spec("vm-2", "tied", memory_mb=32, passthrough_disks=[disk(LOCAL, "D")]))
    node1.operate("vm-2", agent_pb2.VM_OPERATION_START)
    error = refused(_migrate, node1, node2, "vm-2", 2)
    assert_refused(
        error,
        PRECONDITION,
        "VM tied has local disk D of host node1 passed through to its guest: a VM with a local "
        "pass-through disk cannot move to another host",
    )
    assert node1.get("vm-2").state == common_pb2.VM_STATE_RUNNING
