"""Placement: the rules, the reasons, the rating, and properties over random clusters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manager.core.errors import InvalidArgumentError, NotFoundError
from manager.core.model import StorageKind, StorageLocation
from manager.core.placement import (
    HostCapacity,
    PlacementRequest,
    PlacementSnapshot,
    StorageRoom,
    place,
    rate_host,
)
from manager.core.states import HostState

CSV = StorageKind.CSV
LUN = StorageKind.LUN
LOCAL = StorageKind.LOCAL_DISK


def node(name: str, free: int = 30000, state: HostState = HostState.OK, **kw: object) -> HostCapacity:
    fields: dict = dict(
        name=name,
        cluster="cluster1",
        state=state,
        usable_memory_mb=30720,
        memory_free_mb=free,
        cores=8,
        running_vcpus=0,
        storage=(
            StorageRoom("C", LOCAL, 400),
            StorageRoom("Volume1", CSV, 2000),
            StorageRoom("lun1", LUN, 200),
        ),
        networks=("External",),
    )
    fields.update(kw)
    return HostCapacity(**fields)


def standalone(name: str = "standalone1", free: int = 14000, **kw: object) -> HostCapacity:
    fields: dict = dict(
        cluster=None,
        storage=(StorageRoom("C", LOCAL, 100), StorageRoom("D", LOCAL, 300)),
        usable_memory_mb=14336,
    )
    fields.update(kw)
    return node(name, free, **fields)


SNAPSHOT = PlacementSnapshot((node("node1"), node("node2", free=10000), standalone()))


def request(**kw: object) -> PlacementRequest:
    fields: dict = dict(vm_name="web1", memory_mb=2048, cpus=1, disk_gb=20, highly_available=True)
    fields.update(kw)
    return PlacementRequest(**fields)


def test_ha_vm_goes_to_the_best_cluster_node_on_a_csv() -> None:
    decision = place(SNAPSHOT, request())
    assert decision.host == "node1"
    assert decision.storage == StorageLocation(CSV, "Volume1")
    assert 0 < decision.rating <= 5
    assert (
        "standalone1",
        "is a standalone host (a highly available VM needs a cluster node)",
    ) in decision.rejections


def test_non_ha_vm_goes_to_the_standalone_local_disk_with_most_room() -> None:
    decision = place(SNAPSHOT, request(highly_available=False))
    assert decision.host == "standalone1"
    assert decision.storage == StorageLocation(LOCAL, "D")


def test_named_cluster_node_for_a_non_ha_vm_is_refused() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        place(SNAPSHOT, request(highly_available=False, host="node1"))
    assert str(info.value) == (
        "host node1 is a node of cluster cluster1: a VM there must be highly available "
        "(use --ha, or --make-ha to make it so when asked), or choose a standalone host"
    )


def test_named_standalone_host_for_an_ha_vm_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="standalone1 is a standalone host"):
        place(SNAPSHOT, request(host="standalone1"))


def test_unknown_host_and_mismatched_storage_kinds() -> None:
    with pytest.raises(NotFoundError, match="host node9 does not exist"):
        place(SNAPSHOT, request(host="node9"))
    with pytest.raises(InvalidArgumentError, match="^storage: a highly available VM"):
        place(SNAPSHOT, request(storage=StorageLocation(LOCAL, "C")))
    with pytest.raises(InvalidArgumentError, match="^storage: Volume1 is a cluster shared volume"):
        place(SNAPSHOT, request(highly_available=False, storage=StorageLocation(CSV, "Volume1")))


def test_named_host_is_used_even_when_another_rates_higher() -> None:
    assert place(SNAPSHOT, request(host="node2")).host == "node2"


def test_named_lun_must_be_free() -> None:
    busy = PlacementSnapshot((node("node1", storage=(StorageRoom("lun1", LUN, 200, ("db1",)),)),))
    decision = place(busy, request(storage=StorageLocation(LUN, "lun1")))
    assert not decision.placed
    assert decision.rejections == (("node1", "sees LUN lun1 but VM db1 uses it"),)
    free = place(SNAPSHOT, request(storage=StorageLocation(LUN, "lun1")))
    assert free.host == "node1" and free.storage == StorageLocation(LUN, "lun1")


def test_nothing_fits_gives_a_reason_per_host_in_one_sentence() -> None:
    snapshot = PlacementSnapshot(
        (
            node("node1", free=1000),
            node("node2", state=HostState.NOT_RESPONDING),
            node("node3", networks=()),
            standalone(),
        )
    )
    req = request(networks=("External",))
    decision = place(snapshot, req)
    assert not decision.placed
    assert decision.explain(req) == (
        "no host can take VM web1 (2048 MB, 1 vCPU, 20 GB): node1 has 1000 MB free, needs 2048 MB; "
        "node2 is not_responding; node3 has no network 'External'; "
        "standalone1 is a standalone host (a highly available VM needs a cluster node)"
    )


def test_storage_room_is_checked() -> None:
    decision = place(SNAPSHOT, request(disk_gb=5000))
    assert not decision.placed
    assert ("node1", "has 2000 GB free on Volume1, needs 5000 GB") in decision.rejections


def test_rating_is_half_stars_and_zero_when_it_does_not_fit() -> None:
    empty = node("a")
    loaded = node("b", free=4000, running_vcpus=40)
    assert rate_host(empty, request()) > rate_host(loaded, request()) > 0
    assert rate_host(node("c", free=1000), request()) == 0
    for host in (empty, loaded):
        stars = rate_host(host, request())
        assert stars * 2 == int(stars * 2) and 0.5 <= stars <= 5


hosts_strategy = st.lists(
    st.builds(
        HostCapacity,
        name=st.sampled_from([f"h{i}" for i in range(8)]),
        cluster=st.sampled_from([None, "c1", "c2"]),
        state=st.sampled_from(list(HostState)),
        usable_memory_mb=st.just(32768),
        memory_free_mb=st.integers(0, 32768),
        cores=st.integers(1, 16),
        running_vcpus=st.integers(0, 100),
        storage=st.lists(
            st.builds(
                StorageRoom,
                name=st.sampled_from(["C", "Volume1", "lun1"]),
                kind=st.sampled_from(list(StorageKind)),
                free_gb=st.integers(0, 500),
            ),
            max_size=3,
            # A host never has two disks or volumes of one kind with the same name.
            unique_by=lambda room: (room.name, room.kind),
        ).map(tuple),
        networks=st.just(("External",)),
    ),
    max_size=8,
    unique_by=lambda h: h.name,
).map(lambda hosts: PlacementSnapshot(tuple(hosts)))

requests_strategy = st.builds(
    PlacementRequest,
    vm_name=st.just("vm"),
    memory_mb=st.integers(1, 40000),
    cpus=st.integers(1, 8),
    disk_gb=st.integers(1, 600),
    highly_available=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(snapshot=hosts_strategy, req=requests_strategy)
def test_property_never_picks_a_host_without_room(snapshot: PlacementSnapshot, req: PlacementRequest) -> None:
    decision = place(snapshot, req)
    if decision.placed:
        host = snapshot.host(decision.host or "")
        assert host is not None
        assert host.memory_free_mb >= req.memory_mb
        assert host.state is HostState.OK
        room = next(
            s for s in host.storage if s.name == decision.storage.name and s.kind is decision.storage.kind
        )  # type: ignore[union-attr]
        assert room.free_gb >= req.disk_gb
        assert decision.rating > 0
    else:
        assert {name for name, _ in decision.rejections} == {h.name for h in snapshot.hosts}


@settings(max_examples=200, deadline=None)
@given(snapshot=hosts_strategy, req=requests_strategy)
def test_property_ha_vms_only_on_cluster_nodes_and_shared_storage(
    snapshot: PlacementSnapshot, req: PlacementRequest
) -> None:
    decision = place(snapshot, req)
    if not decision.placed:
        return
    host = snapshot.host(decision.host or "")
    assert host is not None
    if req.highly_available:
        assert host.cluster is not None
        assert decision.storage is not None and decision.storage.kind is StorageKind.CSV
    else:
        assert host.cluster is None
        assert decision.storage is not None and decision.storage.kind is StorageKind.LOCAL_DISK
