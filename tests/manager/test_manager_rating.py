"""Host ratings with reasons, the two placement goals, and the choice of a host."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manager.core.capacity import ReserveReport, reserve_report
from manager.core.errors import FailedPreconditionError, ResourceExhaustedError
from manager.core.host_choice import choose_host
from manager.core.model import RestartPriority, StorageKind, StorageLocation, VmRecord
from manager.core.placement import (
    HostCapacity,
    PlacementGoal,
    PlacementRequest,
    PlacementSnapshot,
    RatingReason,
    StorageRoom,
)
from manager.core.rating import rate_hosts
from manager.core.states import HostState, VmState

CSV = StorageLocation(StorageKind.CSV, "Volume1")


def node(name: str, free: int = 30720, state: HostState = HostState.OK, **kw: object) -> HostCapacity:
    fields: dict = dict(
        name=name,
        cluster="cluster1",
        state=state,
        usable_memory_mb=30720,
        memory_free_mb=free,
        cores=8,
        running_vcpus=0,
        storage=(StorageRoom("Volume1", StorageKind.CSV, 2000),),
        networks=("External",),
    )
    fields.update(kw)
    return HostCapacity(**fields)


def standalone(name: str = "standalone1") -> HostCapacity:
    return node(
        name,
        14336,
        cluster=None,
        usable_memory_mb=14336,
        storage=(StorageRoom("C", StorageKind.LOCAL_DISK, 400),),
    )


def request(**kw: object) -> PlacementRequest:
    fields: dict = dict(vm_name="new", memory_mb=4096, cpus=1, disk_gb=20, highly_available=True)
    fields.update(kw)
    return PlacementRequest(**fields)


def vms_on(counts: dict[str, int], size: int = 4096) -> list[VmRecord]:
    return [
        VmRecord(f"id-{h}-{i}", f"{h}-v{i}", h, VmState.RUNNING, True, size, 1, 20, CSV)
        for h, n in counts.items()
        for i in range(n)
    ]


def loaded(counts: dict[str, int]) -> tuple[PlacementSnapshot, list[VmRecord]]:
    vms = vms_on(counts)
    snapshot = PlacementSnapshot(
        tuple(node(h, 30720 - 4096 * n) for h, n in counts.items()) + (standalone(),)
    )
    return snapshot, vms


def reserves(snapshot: PlacementSnapshot, vms: list[VmRecord], reserve: int = 1) -> dict[str, ReserveReport]:
    return {"cluster1": reserve_report("cluster1", reserve, snapshot, vms)}


def test_every_host_is_rated_with_every_reason_it_cannot_take_the_vm() -> None:
    snapshot = PlacementSnapshot(
        (
            node("node1"),
            node("node2", free=1024, networks=()),
            node("node3", state=HostState.MAINTENANCE),
            node("node4", state=HostState.NOT_RESPONDING),
            standalone(),
        )
    )
    ratings = rate_hosts(snapshot, request(networks=("External",)), [], reserves(snapshot, [], reserve=0))
    by_host = {r.host: r for r in ratings}
    assert ratings[0].host == "node1" and ratings[0].stars > 0
    assert {n.code for n in by_host["node2"].blocking} == {RatingReason.NETWORK_MISSING, RatingReason.MEMORY}
    assert [n.code for n in by_host["node3"].blocking] == [RatingReason.MAINTENANCE]
    assert by_host["node3"].stars == 0 and "maintenance mode" in by_host["node3"].why_not()
    assert [n.code for n in by_host["node4"].blocking] == [RatingReason.HOST_STATE]
    assert [n.code for n in by_host["standalone1"].blocking] == [RatingReason.NOT_CLUSTER_NODE]
    # A host that can take the VM says how loaded it would be: where its stars come from.
    assert {n.code for n in by_host["node1"].notes} == {RatingReason.MEMORY_LOAD, RatingReason.CPU_LOAD}
    assert "4096 of 30720 MB in use after placement (13%)" in by_host["node1"].notes[0].detail
    # Zero stars last, by name.
    assert [r.host for r in ratings[1:]] == ["node2", "node3", "node4", "standalone1"]


def test_a_vm_that_is_not_ha_is_refused_by_every_cluster_node() -> None:
    snapshot, vms = loaded({"node1": 0, "node2": 0})
    ratings = rate_hosts(snapshot, request(highly_available=False), vms, reserves(snapshot, vms))
    assert ratings[0].host == "standalone1" and ratings[0].stars > 0
    for rating in ratings[1:]:
        assert [n.code for n in rating.blocking] == [RatingReason.CLUSTER_NODE]


def test_the_placement_goals_order_hosts_the_opposite_way() -> None:
    snapshot = PlacementSnapshot((node("empty"), node("half", free=15360, running_vcpus=16)))
    spread = rate_hosts(snapshot, request(), [], {})
    packed = rate_hosts(snapshot, request(goal=PlacementGoal.RESOURCE_MAXIMIZATION), [], {})
    assert spread[0].host == "empty" and spread[0].stars > spread[1].stars
    assert packed[0].host == "half" and packed[0].stars > packed[1].stars


def test_nodes_on_which_the_vm_would_overcommit_the_cluster_get_zero_stars() -> None:
    # 21 VMs of 4 GiB on four nodes survive the loss of any one; a 22nd never does.
    snapshot, vms = loaded({"node1": 6, "node2": 5, "node3": 5, "node4": 5})
    ratings = rate_hosts(snapshot, request(), vms, reserves(snapshot, vms))
    for rating in ratings:
        if rating.cluster == "cluster1":
            assert rating.stars == 0 and rating.only_reserve_blocks()
            assert rating.blocking[0].code is RatingReason.WOULD_OVERCOMMIT
            assert "could not restart on any other node" in rating.blocking[0].detail
    # A VM that failover would never restart, or one that stays stopped, cannot overcommit.
    calm = rate_hosts(
        snapshot, request(), vms, reserves(snapshot, vms), restart_priority=RestartPriority.NONE
    )
    assert calm[0].stars > 0
    assert rate_hosts(snapshot, request(), vms, reserves(snapshot, vms), starts=False)[0].stars > 0


def test_the_nodes_of_an_overcommitted_cluster_get_zero_stars_with_that_reason() -> None:
    snapshot, vms = loaded({"node1": 7, "node2": 7, "node3": 7, "node4": 1})
    ratings = rate_hosts(snapshot, request(memory_mb=1024), vms, reserves(snapshot, vms))
    node4 = next(r for r in ratings if r.host == "node4")
    assert [n.code for n in node4.blocking] == [RatingReason.CLUSTER_OVERCOMMITTED]
    assert "which is overcommitted: if node" in node4.blocking[0].detail


def test_automatic_placement_is_refused_naming_the_failure_set_and_a_named_node_overrides() -> None:
    snapshot, vms = loaded({"node1": 6, "node2": 5, "node3": 5, "node4": 5})
    with pytest.raises(FailedPreconditionError) as refused:
        choose_host(snapshot, request(), vms, reserves(snapshot, vms))
    assert "refused by the cluster reserve" in refused.value.message
    assert "if node1 failed" in refused.value.message and "--host" in refused.value.message
    choice = choose_host(snapshot, request(host="node4"), vms, reserves(snapshot, vms))
    assert choice.host == "node4" and choice.storage == CSV
    assert "overriding the reserve; cluster cluster1 is now overcommitted: if node" in choice.why


def test_placement_says_every_reason_when_nothing_fits() -> None:
    snapshot = PlacementSnapshot((node("node1", free=1024), standalone()))
    with pytest.raises(ResourceExhaustedError) as full:
        choose_host(snapshot, request(), [], reserves(snapshot, []))
    assert full.value.message == (
        "no host can take VM new (4096 MB, 1 vCPU, 20 GB): node1 has 1024 MB free, needs 4096 MB; "
        "standalone1 is a standalone host (a highly available VM needs a cluster node)"
    )
    maintenance = PlacementSnapshot((node("node1", state=HostState.MAINTENANCE),))
    with pytest.raises(FailedPreconditionError, match="node1 is in maintenance mode"):
        choose_host(maintenance, request(host="node1"), [], {})


@settings(max_examples=150, deadline=None)
@given(
    frees=st.lists(st.integers(0, 30720), min_size=1, max_size=6),
    memory=st.integers(1, 16384),
    goal=st.sampled_from(list(PlacementGoal)),
)
def test_stars_are_half_steps_and_zero_exactly_when_something_blocks(
    frees: list[int], memory: int, goal: PlacementGoal
) -> None:
    snapshot = PlacementSnapshot(tuple(node(f"node{i}", free) for i, free in enumerate(frees)))
    for rating in rate_hosts(snapshot, request(memory_mb=memory, goal=goal), [], {}):
        assert rating.stars * 2 == int(rating.stars * 2) and 0 <= rating.stars <= 5
        assert (rating.stars == 0) == bool(rating.blocking)
        host = snapshot.host(rating.host)
        assert host is not None
        # Never overcommits a host: a rated host has the memory.
        assert rating.stars == 0 or host.memory_free_mb >= memory
