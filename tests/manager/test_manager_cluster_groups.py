"""Cluster groups, drive letters and volume GUID paths, derived from the records; and
the causes a VM's pass-through disks, ISO image and extra group resources bring."""

from __future__ import annotations

from dataclasses import replace

from manager.core.cluster_config import ClusterView, judge
from manager.core.cluster_groups import (
    ResourceKind,
    cluster_groups,
    csv_path,
    drive_paths,
    online_luns,
    vm_path,
    volume_guid_path,
)
from manager.core.config_status import ConfigCause
from manager.core.failover import restart_request
from manager.core.levels import LEVEL_TRAITS, VmmVersion
from manager.core.model import (
    GIB,
    ClusterRecord,
    ClusterResource,
    DiskInfo,
    StorageKind,
    StorageLocation,
    VolumeInfo,
)
from manager.core.placement import HostCapacity, StorageRoom, refusals
from manager.core.states import HostState, VmState
from tests.manager.test_manager_cluster_config import host, vm

LUN = StorageKind.LUN
R2 = LEVEL_TRAITS[VmmVersion.VMM_2008R2]
V2008 = LEVEL_TRAITS[VmmVersion.VMM_2008]


def cluster(luns: int = 2, csvs: tuple[str, ...] = ("Volume1", "Volume2")) -> ClusterRecord:
    volumes = tuple(VolumeInfo(name, StorageKind.CSV, GIB, GIB) for name in csvs) + tuple(
        VolumeInfo(f"lun{i:02d}", LUN, GIB, GIB) for i in range(1, luns + 1)
    )
    return ClusterRecord("c1", "hyperv-2008r2", 1, ("n1", "n2"), volumes)


def with_disks(name: str, *disks: str):  # type: ignore[no-untyped-def]
    return replace(host(name), disks=tuple(DiskInfo(d, GIB, GIB) for d in disks))


def test_local_disks_keep_their_letters_and_cluster_disks_take_the_free_ones_in_name_order() -> None:
    node = with_disks("n1", "C", "D")
    paths = drive_paths(node, ["lunB", "lunA"])
    assert paths == {"C": "C:\\", "D": "D:\\", "lunB": "E:\\", "lunA": "F:\\"}
    assert online_luns(
        "n1", [vm("b", storage=StorageLocation(LUN, "lunB")), vm("a", storage=StorageLocation(LUN, "lunA"))]
    ) == ["lunA", "lunB"]


def test_thirty_luns_on_one_node_run_out_of_letters_and_get_volume_guid_paths() -> None:
    node = with_disks("n1", "C")
    luns = [f"lun{i:02d}" for i in range(1, 31)]
    paths = drive_paths(node, luns)
    letters = [paths[lun] for lun in luns[:23]]
    assert letters == [f"{letter}:\\" for letter in "DEFGHIJKLMNOPQRSTUVWXYZ"]
    rest = [paths[lun] for lun in luns[23:]]
    assert all(p.startswith("\\\\?\\Volume{") and p.endswith("}\\") for p in rest)
    assert len(set(rest)) == 7
    # The GUID is the volume's own: the same whichever node has it online.
    assert drive_paths(with_disks("n2", "C"), luns)["lun30"] == volume_guid_path("lun30") == paths["lun30"]


def test_a_vms_path_by_where_its_files_are() -> None:
    c, node = cluster(), with_disks("n1", "C")
    on_lun = vm("a", storage=StorageLocation(LUN, "lun01"))
    drives = drive_paths(node, online_luns("n1", [on_lun]))
    assert vm_path(on_lun, node, c, drives) == "D:\\a"
    assert vm_path(vm("b", storage=StorageLocation(StorageKind.CSV, "Volume2")), node, c, drives) == (
        "C:\\ClusterStorage\\Volume2\\b"
    )
    assert (
        vm_path(vm("c", storage=StorageLocation(StorageKind.LOCAL_DISK, "C")), node, c, drives)
        == "C:\\Hyper-V\\c"
    )
    assert vm_path(on_lun, None, c, drives) == ""
    assert csv_path(c, "Volume1") == "C:\\ClusterStorage\\Volume1"


