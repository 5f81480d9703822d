"""A change asked for while the manager dies is made once: `havm vm create` names its
request, sends it again while the manager restarts, and the manager answers the repeat
with the job the first copy started (or, when the first never reached it, does it
then). Whichever moment the manager dies at, exactly one VM exists afterwards, on one
host, and the command says what happened.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import grpc
import pytest
from cluster_harness import (
    HAVM,
    LocalCluster,
    agent_names,
    alive,
    inventory,
    start_cluster,
    stop_cluster,
    wait_for,
)

from havm.v1 import manager_pb2, manager_pb2_grpc

# In the robustness phase (scripts/test), its tests on one worker: they share a cluster.
pytestmark = [pytest.mark.integration, pytest.mark.robustness, pytest.mark.xdist_group("idempotent")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("havm"))
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def copies_named(cluster: LocalCluster, name: str) -> list[str]:
    """The hosts whose agents hold a VM of this name, whatever its state."""
    return [
        host for host in agent_names(cluster) for vm in inventory(cluster, host) or [] if vm.spec.name == name
    ]


@pytest.mark.parametrize(
    ("point", "summary"),
    [
        ("create-manager-started", "the manager restarted before VM {name} was created: nothing was created"),
        ("create-manager-confirmed", "VM {name} exists on host"),
    ],
)
def test_a_create_retried_across_a_manager_crash_yields_exactly_one_vm(
    cluster: LocalCluster, point: str, summary: str
) -> None:
    name = f"once-{point}"
    manager_pid = cluster.component("manager")["pid"]
    cluster.ok("fault", "crash-manager-at", point)
    command = subprocess.Popen(
        [*HAVM, "--state-dir", str(cluster.state_dir), "vm", "create", name, "--ha", "--memory-mb", "128"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: not alive(manager_pid), 20, what="the manager dying at " + point)
        cluster.ok("restart", "manager")
        stdout, stderr = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()
    vms = [vm for vm in cluster.json("vm", "list") if vm["name"] == name]
    hosts = copies_named(cluster, name)
    if point == "create-manager-started":
        # The job was stored, no host asked: the repeat finds the job, failed, and nothing exists.
        assert command.returncode == 1, stdout + stderr
        assert summary.format(name=name) in stderr
        assert vms == [] and hosts == []
    else:
        # The host created the VM before the manager died: the job ends completed.
        assert command.returncode == 0, stdout + stderr
        assert len(vms) == 1 and hosts == [vms[0]["host"]], (vms, hosts)
        job = cluster.json("job", "list")[0]
        assert job["state"] == "completed" and job["message"].startswith(summary.format(name=name))


def test_the_same_request_id_twice_makes_one_change(cluster: LocalCluster) -> None:
    request_id = str(uuid.uuid4())
    metadata = (("havm-request-id", request_id),)
    with cluster.channel("manager") as channel:
        stub = manager_pb2_grpc.ManagerServiceStub(channel)
        request = manager_pb2.CreateVmRequest(name="twice", memory_mb=128, host="standalone1", no_start=True)
        first = stub.CreateVm(request, timeout=10, metadata=metadata)
        second = stub.CreateVm(request, timeout=10, metadata=metadata)
        assert second.job.id == first.job.id and second.vm.id == first.vm.id
        # Without the id, the same request is a second create: refused, as the name is taken.
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateVm(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateVm(request, timeout=10, metadata=(("havm-request-id", "not-a-uuid"),))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "havm-request-id: must be a UUID, got 'not-a-uuid'"
    wait_for(lambda: cluster.json("job", "show", first.job.id)["state"] == "completed", 20)
    assert copies_named(cluster, "twice") == ["standalone1"]
    cluster.ok("vm", "delete", "twice")
