"""The cluster reserve: the exact N-k check against a brute-force oracle, and its properties."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from manager.core.capacity import is_protected, reserve_report
from manager.core.failover import plan_restarts
from manager.core.model import RestartPriority, StorageKind, StorageLocation, VmRecord
from manager.core.placement import HostCapacity, PlacementSnapshot, StorageRoom
from manager.core.states import ClusterState, HostState, VmState

CSV = StorageLocation(StorageKind.CSV, "Volume1")
LUN1 = StorageLocation(StorageKind.LUN, "lun1")
USABLE = 30720


def node(name: str, vms: list[VmRecord], state: HostState = HostState.OK, **kw: object) -> HostCapacity:
    """A node of cluster1 whose free memory accounts for the VMs placed on it."""
    used = sum(vm.memory_mb for vm in vms if vm.host == name and vm.state is not VmState.STOPPED)
    fields: dict = dict(
        name=name,
        cluster="cluster1",
        state=state,
        usable_memory_mb=USABLE,
        memory_free_mb=USABLE - used,
        cores=8,
        running_vcpus=0,
        storage=(StorageRoom("Volume1", StorageKind.CSV, 2000), StorageRoom("lun1", StorageKind.LUN, 200)),
        networks=("External",),
    )
    fields.update(kw)
    return HostCapacity(**fields)


def vm(name: str, host: str, memory_mb: int = 4096, **kw: object) -> VmRecord:
    fields: dict = dict(
        id=f"id-{name}",
        name=name,
        host=host,
        state=VmState.RUNNING,
        highly_available=True,
        memory_mb=memory_mb,
        cpus=1,
        disk_gb=20,
        storage=CSV,
        networks=("External",),
    )
    fields.update(kw)
    return VmRecord(**fields)


def spread(counts: dict[str, int], memory_mb: int = 4096) -> list[VmRecord]:
    out: list[VmRecord] = []
    for host, count in counts.items():
        out.extend(vm(f"{host}-v{i}", host, memory_mb) for i in range(count))
    return out


def cluster(counts: dict[str, int], states: dict[str, HostState] | None = None) -> tuple:
    vms = spread(counts)
    states = states or {}
    snapshot = PlacementSnapshot(tuple(node(h, vms, states.get(h, HostState.OK)) for h in counts))
    return snapshot, vms


def oracle(snapshot: PlacementSnapshot, vms: list[VmRecord], reserve: int) -> set[frozenset[str]]:
    """Every failure set of `reserve` healthy nodes after which the planner leaves a VM
    unplaced: the definition of overcommitted, by brute force."""
    healthy = [h.name for h in snapshot.hosts if h.state is HostState.OK]
    names = {h.name for h in snapshot.hosts}
    breaking: set[frozenset[str]] = set()
    for failed in combinations(healthy, min(reserve, len(healthy))):
        survivors = PlacementSnapshot(
            tuple(h for h in snapshot.hosts if h.name not in failed and h.state is HostState.OK)
        )
        lost = [
            v
            for v in vms
            if is_protected(v) and v.host in names and (v.host in failed or v.host not in healthy)
        ]
        plan = plan_restarts(survivors, lost, 0.0, cluster="cluster1")
        if plan.waiting:
            breaking.add(frozenset(failed))
    return breaking


def test_the_default_cluster_takes_exactly_21_vms_of_4_gib_with_reserve_1() -> None:
    # Four nodes of 30,720 MB usable: any three hold 21 VMs of 4 GiB, so 21 survive
    # the loss of any node however they are spread, and a 22nd never does.
    for counts in (
        {"node1": 6, "node2": 5, "node3": 5, "node4": 5},
        {"node1": 7, "node2": 7, "node3": 7, "node4": 0},
    ):
        snapshot, vms = cluster(counts)
        assert reserve_report("cluster1", 1, snapshot, vms).state is ClusterState.OK
    snapshot, vms = cluster({"node1": 6, "node2": 6, "node3": 5, "node4": 5})
    report = reserve_report("cluster1", 1, snapshot, vms)
    assert report.state is ClusterState.OVERCOMMITTED
    assert report.overcommit is not None
    # The heaviest node is the failure reported, and the detail says why.
    assert report.overcommit.failed_nodes in (("node1",), ("node2",))
    assert len(report.overcommit.unplaced_vms) == 1
    assert "has 2048 MB free, needs 4096 MB" in report.overcommit.detail
    assert report.overcommit.detail.startswith(f"if {report.overcommit.failed_nodes[0]} failed, 1 highly")


def test_a_cluster_with_room_to_spare_is_judged_without_running_the_planner() -> None:
    snapshot, vms = cluster({"node1": 2, "node2": 2, "node3": 2, "node4": 2})
    report = reserve_report("cluster1", 2, snapshot, vms)
    assert report.state is ClusterState.OK
    assert report.failure_sets == 6 and report.planned == 0


def test_nodes_that_are_out_count_as_failed_already() -> None:
    # VMMs rule: with 3 of 4 nodes healthy and reserve 1, any 2 must hold every VM.
    counts = {"node1": 5, "node2": 4, "node3": 4, "node4": 0}
    snapshot, vms = cluster(counts, {"node4": HostState.MAINTENANCE})
    assert reserve_report("cluster1", 1, snapshot, vms).state is ClusterState.OK
    # The same VMs with node4 healthy and reserve 2: any two nodes must hold 13 VMs.
    snapshot, vms = cluster(counts)
    assert reserve_report("cluster1", 2, snapshot, vms).state is ClusterState.OK
    snapshot, vms = cluster(
        {"node1": 5, "node2": 5, "node3": 5, "node4": 0}, {"node4": HostState.MAINTENANCE}
    )
    report = reserve_report("cluster1", 1, snapshot, vms)
    assert report.state is ClusterState.OVERCOMMITTED
    snapshot, vms = cluster(counts, {"node4": HostState.FENCED})
    report = reserve_report("cluster1", 2, snapshot, vms)
    assert report.overcommit is not None
    assert "node4 is fenced" in report.overcommit.detail


def test_vms_that_failover_would_not_restart_do_not_count() -> None:
    def case(priority: RestartPriority) -> ClusterState:
        vms = [
            vm("ha", "node1"),
            vm("plain", "node1", highly_available=False),
            vm("saved", "node1", state=VmState.SAVED),
            *(vm(f"b{i}", "node2", restart_priority=priority) for i in range(6)),
        ]
        snapshot = PlacementSnapshot(
            (node("node1", [v for v in vms if v.state is not VmState.SAVED]), node("node2", vms))
        )
        return reserve_report("cluster1", 1, snapshot, vms).state

    # node2's six VMs need 24,576 MB; node1 has 22,528 MB free (the non-HA VM runs there).
    assert case(RestartPriority.MEDIUM) is ClusterState.OVERCOMMITTED
    # Priority none: failover never restarts them, so they need no room elsewhere.
    assert case(RestartPriority.NONE) is ClusterState.OK


def test_vms_waiting_for_a_restart_must_fit_whatever_fails() -> None:
    vms = spread({"node1": 3, "node2": 3, "node3": 3})
    waiting = [vm(f"w{i}", "node4", state=VmState.STOPPED, failover_from="node4") for i in range(3)]
    snapshot = PlacementSnapshot(
        tuple(node(h, vms) for h in ("node1", "node2", "node3")) + (node("node4", [], HostState.FENCED),)
    )
    assert reserve_report("cluster1", 1, snapshot, vms + waiting).state is ClusterState.OK
    many = [vm(f"w{i}", "node4", state=VmState.STOPPED, failover_from="node4") for i in range(9)]
    report = reserve_report("cluster1", 1, snapshot, vms + many)
    assert report.state is ClusterState.OVERCOMMITTED


def test_a_vm_on_a_network_only_some_nodes_have_counts_against_them_only() -> None:
    vms = [vm("web", "node1", 4096, networks=("Backend",))]
    snapshot = PlacementSnapshot(
        (
            node("node1", vms, networks=("External", "Backend")),
            node("node2", vms),
            node("node3", vms),
        )
    )
    report = reserve_report("cluster1", 1, snapshot, vms)
    assert report.state is ClusterState.OVERCOMMITTED
    assert report.overcommit is not None and "has no network 'Backend'" in report.overcommit.detail
    snapshot = PlacementSnapshot(
        (
            node("node1", vms, networks=("External", "Backend")),
            node("node2", vms, networks=("External", "Backend")),
        )
    )
    assert reserve_report("cluster1", 1, snapshot, vms).state is ClusterState.OK


def test_a_reserve_as_large_as_the_healthy_nodes_cannot_hold_any_vm() -> None:
    snapshot, vms = cluster({"node1": 1, "node2": 0})
    report = reserve_report("cluster1", 2, snapshot, vms)
    assert report.state is ClusterState.OVERCOMMITTED
    assert report.overcommit is not None and report.overcommit.failed_nodes == ("node1", "node2")
    empty, none = cluster({"node1": 0, "node2": 0})
    assert reserve_report("cluster1", 2, empty, none).state is ClusterState.OK


# --- properties over random clusters --------------------------------------------------

SIZES = st.sampled_from([512, 1024, 2048, 4096, 6144, 8192])


@st.composite
def random_clusters(draw: st.DrawFn) -> tuple[PlacementSnapshot, list[VmRecord], int]:
    count = draw(st.integers(2, 6))
    names = [f"node{i + 1}" for i in range(count)]
    vms: list[VmRecord] = []
    for host in names:
        for i in range(draw(st.integers(0, 6))):
            vms.append(
                vm(
                    f"{host}-v{i}",
                    host,
                    draw(SIZES),
                    networks=draw(st.sampled_from([("External",), ("External", "Backend")])),
                    restart_priority=draw(st.sampled_from(list(RestartPriority))),
                    state=draw(st.sampled_from([VmState.RUNNING, VmState.PAUSED, VmState.SAVED])),
                )
            )
    # At most one VM keeps its files on lun1, which only some nodes see.
    lun_user = draw(st.sampled_from([None, *range(len(vms))])) if vms else None
    if lun_user is not None:
        vms[lun_user] = VmRecord(**{**vms[lun_user].__dict__, "storage": LUN1})
    hosts = []
    for host in names:
        state = draw(st.sampled_from([HostState.OK] * 4 + [HostState.MAINTENANCE, HostState.FENCED]))
        networks = draw(st.sampled_from([("External",), ("External", "Backend")]))
        usable = draw(st.sampled_from([16384, 30720]))
        placed = sum(v.memory_mb for v in vms if v.host == host and v.state is not VmState.SAVED)
        rooms: tuple[StorageRoom, ...] = (StorageRoom("Volume1", StorageKind.CSV, 2000),)
        if draw(st.booleans()):
            users = (vms[lun_user].name,) if lun_user is not None else ()
            rooms += (StorageRoom("lun1", StorageKind.LUN, 200, users),)
        hosts.append(
            node(
                host,
                [],
                state,
                usable_memory_mb=usable,
                memory_free_mb=usable - placed,
                networks=networks,
                storage=rooms,
            )
        )
    return PlacementSnapshot(tuple(hosts)), vms, draw(st.integers(0, count - 1))


@settings(max_examples=300, deadline=None)
@given(random_clusters())
def test_the_pruned_check_agrees_with_the_brute_force_oracle(case: tuple) -> None:
    snapshot, vms, reserve = case
    report = reserve_report("cluster1", reserve, snapshot, vms)
    breaking = oracle(snapshot, vms, reserve)
    # ok means: fail ANY `reserve` healthy nodes and every protected VM restarts.
    assert (report.state is ClusterState.OK) == (not breaking)
    assert reserve_report("cluster1", reserve, snapshot, vms, prune=False).state is report.state
    if report.overcommit is not None:
        # The reported set really leaves exactly the reported VMs unplaced.
        failed = report.overcommit.failed_nodes
        assert frozenset(failed) in breaking
        healthy = {h.name for h in snapshot.hosts if h.state is HostState.OK}
        survivors = PlacementSnapshot(
            tuple(h for h in snapshot.hosts if h.name in healthy and h.name not in failed)
        )
        lost = [v for v in vms if is_protected(v) and (v.host in failed or v.host not in healthy)]
        plan = plan_restarts(survivors, lost, 0.0, cluster="cluster1")
        names = {v.id: v.name for v in lost}
        assert sorted(names[i] for i, _ in plan.waiting) == list(report.overcommit.unplaced_vms)


@settings(max_examples=100, deadline=None)
@given(random_clusters())
def test_the_planner_runs_only_where_the_bound_cannot_prove_survival(case: tuple) -> None:
    snapshot, vms, reserve = case
    pruned = reserve_report("cluster1", reserve, snapshot, vms)
    full = reserve_report("cluster1", reserve, snapshot, vms, prune=False)
    assert pruned.planned <= full.planned
    assert full.planned == full.failure_sets or full.state is ClusterState.OVERCOMMITTED