def test_each_ha_vm_is_a_group_owned_by_its_host_with_its_disks_online_where_they_should_be() -> None:
    c = cluster()
    hosts = {"n1": with_disks("n1", "C"), "n2": with_disks("n2", "C")}
    on_lun = replace(
        vm("web", "n2", StorageLocation(LUN, "lun01")),
        passthrough_disks=(StorageLocation(LUN, "lun02"),),
        cluster_resources=(ClusterResource("Replication web", "Generic Service"),),
    )
    on_csv = replace(vm("db", "n1", StorageLocation(StorageKind.CSV, "Volume1")), state=VmState.STOPPED)
    not_ha = vm("tool", "n1", StorageLocation(StorageKind.LOCAL_DISK, "C"), ha=False)
    groups = {g.vm: g for g in cluster_groups(c, hosts, [on_lun, on_csv, not_ha])}
    assert set(groups) == {"web", "db"}
    web = groups["web"]
    assert (web.name, web.owner_node) == ("SCVMM web Resources", "n2")
    assert [(r.kind, r.name, r.online_on, r.path) for r in web.resources] == [
        (ResourceKind.VIRTUAL_MACHINE, "Virtual Machine web", ("n2",), ""),
        (ResourceKind.VM_CONFIGURATION, "Virtual Machine Configuration web", ("n2",), ""),
        (ResourceKind.PHYSICAL_DISK, "Cluster Disk lun01", ("n2",), "D:\\"),
        (ResourceKind.PHYSICAL_DISK, "Cluster Disk lun02", ("n2",), ""),
        (ResourceKind.OTHER, "Replication web", ("n2",), ""),
    ]
    db = groups["db"]
    assert db.resources[0].online_on == ()  # a stopped VM's resource is offline
    assert (db.resources[2].kind, db.resources[2].online_on) == (ResourceKind.CSV_PATH, ("n1", "n2"))
    # A migration moves the group: it is owned wherever the VM is.
    moved = {g.vm: g for g in cluster_groups(c, hosts, [replace(on_lun, host="n1")])}
    assert moved["web"].owner_node == "n1" and moved["web"].resources[2].online_on == ("n1",)
    # Deleting the VM removes its group.
    assert cluster_groups(c, hosts, [on_csv]) == (groups["db"],)


# ------------------------------------------------------------------- the causes


def judged(record, level=R2, luns: int = 2):  # type: ignore[no-untyped-def]
    c = cluster(luns)
    hosts = [host("n1"), host("n2")]
    return ClusterView.of(level, hosts, [c], [record])


def test_pass_through_disks_on_a_local_disk_or_a_lun_that_is_not_a_cluster_disk() -> None:
    local = replace(vm("a"), passthrough_disks=(StorageLocation(StorageKind.LOCAL_DISK, "D"),))
    (reason,) = judge(local, judged(local))
    assert reason.cause is ConfigCause.LOCAL_STORAGE
    assert reason.detail == "pass-through disk D is a local disk of host n1, which no other node can see"
    foreign = replace(vm("a"), passthrough_disks=(StorageLocation(LUN, "lun77"),))
    (reason,) = judge(foreign, judged(foreign))
    assert reason.cause is ConfigCause.PASSTHROUGH_NOT_CLUSTERED
    assert reason.detail == "pass-through disk lun77 is not a disk of cluster c1: only its host sees it"
    clustered = replace(vm("a"), passthrough_disks=(StorageLocation(LUN, "lun02"),))
    assert judge(clustered, judged(clustered)) == ()


def test_extra_group_resources_and_an_iso_image_matter_under_vmm_2008_only() -> None:
    record = replace(
        vm("a", storage=StorageLocation(LUN, "lun01")),
        cluster_resources=(ClusterResource("Replica", "Generic Service"),),
        iso_image="C:\\Windows\\system32\\vmguest.iso",
    )
    assert judge(record, judged(record, R2)) == ()
    reasons = judge(record, judged(record, V2008))
    assert [r.cause for r in reasons] == [ConfigCause.EXTRA_CLUSTER_RESOURCES, ConfigCause.ISO_ATTACHED]
    assert "Replica (Generic Service)" in reasons[0].detail
    assert "C:\\Windows\\system32\\vmguest.iso" in reasons[1].detail


# -------------------------------------------- pass-through disks constrain placement


def capacity(name: str, *rooms: StorageRoom) -> HostCapacity:
    return HostCapacity(name, "c1", HostState.OK, 30000, 30000, 8, 0, rooms, ("External",))


def test_a_restart_goes_only_where_the_pass_through_lun_is_seen_and_free() -> None:
    record = replace(
        vm("raw", "n1", StorageLocation(StorageKind.CSV, "Volume1")),
        passthrough_disks=(StorageLocation(LUN, "lun07"),),
    )
    request = restart_request(record, 8)
    sees = capacity("n2", StorageRoom("lun07", LUN, 50, ("raw",)))
    blind = capacity("n3")
    taken = capacity("n4", StorageRoom("lun07", LUN, 50, ("raw", "other")))
    assert refusals(sees, request) == []
    assert [r.detail for r in refusals(blind, request)] == ["does not see pass-through LUN lun07"]
    assert [r.detail for r in refusals(taken, request)] == ["pass-through LUN lun07 is used by VM other"]


def test_a_vm_with_a_local_pass_through_disk_restarts_nowhere_but_its_own_host() -> None:
    record = replace(vm("tied", "n1"), passthrough_disks=(StorageLocation(StorageKind.LOCAL_DISK, "D"),))
    request = restart_request(record, 8)
    assert refusals(capacity("n1"), request) == []
    assert [r.detail for r in refusals(capacity("n2"), request)] == [
        "cannot pass through local disk D of host n1"
    ]
