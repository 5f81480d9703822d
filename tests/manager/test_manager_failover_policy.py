"""Failover policies: owners, threshold and failback (failover_policy), restarts that honour
owners (failover), what `vm repair` retries (repair), failures that outlive refreshes
(reconcile), and the VM state `waiting`."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from manager.core.errors import FailedPreconditionError, IllegalTransitionError, InvalidArgumentError
from manager.core.failover import RestartPlan, place_by_owners, plan_restarts, restart_order, restart_request
from manager.core.failover_policy import (
    Failback,
    check_policy,
    effective_max_failovers,
    in_failback_window,
    owner_order,
    plan_failbacks,
    recent_failovers,
    threshold_reached,
)
from manager.core.model import (
    DEFAULT_FAILOVER_PERIOD_S,
    FailbackMode,
    FailedAction,
    FailoverPolicy,
    ReportedVm,
    RestartPriority,
    StorageKind,
    StorageLocation,
    VmRecord,
)
from manager.core.placement import HostCapacity, PlacementSnapshot, StorageRoom, host_score, stars
from manager.core.reconcile import ReconcileResult, keeps_failure, mark_unknown, reconcile
from manager.core.repair import RetryKind, check_repairable, retry_kind
from manager.core.states import VM_TRANSITIONS, HostState, VmState, change_vm_state

NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
CSV = StorageLocation(StorageKind.CSV, "Volume1")
NODES = ("node1", "node2", "node3", "node4")


# --- builders ------------------------------------------------------------------------


def policy(**kw: object) -> FailoverPolicy:
    return FailoverPolicy(**kw)  # type: ignore[arg-type]


def vm(
    name: str = "web1", host: str | None = "node1", state: VmState = VmState.RUNNING, **kw: object
) -> VmRecord:
    fields: dict = dict(
        id=f"id-{name}",
        name=name,
        host=host,
        state=state,
        highly_available=True,
        memory_mb=2048,
        cpus=1,
        disk_gb=20,
        storage=CSV,
    )
    fields.update(kw)
    return VmRecord(**fields)


def node(
    name: str,
    free: int = 8000,
    state: HostState = HostState.OK,
    cluster: str | None = "cluster1",
    usable: int = 16000,
    **kw: object,
) -> HostCapacity:
    fields: dict = dict(
        name=name,
        cluster=cluster,
        state=state,
        usable_memory_mb=usable,
        memory_free_mb=free,
        cores=8,
        running_vcpus=0,
        storage=(StorageRoom("Volume1", StorageKind.CSV, 1000),) if cluster else (),
        networks=("External",),
    )
    fields.update(kw)
    return HostCapacity(**fields)


def snap(*hosts: HostCapacity) -> PlacementSnapshot:
    return PlacementSnapshot(tuple(hosts))


def reported(record: VmRecord, state: VmState, lease: int = 0, reason: str = "") -> ReportedVm:
    return ReportedVm(
        id=record.id,
        name=record.name,
        state=state,
        memory_mb=record.memory_mb,
        cpus=record.cpus,
        disk_gb=record.disk_gb,
        storage=record.storage,
        networks=record.networks,
        highly_available=record.highly_available,
        reason=reason,
        lease_generation=lease,
    )


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# --- check_policy ----------------------------------------------------------------------


def test_the_default_policy_is_accepted_for_any_vm() -> None:
    check_policy(FailoverPolicy(), highly_available=True, cluster_nodes=NODES)
    check_policy(FailoverPolicy(), highly_available=False, cluster_nodes=())


def test_a_valid_policy_is_accepted() -> None:
    check_policy(
        policy(
            preferred_owners=("node2", "node1"),
            possible_owners=("node1", "node2", "node3"),
            max_failovers=2,
            failback=FailbackMode.WINDOW,
            failback_window=(22, 6),
        ),
        highly_available=True,
        cluster_nodes=NODES,
    )
    # Preferred owners with every node possible (possible_owners empty).
    check_policy(policy(preferred_owners=("node4",)), highly_available=True, cluster_nodes=NODES)


@pytest.mark.parametrize(
    "bad",
    [
        policy(preferred_owners=("node1",)),
        policy(max_failovers=3),
        policy(failback=FailbackMode.IMMEDIATE),
        policy(failover_period_s=3600),
    ],
)
def test_any_policy_on_a_vm_that_is_not_highly_available_is_refused(bad: FailoverPolicy) -> None:
    with pytest.raises(FailedPreconditionError, match="apply to highly available VMs only") as info:
        check_policy(bad, highly_available=False, cluster_nodes=NODES)
    assert info.value.code == "FAILED_PRECONDITION"


def test_unknown_nodes_are_named_per_field() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_policy(
            policy(preferred_owners=("nodeX", "node1"), possible_owners=("node1", "nodeY", "nodeZ", "nodeX")),
            highly_available=True,
            cluster_nodes=NODES,
        )
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.message == (
        "preferred_owners: nodeX not a node of the VM's cluster; "
        "possible_owners: nodeY, nodeZ, nodeX not a node of the VM's cluster"
    )


def test_a_node_named_twice_is_refused() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_policy(
            policy(
                preferred_owners=("node2", "node1", "node2"),
                possible_owners=("node3", "node3", "node1", "node2"),
            ),
            highly_available=True,
            cluster_nodes=NODES,
        )
    assert info.value.message == "preferred_owners: node2 named twice; possible_owners: node3 named twice"


def test_a_preferred_owner_that_is_not_a_possible_owner_is_refused() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_policy(
            policy(preferred_owners=("node1", "node3", "node4"), possible_owners=("node1", "node2")),
            highly_available=True,
            cluster_nodes=NODES,
        )
    assert info.value.message == "preferred_owners: node3, node4 not among the possible owners"


def test_every_problem_is_named_in_one_sentence() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_policy(
            policy(preferred_owners=("nodeX", "node3", "node3"), possible_owners=("node1", "node1")),
            highly_available=True,
            cluster_nodes=NODES,
        )
    message = info.value.message
    assert message.count(";") == 3
    assert "preferred_owners: nodeX not a node of the VM's cluster" in message
    assert "preferred_owners: node3 named twice" in message
    assert "possible_owners: node1 named twice" in message
    assert re.search(r"preferred_owners: nodeX, node3(, node3)? not among the possible owners", message)


def test_a_cluster_without_nodes_knows_none_of_the_owners() -> None:
    with pytest.raises(InvalidArgumentError, match="node1 not a node of the VM's cluster"):
        check_policy(policy(possible_owners=("node1",)), highly_available=True, cluster_nodes=())


# --- effective_max_failovers, recent_failovers, threshold_reached ---------------------


@pytest.mark.parametrize(("nodes", "expected"), [(0, 0), (1, 0), (2, 1), (4, 3), (16, 15)])
def test_the_default_threshold_is_nodes_minus_one(nodes: int, expected: int) -> None:
    assert effective_max_failovers(FailoverPolicy(), nodes) == expected


@pytest.mark.parametrize("limit", [0, 1, 7])
def test_the_policy_threshold_wins_over_the_default(limit: int) -> None:
    assert effective_max_failovers(policy(max_failovers=limit), 4) == limit


def test_the_default_period_is_six_hours() -> None:
    assert DEFAULT_FAILOVER_PERIOD_S == 6 * 3600 == FailoverPolicy().failover_period_s


def test_failovers_older_than_the_period_do_not_count() -> None:
    period = 3600
    times = (ago(period + 1), ago(period - 1), ago(60), ago(0))
    record = vm(policy=policy(failover_period_s=period), failover_times=times)
    assert recent_failovers(record, NOW) == (ago(period - 1), ago(60), ago(0))
    # Later on, the older ones age out too.
    assert recent_failovers(record, NOW + timedelta(seconds=period - 30)) == (ago(0),)
    assert recent_failovers(record, NOW + timedelta(days=1)) == ()


def test_no_failovers_means_none_recent() -> None:
    assert recent_failovers(vm(), NOW) == ()


def test_below_the_limit_a_failover_is_allowed() -> None:
    record = vm(policy=policy(max_failovers=2), failover_times=(ago(100),))
    assert threshold_reached(record, 4, NOW) is None


def test_exactly_at_the_limit_a_failover_is_refused() -> None:
    record = vm(policy=policy(max_failovers=2, failover_period_s=7200), failover_times=(ago(100), ago(50)))
    assert threshold_reached(record, 4, NOW) == (
        "failover threshold reached: 2 failover(s) in the last 2 h, at most 2 allowed"
    )


def test_old_failovers_free_the_threshold_again() -> None:
    record = vm(policy=policy(max_failovers=1, failover_period_s=3600), failover_times=(ago(3601),))
    assert threshold_reached(record, 4, NOW) is None
    assert threshold_reached(record, 4, ago(3600 - 10)) is not None


def test_max_failovers_zero_never_allows_one() -> None:
    record = vm(policy=policy(max_failovers=0))
    assert threshold_reached(record, 8, NOW) == (
        "failover threshold reached: 0 failover(s) in the last 6 h, at most 0 allowed"
    )


def test_the_default_threshold_follows_the_cluster_size() -> None:
    record = vm(failover_times=(ago(10), ago(20)))
    assert threshold_reached(record, 4, NOW) is None  # 2 < 3
    assert threshold_reached(record, 3, NOW) is not None  # 2 >= 2
    assert "at most 2 allowed" in (threshold_reached(record, 3, NOW) or "")


@settings(max_examples=80, deadline=None)
@given(
    ages=st.lists(st.integers(0, 20 * 3600), max_size=12),
    period=st.integers(60, 12 * 3600),
    limit=st.one_of(st.none(), st.integers(0, 6)),
    nodes=st.integers(1, 8),
)
def test_threshold_counts_exactly_the_failovers_inside_the_period(
    ages: list[int], period: int, limit: int | None, nodes: int
) -> None:
    times = tuple(sorted(ago(a) for a in ages))
    record = vm(policy=policy(max_failovers=limit, failover_period_s=period), failover_times=times)
    inside = [a for a in ages if a < period]
    assert len(recent_failovers(record, NOW)) == len(inside)
    allowed = limit if limit is not None else nodes - 1
    assert (threshold_reached(record, nodes, NOW) is None) == (len(inside) < allowed)


# --- owner_order -----------------------------------------------------------------------


def test_owner_order_puts_preferred_owners_first_in_their_order() -> None:
    p = policy(preferred_owners=("node3", "node1"))
    assert owner_order(p, ["node1", "node2", "node3", "node4"]) == (("node3", "node1"), ("node2", "node4"))


def test_owner_order_leaves_out_nodes_that_are_not_possible_owners() -> None:
    p = policy(preferred_owners=("node3",), possible_owners=("node2", "node3"))
    assert owner_order(p, ["node1", "node2", "node3", "node4"]) == (("node3",), ("node2",))


def test_owner_order_skips_preferred_owners_that_are_not_candidates() -> None:
    p = policy(preferred_owners=("node1", "node4", "node2"))
    assert owner_order(p, ["node2", "node3"]) == (("node2",), ("node3",))


def test_owner_order_without_a_policy_keeps_every_candidate_in_order() -> None:
    assert owner_order(FailoverPolicy(), ["b", "a", "c"]) == ((), ("b", "a", "c"))
    assert owner_order(FailoverPolicy(), []) == ((), ())


def test_owner_order_with_no_possible_owner_among_candidates_is_empty() -> None:
    assert owner_order(policy(possible_owners=("node1",)), ["node2", "node3"]) == ((), ())


# --- in_failback_window ----------------------------------------------------------------


@pytest.mark.parametrize("hour", range(24))
def test_never_fails_back_at_any_hour(hour: int) -> None:
    assert in_failback_window(policy(failback=FailbackMode.NEVER), hour) is False
    # Even with a window set, `never` wins.
    assert in_failback_window(policy(failback=FailbackMode.NEVER, failback_window=(0, 23)), hour) is False


@pytest.mark.parametrize("hour", range(24))
def test_immediate_fails_back_at_any_hour(hour: int) -> None:
    assert in_failback_window(policy(failback=FailbackMode.IMMEDIATE), hour) is True


@pytest.mark.parametrize("hour", range(24))
def test_a_daytime_window_is_start_inclusive_end_exclusive(hour: int) -> None:
    p = policy(failback=FailbackMode.WINDOW, failback_window=(8, 17))
    assert in_failback_window(p, hour) is (8 <= hour <= 16)


@pytest.mark.parametrize("hour", range(24))
def test_a_window_spanning_midnight(hour: int) -> None:
    p = policy(failback=FailbackMode.WINDOW, failback_window=(22, 6))
    assert in_failback_window(p, hour) is (hour in (22, 23, 0, 1, 2, 3, 4, 5))


@pytest.mark.parametrize(("hour", "inside"), [(7, False), (8, True), (16, True), (17, False)])
def test_window_boundaries(hour: int, inside: bool) -> None:
    assert in_failback_window(policy(failback=FailbackMode.WINDOW, failback_window=(8, 17)), hour) is inside


@pytest.mark.parametrize(("hour", "inside"), [(21, False), (22, True), (0, True), (5, True), (6, False)])
def test_midnight_window_boundaries(hour: int, inside: bool) -> None:
    assert in_failback_window(policy(failback=FailbackMode.WINDOW, failback_window=(22, 6)), hour) is inside


# --- plan_failbacks --------------------------------------------------------------------


def home(**kw: object) -> FailoverPolicy:
    fields: dict = dict(preferred_owners=("node1", "node2"), failback=FailbackMode.IMMEDIATE)
    fields.update(kw)
    return FailoverPolicy(**fields)


OK_ALL = frozenset(NODES)


def test_a_running_vm_away_from_its_first_preferred_owner_goes_home() -> None:
    away = vm("web1", host="node3", policy=home())
    assert plan_failbacks([away], OK_ALL, 12) == (Failback("id-web1", "web1", "node3", "node1"),)


def test_failbacks_are_sorted_by_name() -> None:
    vms = [vm("zeta", host="node3", policy=home()), vm("alpha", host="node2", policy=home())]
    assert [(f.vm_name, f.source, f.target) for f in plan_failbacks(vms, OK_ALL, 12)] == [
        ("alpha", "node2", "node1"),
        ("zeta", "node3", "node1"),
    ]


@pytest.mark.parametrize(
    "record",
    [
        vm(host="node1", policy=home()),  # already home
        vm(host="node3", policy=FailoverPolicy(failback=FailbackMode.IMMEDIATE)),  # no preferred owner
        vm(host="node3", highly_available=False, policy=home()),  # not HA
        vm(host=None, policy=home()),  # nowhere
        vm(host="node3", state=VmState.PAUSED, policy=home()),
        vm(host="node3", state=VmState.STOPPED, policy=home()),
        vm(host="node3", state=VmState.SAVED, policy=home()),
        vm(host="node3", state=VmState.MIGRATING, policy=home()),
        vm(host="node3", state=VmState.FAILED, policy=home()),
        vm(host="node3", state=VmState.WAITING, policy=home()),
        vm(host="node3", migration_id="m-1", policy=home()),  # a migration is queued or running
        vm(host="node3", failover_from="node1", policy=home()),  # being failed over
        vm(host="node3", policy=home(failback=FailbackMode.NEVER)),
        vm(host="node3", policy=home(failback=FailbackMode.WINDOW, failback_window=(0, 6))),  # not now
    ],
)
def test_vms_that_do_not_fail_back(record: VmRecord) -> None:
    assert plan_failbacks([record], OK_ALL, 12) == ()


def test_no_failback_while_the_first_preferred_owner_is_not_ok() -> None:
    away = vm("web1", host="node3", policy=home())
    assert plan_failbacks([away], frozenset({"node2", "node3", "node4"}), 12) == ()


def test_a_vm_on_its_second_preferred_owner_stays_while_the_first_is_down() -> None:
    second = vm("web1", host="node2", policy=home())
    assert plan_failbacks([second], frozenset({"node2", "node3", "node4"}), 12) == ()
    # ...and goes home once the first is back.
    assert plan_failbacks([second], OK_ALL, 12) == (Failback("id-web1", "web1", "node2", "node1"),)


def test_a_vm_elsewhere_never_goes_to_its_second_preferred_owner() -> None:
    away = vm("web1", host="node3", policy=home())
    assert plan_failbacks([away], frozenset({"node2", "node3"}), 12) == ()


@pytest.mark.parametrize(("hour", "planned"), [(21, False), (22, True), (3, True), (6, False), (12, False)])
def test_failback_inside_its_window_only(hour: int, planned: bool) -> None:
    away = vm("web1", host="node3", policy=home(failback=FailbackMode.WINDOW, failback_window=(22, 6)))
    assert bool(plan_failbacks([away], OK_ALL, hour)) is planned


# --- plan_restarts / place_by_owners with a policy ------------------------------------


def failed_cluster(**frees: int) -> PlacementSnapshot:
    """node1 is the failed host; the others have the free memory given."""
    return snap(
        node("node1", free=16000, state=HostState.FENCING), *(node(n, f) for n, f in sorted(frees.items()))
    )


def targets(plan: RestartPlan) -> list[tuple[str, str]]:
    return [(r.vm_name, r.host) for r in plan.restarts]


def test_without_a_policy_the_best_rated_node_is_chosen() -> None:
    plan = plan_restarts(failed_cluster(node2=3000, node3=12000), [vm()], 1.0, failed_host="node1")
    assert targets(plan) == [("web1", "node3")]


def test_the_first_preferred_owner_wins_over_a_better_rated_node() -> None:
    record = vm(policy=policy(preferred_owners=("node2",)))
    plan = plan_restarts(failed_cluster(node2=3000, node3=12000), [record], 1.0, failed_host="node1")
    assert targets(plan) == [("web1", "node2")]
    assert plan.waiting == () and plan.decided_at == 1.0


def test_preferred_owners_are_tried_in_their_order() -> None:
    record = vm(policy=policy(preferred_owners=("node3", "node2")))
    plan = plan_restarts(
        failed_cluster(node2=12000, node3=3000, node4=14000), [record], 1.0, failed_host="node1"
    )
    assert targets(plan) == [("web1", "node3")]


def test_a_full_first_preferred_owner_gives_way_to_the_next_preferred() -> None:
    record = vm(policy=policy(preferred_owners=("node2", "node3")))
    plan = plan_restarts(
        failed_cluster(node2=1000, node3=3000, node4=14000), [record], 1.0, failed_host="node1"
    )
    assert targets(plan) == [("web1", "node3")]


def test_when_no_preferred_owner_has_room_the_best_rated_other_possible_owner_is_taken() -> None:
    record = vm(policy=policy(preferred_owners=("node2", "node3")))
    plan = plan_restarts(
        failed_cluster(node2=1000, node3=1000, node4=5000, node5=14000), [record], 1.0, failed_host="node1"
    )
    assert targets(plan) == [("web1", "node5")]


def test_a_preferred_owner_that_is_down_is_skipped() -> None:
    record = vm(policy=policy(preferred_owners=("node2", "node3")))
    snapshot = snap(
        node("node1", state=HostState.FENCING),
        node("node2", free=14000, state=HostState.NOT_RESPONDING),
        node("node3", free=3000),
        node("node4", free=14000),
    )
    assert targets(plan_restarts(snapshot, [record], 1.0, failed_host="node1")) == [("web1", "node3")]


def test_a_node_that_is_not_a_possible_owner_is_never_chosen() -> None:
    record = vm(policy=policy(possible_owners=("node2", "node3")))
    plan = plan_restarts(
        failed_cluster(node2=3000, node3=2500, node4=16000), [record], 1.0, failed_host="node1"
    )
    assert targets(plan) == [("web1", "node2")]


def test_possible_owners_without_room_leave_the_vm_waiting_even_if_another_node_has_room() -> None:
    record = vm(memory_mb=4096, policy=policy(possible_owners=("node2", "node3")))
    plan = plan_restarts(
        failed_cluster(node2=1000, node3=2000, node4=16000), [record], 1.0, failed_host="node1"
    )
    assert plan.restarts == ()
    assert plan.waiting == (
        ("id-web1", "node2 has 1000 MB free, needs 4096 MB; node3 has 2000 MB free, needs 4096 MB"),
    )


def test_a_preferred_owner_outside_the_possible_owners_is_never_chosen() -> None:
    # check_policy refuses such a policy; the planner must still not use it.
    record = vm(policy=policy(preferred_owners=("node4",), possible_owners=("node2",)))
    plan = plan_restarts(failed_cluster(node2=3000, node4=16000), [record], 1.0, failed_host="node1")
    assert targets(plan) == [("web1", "node2")]


def test_when_all_possible_owners_are_down_the_vm_waits_naming_them() -> None:
    record = vm(policy=policy(possible_owners=("node1", "node2")))
    plan = plan_restarts(
        failed_cluster(node2=16000, node3=16000),
        [record],
        1.0,
        failed_host="node1",
        avoid={"id-web1": frozenset({"node2"})},
    )
    assert plan.restarts == ()
    assert plan.waiting == (("id-web1", "none of its possible owners (node1, node2) can be tried"),)


def test_a_possible_owner_that_is_not_ok_is_named_with_its_state() -> None:
    record = vm(policy=policy(possible_owners=("node1", "node2")))
    snapshot = snap(
        node("node1", state=HostState.FENCING),
        node("node2", free=16000, state=HostState.NOT_RESPONDING),
        node("node3", free=16000),
    )
    plan = plan_restarts(snapshot, [record], 1.0, failed_host="node1")
    assert plan.restarts == ()
    assert plan.waiting == (("id-web1", "node2 is not_responding"),)


def test_a_preferred_owner_that_does_not_see_the_volume_is_refused_with_its_reason() -> None:
    lun = StorageLocation(StorageKind.LUN, "lun1")
    record = vm(storage=lun, policy=policy(preferred_owners=("node2",), possible_owners=("node2",)))
    snapshot = snap(
        node(
            "node1", state=HostState.FENCING, storage=(StorageRoom("lun1", StorageKind.LUN, 100, ("web1",)),)
        ),
        node("node2", free=16000),  # sees Volume1 only
    )
    plan = plan_restarts(snapshot, [record], 1.0, failed_host="node1")
    assert plan.restarts == ()
    assert plan.waiting == (("id-web1", "storage: no LUN named lun1"),)


def test_two_vms_preferring_the_same_node_do_not_count_the_same_memory() -> None:
    prefer2 = policy(preferred_owners=("node2",))
    vms = [vm("a", memory_mb=3000, policy=prefer2), vm("b", memory_mb=3000, policy=prefer2)]
    plan = plan_restarts(failed_cluster(node2=4000, node3=16000), vms, 1.0, failed_host="node1")
    assert targets(plan) == [("a", "node2"), ("b", "node3")]


def test_priority_order_decides_who_gets_the_preferred_owner() -> None:
    prefer2 = policy(preferred_owners=("node2",), possible_owners=("node2",))
    vms = [
        vm("a", memory_mb=3000, restart_priority=RestartPriority.LOW, policy=prefer2),
        vm("b", memory_mb=3000, restart_priority=RestartPriority.HIGH, policy=prefer2),
    ]
    plan = plan_restarts(failed_cluster(node2=4000, node3=16000), vms, 1.0, failed_host="node1")
    assert targets(plan) == [("b", "node2")]
    assert [w for w, _ in plan.waiting] == ["id-a"]
    assert plan.waiting[0][1] == "node2 has 1000 MB free, needs 3000 MB"


def test_place_by_owners_with_no_node_to_try_returns_no_reason() -> None:
    record = vm(policy=policy(possible_owners=("node2",)))
    assert place_by_owners({}, record, [], restart_request(record, 8)) == (None, "")


def test_place_by_owners_returns_the_decision_of_the_preferred_owner() -> None:
    record = vm(policy=policy(preferred_owners=("node3",)))
    hosts = {n.name: n for n in (node("node2", free=16000), node("node3", free=2048))}
    decision, why = place_by_owners(hosts, record, ["node2", "node3"], restart_request(record, 8))
    assert why == ""
    assert decision is not None and decision.host == "node3" and decision.storage == CSV


# --- property: restarts honour owners, never the failed host, never overcommit --------


Case = tuple[PlacementSnapshot, str, list[VmRecord]]


@st.composite
def clusters(draw: st.DrawFn) -> Case:
    count = draw(st.integers(3, 8))
    names = [f"n{i}" for i in range(count)]
    states = [HostState.OK, HostState.OK, HostState.OK, HostState.SUSPECT, HostState.MAINTENANCE]
    hosts = [
        node(name, free=draw(st.integers(0, 12000)), usable=16000, state=draw(st.sampled_from(states)))
        for name in names
    ]
    failed = draw(st.sampled_from(names))
    hosts = [replace(h, state=HostState.FENCING) if h.name == failed else h for h in hosts]
    vms: list[VmRecord] = []
    for i in range(draw(st.integers(0, 10))):
        possible = draw(st.lists(st.sampled_from(names), unique=True, max_size=count))
        preferred = draw(st.lists(st.sampled_from(possible or names), unique=True, max_size=3))
        vms.append(
            vm(
                f"vm{i}",
                host=failed,
                memory_mb=draw(st.integers(256, 6000)),
                cpus=draw(st.integers(1, 4)),
                restart_priority=draw(st.sampled_from(list(RestartPriority))),
                policy=policy(preferred_owners=tuple(preferred), possible_owners=tuple(possible)),
            )
        )
    return snap(*hosts), failed, vms


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=clusters())
def test_restarts_land_on_possible_owners_never_the_failed_host_never_overcommitted(case: Case) -> None:
    snapshot, failed, vms = case
    plan = plan_restarts(snapshot, vms, 0.0, failed_host=failed)
    by_name = {h.name: h for h in snapshot.hosts}
    by_id = {v.id: v for v in vms}
    used: dict[str, int] = {}
    for restart in plan.restarts:
        record = by_id[restart.vm_id]
        assert restart.host != failed
        assert by_name[restart.host].state is HostState.OK
        if record.policy.possible_owners:
            assert restart.host in record.policy.possible_owners
        used[restart.host] = used.get(restart.host, 0) + record.memory_mb
    for name, total in used.items():
        assert total <= by_name[name].memory_free_mb
    ids = [r.vm_id for r in plan.restarts] + [w for w, _ in plan.waiting] + [s for s, _ in plan.skipped]
    assert sorted(ids) == sorted(by_id)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=clusters())
def test_restarts_match_an_owner_order_oracle(case: Case) -> None:
    """First preferred owner with room, in order; else the best-rated other possible owner."""
    snapshot, failed, vms = case
    assume(vms)
    plan = plan_restarts(snapshot, vms, 0.0, failed_host=failed)
    room = {h.name: h for h in snapshot.hosts}
    expected: list[tuple[str, str]] = []
    for record in restart_order(vms):
        if record.restart_priority is RestartPriority.NONE:
            continue
        candidates = [n for n in sorted(room) if n != failed and record.policy.may_run_on(n)]
        fits = [
            n
            for n in candidates
            if room[n].state is HostState.OK and room[n].memory_free_mb >= record.memory_mb
        ]
        chosen = next((p for p in record.policy.preferred_owners if p in fits), None)
        if chosen is None:
            others = [n for n in fits if n not in record.policy.preferred_owners]
            request = restart_request(record, 8)
            best: tuple[tuple[float, float], str] | None = None
            for n in others:
                score = host_score(room[n], request)
                rating = (stars(score), score)
                if best is None or rating > best[0]:
                    best = (rating, n)
            chosen = best[1] if best else None
        if chosen is not None:
            expected.append((record.name, chosen))
            h = room[chosen]
            room[chosen] = replace(
                h,
                memory_free_mb=h.memory_free_mb - record.memory_mb,
                running_vcpus=h.running_vcpus + record.cpus,
            )
    assert targets(plan) == expected


# --- repair ----------------------------------------------------------------------------


def test_only_a_failed_vm_can_be_repaired() -> None:
    check_repairable(vm(state=VmState.FAILED, failed_action=FailedAction.START))
    with pytest.raises(FailedPreconditionError) as info:
        check_repairable(vm("web1", state=VmState.WAITING))
    assert info.value.message == "VM web1 is waiting, not failed: nothing to repair"


@pytest.mark.parametrize("state", [s for s in VmState if s is not VmState.FAILED])
def test_every_other_state_is_not_repairable(state: VmState) -> None:
    with pytest.raises(FailedPreconditionError, match=f"is {state.value}, not failed"):
        check_repairable(vm(state=state))


@pytest.mark.parametrize("action", [FailedAction.FAILOVER, FailedAction.THRESHOLD])
@pytest.mark.parametrize("host_state", [HostState.OK, HostState.FENCED, None])
def test_failover_and_threshold_failures_retry_as_a_failover(
    action: FailedAction, host_state: HostState | None
) -> None:
    record = vm(state=VmState.FAILED, failed_action=action)
    assert retry_kind(record, host_state) is RetryKind.FAILOVER


@pytest.mark.parametrize(
    "host_state", [HostState.FENCED, HostState.NOT_RESPONDING, HostState.MAINTENANCE, HostState.STOPPED, None]
)
@pytest.mark.parametrize("action", [FailedAction.START, FailedAction.REPORTED, None])
def test_a_failure_of_an_ha_vm_whose_host_is_not_ok_retries_as_a_failover(
    action: FailedAction | None, host_state: HostState | None
) -> None:
    record = vm(state=VmState.FAILED, failed_action=action)
    assert retry_kind(record, host_state) is RetryKind.FAILOVER


@pytest.mark.parametrize("action", [FailedAction.START, FailedAction.REPORTED, None])
def test_a_failure_of_an_ha_vm_on_an_ok_host_retries_the_start(action: FailedAction | None) -> None:
    assert retry_kind(vm(state=VmState.FAILED, failed_action=action), HostState.OK) is RetryKind.START


@pytest.mark.parametrize("host_state", [HostState.OK, HostState.FENCED, None])
def test_a_start_failure_of_a_vm_that_is_not_ha_retries_the_start(host_state: HostState | None) -> None:
    record = vm(state=VmState.FAILED, highly_available=False, failed_action=FailedAction.START)
    assert retry_kind(record, host_state) is RetryKind.START


# --- reconcile: a failure outlives refreshes -------------------------------------------


def failed(**kw: object) -> VmRecord:
    fields: dict = dict(
        state=VmState.FAILED,
        reason="no node could restart it",
        failed_action=FailedAction.FAILOVER,
        lease_generation=5,
    )
    fields.update(kw)
    return vm(**fields)


@pytest.mark.parametrize("state", [VmState.STOPPED, VmState.SAVED, VmState.FAILED, VmState.STARTING])
def test_keeps_failure_while_the_host_reports_it_not_running(state: VmState) -> None:
    assert keeps_failure(failed(), reported(failed(), state, lease=9)) is True


@pytest.mark.parametrize("state", [VmState.RUNNING, VmState.PAUSED])
def test_a_copy_running_with_the_current_lease_ends_the_failure(state: VmState) -> None:
    assert keeps_failure(failed(), reported(failed(), state, lease=5)) is False
    assert keeps_failure(failed(), reported(failed(), state, lease=6)) is False


def test_a_copy_running_with_a_stale_lease_does_not_end_the_failure() -> None:
    assert keeps_failure(failed(), reported(failed(), VmState.RUNNING, lease=4)) is True


@pytest.mark.parametrize("state", [VmState.RUNNING, VmState.STOPPED, VmState.WAITING])
def test_keeps_failure_only_concerns_failed_vms(state: VmState) -> None:
    record = vm(state=state)
    assert keeps_failure(record, reported(record, VmState.STOPPED)) is False


@pytest.mark.parametrize("state", [VmState.STOPPED, VmState.SAVED])
def test_reconcile_keeps_a_failed_vm_reported_at_rest_failed(state: VmState) -> None:
    record = failed()
    result = reconcile(
        "node1",
        [record],
        [reported(record, state, lease=5, reason="guest off")],
        now=NOW,
    )
    assert result.missing == () and result.imports == ()
    assert result.updates == ()  # nothing changed
    assert result.stale == ()


def test_reconcile_keeps_failure_but_records_what_else_the_host_reports() -> None:
    record = failed()
    report = replace(reported(record, VmState.STOPPED, lease=7), memory_mb=4096)
    (updated,) = reconcile("node1", [record], [report], now=NOW).updates
    assert updated.state is VmState.FAILED
    assert updated.reason == "no node could restart it"
    assert updated.failed_action is FailedAction.FAILOVER
    assert updated.memory_mb == 4096 and updated.lease_generation == 7


@pytest.mark.parametrize("lease", [5, 6])
def test_reconcile_ends_the_failure_when_it_runs_with_the_current_lease(lease: int) -> None:
    record = failed()
    (updated,) = reconcile(
        "node1", [record], [reported(record, VmState.RUNNING, lease=lease)], now=NOW
    ).updates
    assert updated.state is VmState.RUNNING
    assert updated.failed_action is None
    assert updated.reason == ""
    assert updated.lease_generation == lease


def test_reconcile_ends_the_failure_when_it_is_paused_with_the_current_lease() -> None:
    record = failed()
    (updated,) = reconcile("node1", [record], [reported(record, VmState.PAUSED, lease=5)], now=NOW).updates
    assert updated.state is VmState.PAUSED and updated.failed_action is None


def test_reconcile_keeps_the_failure_when_it_runs_with_a_stale_lease_on_its_own_host() -> None:
    record = failed()
    result = reconcile("node1", [record], [reported(record, VmState.RUNNING, lease=4)], now=NOW)
    assert result.updates == ()


def test_a_failure_a_host_reports_is_recorded_as_reported() -> None:
    record = vm(state=VmState.RUNNING)
    report = reported(record, VmState.FAILED, reason="the guest crashed")
    (updated,) = reconcile("node1", [record], [report], now=NOW).updates
    assert updated.state is VmState.FAILED
    assert updated.failed_action is FailedAction.REPORTED
    assert updated.reason == "the guest crashed"


def test_a_failed_vm_no_longer_reported_does_not_become_missing() -> None:
    result = reconcile("node1", [failed()], [], now=NOW)
    assert result == ReconcileResult((), (), (), (), ())


def test_a_waiting_vm_no_longer_reported_does_not_become_missing() -> None:
    result = reconcile("node1", [vm(state=VmState.WAITING)], [], now=NOW)
    assert result.missing == () and result.updates == ()


def test_a_running_vm_no_longer_reported_becomes_missing() -> None:
    (gone,) = reconcile("node1", [vm(state=VmState.RUNNING)], [], now=NOW).missing
    assert gone.state is VmState.MISSING and gone.reason == "host node1 no longer reports this VM"


def test_mark_unknown_keeps_failed_and_waiting_vms() -> None:
    vms = [
        failed(name="f"),
        vm("w", state=VmState.WAITING, reason="no node has room"),
        vm("r", state=VmState.RUNNING),
        vm("p", state=VmState.PAUSED),
        vm("s", state=VmState.STOPPED),
    ]
    changed = mark_unknown(vms, "node1", "probe failed")
    assert sorted(v.name for v in changed) == ["p", "r"]
    assert all(v.state is VmState.UNKNOWN for v in changed)
    assert changed[0].reason == "host node1 does not answer: probe failed"


def test_mark_unknown_leaves_other_hosts_alone() -> None:
    assert mark_unknown([vm("r", host="node2")], "node1", "x") == []


# --- VM state `waiting` -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (VmState.FAILED, VmState.WAITING),
        (VmState.WAITING, VmState.STARTING),
        (VmState.WAITING, VmState.RUNNING),
        (VmState.WAITING, VmState.FAILED),
        (VmState.WAITING, VmState.STOPPED),
        (VmState.WAITING, VmState.UNKNOWN),
        (VmState.UNKNOWN, VmState.WAITING),
        (VmState.MISSING, VmState.WAITING),
        (VmState.CREATING, VmState.WAITING),
    ],
)
def test_legal_waiting_edges(old: VmState, new: VmState) -> None:
    assert change_vm_state("web1", old, new) is new


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (VmState.WAITING, VmState.PAUSED),
        (VmState.WAITING, VmState.SAVED),
        (VmState.WAITING, VmState.MIGRATING),
        (VmState.WAITING, VmState.MISSING),
        (VmState.WAITING, VmState.CREATING),
        (VmState.RUNNING, VmState.WAITING),
        (VmState.STOPPED, VmState.WAITING),
        (VmState.SAVED, VmState.WAITING),
        (VmState.MIGRATING, VmState.WAITING),
    ],
)
def test_illegal_waiting_edges(old: VmState, new: VmState) -> None:
    with pytest.raises(IllegalTransitionError, match=f"VM web1 cannot go from {old.value} to {new.value}"):
        change_vm_state("web1", old, new)


def test_waiting_has_a_row_of_its_own() -> None:
    assert VM_TRANSITIONS[VmState.WAITING] == frozenset(
        {VmState.STARTING, VmState.RUNNING, VmState.FAILED, VmState.STOPPED, VmState.UNKNOWN}
    )


def test_a_failed_vm_keeps_its_failure_through_its_host_going_silent_and_back() -> None:
    record = failed()
    assert mark_unknown([record], "node1", "probe failed") == []
    report = reported(record, VmState.STOPPED, lease=5, reason="powered off")
    assert reconcile("node1", [record], [report], now=NOW).updates == ()
