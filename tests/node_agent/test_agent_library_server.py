"""A library server's agent: it holds VMs at rest and runs none.

It takes a VM over on a LUN zoned to it (a SAN store) whatever the VM needs to run
(processors, memory, networks it lacks), and refuses to create, start or restore one,
naming the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from agent_testkit import Agent, host_config, vm_spec

from havm.v1 import agent_pb2, common_pb2
from node_agent.core.compatibility import compatibility_reasons
from node_agent.core.config import parse_host_config
from node_agent.core.cpu import GuestCpu
from node_agent.core.errors import FailedPrecondition
from node_agent.core.vm import StorageKind, StorageRef, VmSpec, check_runs_vms, validate_spec

StartAgent = Callable[..., Agent]
LUN = (common_pb2.STORAGE_KIND_LUN, "lun1")


def library_config(tmp_path: Path) -> dict:
    """A library server seeing lun1, with one core, little memory and no network."""
    config = host_config(tmp_path, "lib1", cluster="", profile="library", memory_mb=4096, networks=[])
    config["cpu"] = {**config["cpu"], "vendor": "AuthenticAMD", "cores": 1}
    config["disks"] = [{"name": "MSSCVMMLibrary", "capacity_gb": 500}]
    return config


def test_what_running_needs_is_not_asked_of_a_library_server(tmp_path: Path) -> None:
    library = parse_host_config(library_config(tmp_path))
    big = VmSpec(
        id="vm-1",
        name="big",
        memory_mb=65536,
        cpus=8,
        disk_gb=10,
        storage=StorageRef(StorageKind.LUN, "lun1"),
        networks=("External",),
    )
    validate_spec(big, library)
    saved_on_intel = GuestCpu("GenuineIntel", ("sse4_2",))
    assert compatibility_reasons(big, saved_on_intel, library, 1024) == []
    node = parse_host_config(host_config(tmp_path))
    assert compatibility_reasons(big, None, node, 1024) != []  # a host that runs VMs asks
    with pytest.raises(FailedPrecondition, match="host lib1 is a library server: .* cannot start VM big"):
        check_runs_vms(library, big.label, "start")
    check_runs_vms(node, big.label, "start")


def test_a_library_server_takes_a_vm_over_by_san_and_runs_none(
    start_agent: StartAgent, tmp_path: Path
) -> None:
    node = start_agent(host_config(tmp_path))
    library = start_agent(library_config(tmp_path))
    spec = vm_spec(storage=LUN, cpus=2)
    node.create(spec)

    stored = library.take_over(spec, 2)
    assert stored.state == common_pb2.VM_STATE_STOPPED
    for call in (
        lambda: library.operate(spec.id, agent_pb2.VM_OPERATION_START),
        lambda: library.create(
            vm_spec("vm-2", "other", storage=(common_pb2.STORAGE_KIND_LOCAL_DISK, "MSSCVMMLibrary"))
        ),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "host lib1 is a library server" in (refused.value.details() or "")
