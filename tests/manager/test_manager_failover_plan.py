"""plan_restarts: priority order, `none`, capacity, reasons, and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from manager.core.failover import plan_restarts, restart_order
from manager.core.model import RestartPriority, StorageKind, StorageLocation, VmRecord
from manager.core.placement import HostCapacity, PlacementSnapshot, StorageRoom
from manager.core.states import HostState, VmState

CSV = StorageLocation(StorageKind.CSV, "Volume1")


def node(name: str, free: int = 8000, cluster: str | None = "cluster1", state=HostState.OK) -> HostCapacity:
    return HostCapacity(
        name=name,
        cluster=cluster,
        state=state,
        usable_memory_mb=16000,
        memory_free_mb=free,
        cores=8,
        running_vcpus=0,
        storage=(StorageRoom("Volume1", StorageKind.CSV, 1000),) if cluster else (),
        networks=("External",),
    )


def vm(name: str, memory: int = 2048, priority=RestartPriority.MEDIUM, host: str = "node1") -> VmRecord:
    return VmRecord(
        id=f"id-{name}",
        name=name,
        host=host,
        state=VmState.RUNNING,
        highly_available=True,
        memory_mb=memory,
        cpus=1,
        disk_gb=20,
        storage=CSV,
        restart_priority=priority,
    )


def test_restart_order_is_high_medium_low() -> None:
    vms = [vm("a", priority=RestartPriority.LOW), vm("b"), vm("c", priority=RestartPriority.HIGH)]
    assert [v.name for v in restart_order(vms)] == ["c", "b", "a"]


def test_high_priority_gets_the_room_when_room_is_short() -> None:
    snapshot = PlacementSnapshot((node("node1", state=HostState.FENCING), node("node2", free=4096)))
    vms = [vm("low", 3000, RestartPriority.LOW), vm("high", 3000, RestartPriority.HIGH)]
    plan = plan_restarts(snapshot, vms, 1.0, failed_host="node1")
    assert [(r.vm_name, r.host) for r in plan.restarts] == [("high", "node2")]
    assert [vm_id for vm_id, _ in plan.waiting] == ["id-low"]
    assert "node2 has 1096 MB free, needs 3000 MB" in plan.waiting[0][1]


def test_priority_none_never_restarts() -> None:
    snapshot = PlacementSnapshot((node("node1", state=HostState.FENCING), node("node2")))
    plan = plan_restarts(snapshot, [vm("x", priority=RestartPriority.NONE)], 1.0, failed_host="node1")
    assert plan.restarts == ()
    assert plan.skipped[0][0] == "id-x" and "never restarted" in plan.skipped[0][1]


def test_never_the_failed_host_nor_another_cluster_nor_a_host_that_is_not_ok() -> None:
    snapshot = PlacementSnapshot(
        (
            node("node1", free=30000, state=HostState.FENCING),
            node("node2", state=HostState.SUSPECT),
            node("other1", cluster="cluster2", free=30000),
        )
    )
    plan = plan_restarts(snapshot, [vm("x")], 1.0, failed_host="node1")
    assert plan.restarts == ()
    assert "node2 is suspect" in plan.waiting[0][1]


def test_the_failed_host_back_in_service_is_a_node_like_any_other() -> None:
    snapshot = PlacementSnapshot((node("node1", free=30000), node("node2", free=0)))
    plan = plan_restarts(snapshot, [vm("x")], 1.0, failed_host="node1")
    assert [r.host for r in plan.restarts] == ["node1"]


def test_avoided_nodes_are_not_tried() -> None:
    snapshot = PlacementSnapshot((node("node1", state=HostState.FENCED), node("node2"), node("node3")))
    plan = plan_restarts(snapshot, [vm("x")], 1.0, failed_host="node1", avoid={"id-x": frozenset({"node2"})})
    assert [r.host for r in plan.restarts] == ["node3"]


@settings(max_examples=60, deadline=None)
@given(
    frees=st.lists(st.integers(0, 9000), min_size=1, max_size=5),
    clusters=st.lists(st.sampled_from(["cluster1", "cluster2"]), min_size=5, max_size=5),
    memories=st.lists(st.integers(256, 5000), min_size=0, max_size=10),
    priorities=st.lists(st.sampled_from(list(RestartPriority)), min_size=10, max_size=10),
)
def test_never_overcommits_and_never_places_off_cluster(frees, clusters, memories, priorities) -> None:
    hosts = [node("node0", cluster="cluster1", state=HostState.FENCING)]
    hosts += [node(f"n{i}", free, clusters[i]) for i, free in enumerate(frees)]
    snapshot = PlacementSnapshot(tuple(hosts))
    vms = [vm(f"vm{i}", m, priorities[i], host="node0") for i, m in enumerate(memories)]
    plan = plan_restarts(snapshot, vms, 0.0, failed_host="node0")
    by_host = {h.name: h for h in hosts}
    used: dict[str, int] = {}
    memory = {v.id: v.memory_mb for v in vms}
    for restart in plan.restarts:
        target = by_host[restart.host]
        assert target.cluster == "cluster1" and restart.host != "node0"
        used[restart.host] = used.get(restart.host, 0) + memory[restart.vm_id]
    for name, total in used.items():
        assert total <= by_host[name].memory_free_mb
    # Every VM is accounted for exactly once.
    ids = [r.vm_id for r in plan.restarts] + [w for w, _ in plan.waiting] + [s for s, _ in plan.skipped]
    assert sorted(ids) == sorted(v.id for v in vms)
