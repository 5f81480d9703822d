"""Duplicate copies end to end: a confused administrator starts a second copy of an HA
VM on another node through that agent's own API; the next cluster refresh stops it,
keeps the copy holding the current lease, and tells about it (an `incident` event and
the VM's `last_incident`), on real agents, manager and broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cluster_harness import LocalCluster, active_copies, assert_invariant, wait_for

from havm.v1 import agent_pb2, agent_pb2_grpc, common_pb2

pytestmark = pytest.mark.integration

NODES = ["node1", "node2", "node3", "node4"]


def agent(cluster: LocalCluster, host: str) -> agent_pb2_grpc.AgentServiceStub:
    channel = cluster.channel(f"agent:{host}")
    return agent_pb2_grpc.AgentServiceStub(channel)


def start_duplicate(cluster: LocalCluster, vm_id: str, source: str, host: str) -> int:
    """What the administrator does: the VM's own spec, created on `host` on its local
    disk (the CSV already holds the VM's files), then started; the copy's lease generation."""
    spec = agent(cluster, source).GetVm(agent_pb2.AgentServiceGetVmRequest(vm_id=vm_id), timeout=5).vm.spec
    spec.storage.CopyFrom(common_pb2.StorageLocation(kind=common_pb2.STORAGE_KIND_LOCAL_DISK, name="C"))
    stub = agent(cluster, host)
    stub.CreateVm(agent_pb2.AgentServiceCreateVmRequest(spec=spec), timeout=10)
    started = stub.OperateVm(
        agent_pb2.AgentServiceOperateVmRequest(vm_id=vm_id, operation=agent_pb2.VM_OPERATION_START),
        timeout=10,
    )
    return started.vm.lease_generation


def leases(cluster: LocalCluster, vm_id: str) -> list[dict]:
    """Every lease record of the VM's files, the SAN's and every host's local disks."""
    return [json.loads(path.read_text()) for path in Path(cluster.state_dir).rglob(f"{vm_id}/lease.json")]


def incident_events(cluster: LocalCluster, vm: str) -> list[dict]:
    lines = cluster.ok("events", "-o", "json", "--last", "500").stdout.splitlines()
    return [e for line in lines if (e := json.loads(line))["kind"] == "incident" and e["vm"] == vm]


def create_ha_vm(cluster: LocalCluster, name: str) -> dict:
    cluster.ok("vm", "create", name, "--ha", "--memory-mb", "256")
    return cluster.json("vm", "show", name)


def other_node(*taken: str) -> str:
    return next(n for n in NODES if n not in taken)


def check_resolved(cluster: LocalCluster, name: str, kept: str, stopped: str, generation: int) -> str:
    """Everything the resolution left, checked; the incident's sentence."""
    vm = cluster.json("vm", "show", name)
    # `cluster refresh` waits for the resolution; the copy stopped is gone at once.
    assert active_copies(cluster).get(vm["id"]) == {kept: generation}
    assert_invariant(cluster, f"after the duplicate of {name} was resolved")
    assert vm["host"] == kept and vm["state"] == "running"
    # The lease: the kept copy's is untouched, the stopped copy's own files are gone.
    assert leases(cluster, vm["id"]) == [{"generation": generation, "owner": kept}]
    incident = vm["last_incident"]
    assert incident is not None, vm
    assert incident["kind"] == "duplicate_copy" and incident["hosts"] == [kept, stopped]
    assert kept in incident["detail"] and stopped in incident["detail"]
    [event] = incident_events(cluster, name)
    assert event["host"] == kept and stopped in event["detail"] and event["detail"] == incident["detail"]
    return incident["detail"]


def test_a_second_copy_with_the_same_lease_is_stopped_and_the_recorded_one_kept(
    default_cluster: LocalCluster,
) -> None:
    cluster = default_cluster
    vm = create_ha_vm(cluster, "twin1")
    home = vm["host"]
    rogue = other_node(home)
    assert start_duplicate(cluster, vm["id"], home, rogue) == 1
    assert active_copies(cluster)[vm["id"]] == {home: 1, rogue: 1}
    cluster.ok("cluster", "refresh")
    assert "recorded there" in check_resolved(cluster, "twin1", home, rogue, 1)
    # Nothing more to resolve: a second refresh records no new incident.
    cluster.ok("cluster", "refresh")
    assert len(incident_events(cluster, "twin1")) == 1


def test_an_older_copy_is_stopped_at_the_periodic_refresh_and_the_newest_lease_kept(
    default_cluster: LocalCluster,
) -> None:
    cluster = default_cluster
    vm = create_ha_vm(cluster, "twin2")
    source = vm["host"]
    destination = other_node(source)
    cluster.ok("vm", "migrate", "twin2", "--to", destination)  # the lease moves on: generation 2
    rogue = other_node(source, destination)
    assert start_duplicate(cluster, vm["id"], destination, rogue) == 1
    assert active_copies(cluster)[vm["id"]] == {destination: 2, rogue: 1}
    # No command: the manager's own refresh (every 5 s) finds it.
    wait_for(lambda: len(active_copies(cluster)[vm["id"]]) == 1, timeout=15, what="the duplicate stopped")
    # The record is written right after the copy is stopped.
    wait_for(lambda: cluster.json("vm", "show", "twin2")["last_incident"], timeout=5, interval=0.3)
    assert "newest lease" in check_resolved(cluster, "twin2", destination, rogue, 2)
