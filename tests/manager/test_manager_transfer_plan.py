"""How a VM at rest crosses the cluster boundary: SAN where its LUN allows it, network
otherwise, every refusal with all its reasons, level by level."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from havm.contract.hosts import CpuSpec
from manager.core.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from manager.core.levels import LEVEL_TRAITS, VmmVersion
from manager.core.model import (
    GIB,
    ClusterRecord,
    HostRecord,
    MigrationKind,
    StorageKind,
    StorageLocation,
    VmRecord,
    VolumeInfo,
)
from manager.core.states import HostState, VmState
from manager.core.transfer import (
    Transfer,
    TransferPlan,
    check_deployable,
    check_network_storage,
    check_not_across_datacenters,
    check_runs_there,
    check_storable,
    check_storage_move_stays,
    check_transfer_inside_cluster,
    choose_library,
    crosses_cluster_boundary,
    plan_transfer,
    same_datacenter,
)

R2 = LEVEL_TRAITS[VmmVersion.VMM_2008R2]
V2008 = LEVEL_TRAITS[VmmVersion.VMM_2008]
CPU = CpuSpec("GenuineIntel", "Xeon", ("sse3",), 8, 2933)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NODES = ("n1", "n2", "n3")
SAN1 = StorageLocation(StorageKind.LUN, "san1")
CSV = StorageLocation(StorageKind.CSV, "Volume1")


def lun(name: str) -> VolumeInfo:
    return VolumeInfo(name, StorageKind.LUN, 100 * GIB, 100 * GIB)


def host(name: str, cluster: str | None, *luns: str) -> HostRecord:
    return HostRecord(
        name=name,
        cluster=cluster,
        profile="hyperv-2008r2",
        address=f"{name}:1",
        cpu=CPU,
        memory_mb=32768,
        host_reserve_mb=2048,
        memory_free_mb=30000,
        disks=(),
        networks=(),
        volumes=tuple(lun(n) for n in luns),
        state=HostState.OK,
        last_refresh=T0,
    )


def vm(
    name: str = "v1",
    where: str = "s1",
    storage: StorageLocation = SAN1,
    ha: bool = False,
    state: VmState = VmState.STOPPED,
    passthrough: tuple[StorageLocation, ...] = (),
) -> VmRecord:
    return VmRecord(
        id=f"id-{name}",
        name=name,
        host=where,
        state=state,
        highly_available=ha,
        memory_mb=1024,
        cpus=1,
        disk_gb=20,
        storage=storage,
        passthrough_disks=passthrough,
    )


def hosts(*, blind: tuple[str, ...] = ()) -> dict[str, HostRecord]:
    """A standalone host s1 and nodes n1..n3 of cluster c1; all see san1 except `blind`."""
    every = {"s1": host("s1", None, "san1"), "s2": host("s2", None)}
    for node in NODES:
        every[node] = host(node, "c1") if node in blind else host(node, "c1", "san1")
    return every


def plan(
    requested: Transfer,
    moving: VmRecord,
    source: str,
    target: str,
    every: dict[str, HostRecord],
    others: tuple[VmRecord, ...] = (),
    make_ha: bool = True,
    level=R2,  # type: ignore[no-untyped-def]
):  # type: ignore[no-untyped-def]
    nodes = NODES if every[target].cluster else ()
    return plan_transfer(
        requested, moving, every[source], every[target], nodes, every, (moving, *others), level, make_ha
    )


def test_into_a_cluster_by_san_when_every_node_sees_the_lun() -> None:
    result = plan(Transfer.AUTO, vm(), "s1", "n2", hosts())
    assert (result.kind, result.highly_available_after, result.san_refusals) == (
        MigrationKind.SAN_TRANSFER,
        True,
        (),
    )


def test_san_into_a_cluster_names_every_node_that_does_not_see_the_lun() -> None:
    with pytest.raises(FailedPreconditionError) as caught:
        plan(Transfer.SAN, vm(), "s1", "n1", hosts(blind=("n2", "n3")))
    assert caught.value.message == (
        "VM v1 cannot move to n1 by SAN: its files are on LUN san1, which not every node of cluster c1 "
        "sees: n2, n3 do not see it"
    )
    # auto falls back to network and says why.
    result = plan(Transfer.AUTO, vm(), "s1", "n1", hosts(blind=("n3",)))
    assert result.kind is MigrationKind.NETWORK_TRANSFER
    assert result.san_refusals == (
        "its files are on LUN san1, which not every node of cluster c1 sees: n3 does not see it",
    )


def test_a_vm_that_is_not_highly_available_enters_a_cluster_only_when_made_so() -> None:
    with pytest.raises(FailedPreconditionError, match="--make-ha"):
        plan(Transfer.AUTO, vm(), "s1", "n1", hosts(), make_ha=False)
    already = plan(Transfer.AUTO, vm(ha=True), "s1", "n1", hosts(), make_ha=False)
    assert already.highly_available_after


def test_out_of_a_cluster_by_san_only_from_a_lun_of_its_own() -> None:
    every = hosts()
    leaving = vm(where="n1", ha=True)
    result = plan(Transfer.AUTO, leaving, "n1", "s1", every)
    assert (result.kind, result.highly_available_after) == (MigrationKind.SAN_TRANSFER, False)
    sharing = vm("v2", where="n2", ha=True, passthrough=(SAN1,), storage=CSV)
    with pytest.raises(FailedPreconditionError, match="LUN san1 is also used by VM v2"):
        plan(Transfer.SAN, leaving, "n1", "s1", every, others=(sharing,))
    on_csv = plan(Transfer.AUTO, vm(where="n1", ha=True, storage=CSV), "n1", "s1", every)
    assert on_csv.kind is MigrationKind.NETWORK_TRANSFER
    assert "CSV volume Volume1" in on_csv.san_refusals[0]


def test_vmm_2008_has_no_san_transfer_out_of_a_cluster() -> None:
    with pytest.raises(FailedPreconditionError) as caught:
        plan(Transfer.SAN, vm(where="n1", ha=True), "n1", "s1", hosts(), level=V2008)
    assert "VMM 2008 has no SAN transfer out of a cluster" in caught.value.message
    # ...but it still takes a VM into a cluster by SAN.
    assert plan(Transfer.SAN, vm(), "s1", "n1", hosts(), level=V2008).kind is MigrationKind.SAN_TRANSFER


def test_a_standalone_host_that_does_not_see_the_lun_gets_the_files_over_the_network() -> None:
    result = plan(Transfer.AUTO, vm(), "s1", "s2", hosts())
    assert result.kind is MigrationKind.NETWORK_TRANSFER
    assert result.san_refusals == ("its files are on LUN san1, which host s2 does not see",)
    forced = plan(Transfer.NETWORK, vm(), "s1", "n1", hosts())
    assert (forced.kind, forced.san_refusals) == (MigrationKind.NETWORK_TRANSFER, ())


def test_only_a_vm_at_rest_crosses_and_a_running_one_is_told_how() -> None:
    with pytest.raises(FailedPreconditionError) as caught:
        plan(Transfer.AUTO, vm(state=VmState.RUNNING), "s1", "n1", hosts())
    assert "crosses the cluster boundary" in caught.value.message
    assert "migrate-storage" not in caught.value.message  # it would not take it into the cluster
    with pytest.raises(FailedPreconditionError, match="havm vm migrate-storage v1 --to s2"):
        plan(Transfer.AUTO, vm(state=VmState.RUNNING), "s1", "s2", hosts())
    with pytest.raises(FailedPreconditionError, match="outside cluster c1"):
        check_storage_move_stays(vm(where="n1", ha=True), hosts()["n1"], hosts()["s1"])
    check_storage_move_stays(vm(), hosts()["s1"], hosts()["s2"])
    saved = plan(Transfer.AUTO, vm(state=VmState.SAVED), "s1", "n1", hosts())
    assert saved.kind is MigrationKind.SAN_TRANSFER


def test_pass_through_disks_move_on_the_san_or_must_be_converted() -> None:
    every = hosts()
    for node in NODES:
        every[node] = replace(every[node], volumes=(lun("san1"), lun("pt1")))
    every["s1"] = replace(every["s1"], volumes=(lun("san1"), lun("pt1")))
    with_san_disk = vm(where="n1", ha=True, passthrough=(StorageLocation(StorageKind.LUN, "pt1"),))
    assert plan(Transfer.SAN, with_san_disk, "n1", "s1", every).kind is MigrationKind.SAN_TRANSFER
    # VMM 2008: every pass-through disk is converted before a move to a standalone host.
    with pytest.raises(FailedPreconditionError, match="VMM 2008 moves no pass-through disk"):
        plan(Transfer.AUTO, with_san_disk, "n1", "s1", every, level=V2008)
    local = vm(passthrough=(StorageLocation(StorageKind.LOCAL_DISK, "D"),))
    with pytest.raises(FailedPreconditionError) as caught:
        plan(Transfer.NETWORK, local, "s1", "n1", every)
    assert caught.value.message == (
        "VM v1 cannot move to n1 over the network: pass-through disk D cannot be copied over the network: "
        "it must be converted to a virtual disk first (`havm vm convert-disk v1 local:D`, the VM stopped), "
        "or detached (`havm vm detach-disk v1 --passthrough local:D`)"
    )
    with pytest.raises(FailedPreconditionError) as caught:
        plan(Transfer.AUTO, local, "s1", "n1", every)
    assert caught.value.message.startswith("VM v1 cannot move to n1: not by SAN, as pass-through disk D is ")


def test_boundary_and_the_checks_around_it() -> None:
    every = hosts()
    assert crosses_cluster_boundary(every["s1"], every["n1"])
    assert crosses_cluster_boundary(every["s1"], every["s2"])
    assert not crosses_cluster_boundary(every["n1"], every["n2"])
    with pytest.raises(InvalidArgumentError, match="nodes of cluster c1"):
        check_transfer_inside_cluster(Transfer.SAN, every["n1"], every["n2"])
    check_transfer_inside_cluster(Transfer.AUTO, every["n1"], every["n2"])
    with pytest.raises(InvalidArgumentError, match="--transfer san"):
        check_network_storage(vm(), SAN1)
    check_network_storage(
        vm(storage=StorageLocation(StorageKind.LOCAL_DISK, "D")), StorageLocation(StorageKind.LOCAL_DISK, "D")
    )


def _cluster(name: str, datacenter: str | None) -> ClusterRecord:
    return ClusterRecord(name, "esx", 0, (), (), datacenter=datacenter)


def test_running_vms_cross_clusters_only_inside_one_datacenter() -> None:
    ea, eb, ec, plain = (
        _cluster("ea", "dc1"),
        _cluster("eb", "dc1"),
        _cluster("ec", "dc2"),
        _cluster("h", None),
    )
    assert same_datacenter(ea, eb) == "dc1"
    assert same_datacenter(ea, ea) is None  # one cluster: an ordinary migration
    assert same_datacenter(ea, ec) is None and same_datacenter(plain, ea) is None
    with pytest.raises(FailedPreconditionError) as caught:
        check_not_across_datacenters(vm(state=VmState.RUNNING), ea, ec)
    assert "VMotion moves running VMs between the ESX clusters of one datacenter" in caught.value.message
    check_not_across_datacenters(vm(state=VmState.SAVED), ea, ec)  # at rest: a transfer
    # Storage VMotion to another host stays inside the datacenter too.
    check_storage_move_stays(vm(where="n1", ha=True), hosts()["n1"], hosts()["s1"], "dc1")


# --- the library ---------------------------------------------------------------------


def library(name: str = "lib1", *luns: str) -> HostRecord:
    return replace(host(name, None, *luns), profile="library")


def test_the_only_library_server_is_chosen_and_a_named_one_must_be_one() -> None:
    s1, lib1, lib2 = host("s1", None), library("lib1"), library("lib2")
    assert choose_library(vm(), [s1, lib1], "") is lib1
    assert choose_library(vm(), [s1, lib1, lib2], "lib2") is lib2
    with pytest.raises(InvalidArgumentError, match=r"say which library server stores VM v1 \(lib1, lib2\)"):
        choose_library(vm(), [s1, lib1, lib2], "")
    with pytest.raises(
        InvalidArgumentError, match=r"host s1 is not a library server \(library servers: lib1\)"
    ):
        choose_library(vm(), [s1, lib1], "s1")
    with pytest.raises(NotFoundError, match="library server nope does not exist"):
        choose_library(vm(), [s1, lib1], "nope")
    with pytest.raises(FailedPreconditionError, match="no library server"):
        choose_library(vm(), [s1], "")


def test_a_vm_is_stored_at_rest_from_a_host_and_deployed_onto_one() -> None:
    s1, lib1 = host("s1", None), library("lib1")
    check_storable(vm(state=VmState.SAVED), s1, lib1)
    with pytest.raises(FailedPreconditionError, match="stopped or saved"):
        check_storable(vm(state=VmState.RUNNING), s1, lib1)
    with pytest.raises(FailedPreconditionError, match="already is stored in library server lib1"):
        check_storable(vm(where="lib1"), lib1, lib1)
    with pytest.raises(FailedPreconditionError, match="deploy it onto a host"):
        check_storable(vm(where="lib2"), library("lib2"), lib1)

    check_deployable(vm(where="lib1"), lib1, s1)
    with pytest.raises(FailedPreconditionError, match=r"is not stored in the library \(on host s1\)"):
        check_deployable(vm(), s1, host("s2", None))
    with pytest.raises(FailedPreconditionError, match="lib2: it is a library server, which runs no VM"):
        check_deployable(vm(where="lib1"), lib1, library("lib2"))


def test_a_running_vm_never_moves_onto_a_library_server() -> None:
    check_runs_there(vm(state=VmState.RUNNING), host("s2", None))
    check_runs_there(vm(state=VmState.SAVED), library())
    with pytest.raises(FailedPreconditionError, match="library server lib1 runs no VM"):
        check_runs_there(vm(state=VmState.RUNNING), library())


def test_a_vm_on_a_lun_the_library_sees_is_stored_by_san_and_stops_being_highly_available() -> None:
    source, lib = host("n1", "c1", "san1"), library("lib1", "san1")
    stored = plan_transfer(
        Transfer.AUTO, vm(where="n1", ha=True), source, lib, (), {"lib1": lib}, [], R2, False
    )
    assert stored == TransferPlan(MigrationKind.SAN_TRANSFER, False)
    # Out of a cluster VMM 2008 has no SAN transfer: the library gets a copy.
    copied = plan_transfer(
        Transfer.AUTO, vm(where="n1", ha=True), source, lib, (), {"lib1": lib}, [], V2008, False
    )
    assert copied.kind is MigrationKind.NETWORK_TRANSFER
    assert copied.san_refusals == ("VMM 2008 has no SAN transfer out of a cluster",)
