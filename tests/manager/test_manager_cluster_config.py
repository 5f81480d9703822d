"""The judgement of a highly available VM's cluster configuration, cause by cause and
level by level, and the judging store layer that keeps every VM's status true."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from havm.contract.hosts import CpuSpec
from manager.adapters.memory_store import MemoryStore
from manager.app.config_review import ConfigJudgingStore
from manager.core.cluster_config import ClusterView, cluster_networks, judge
from manager.core.config_status import ConfigCause, ConfigStatus, StatusReason
from manager.core.levels import LEVEL_TRAITS, LevelTraits, VmmVersion
from manager.core.model import (
    GIB,
    ClusterRecord,
    HostRecord,
    NetworkInfo,
    StorageKind,
    StorageLocation,
    VmRecord,
    VolumeInfo,
)
from manager.core.profiles import HostCapabilities
from manager.core.states import HostState, VmState

R2 = LEVEL_TRAITS[VmmVersion.VMM_2008R2]
V2008 = LEVEL_TRAITS[VmmVersion.VMM_2008]
CPU = CpuSpec("GenuineIntel", "Xeon", ("sse3",), 8, 2933)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# The cluster's disks: the CSV and the LUNs the tests put VMs on.
VOLUMES = tuple(
    VolumeInfo(name, kind, GIB, GIB)
    for name, kind in (("Volume1", StorageKind.CSV), ("lun1", StorageKind.LUN), ("lun2", StorageKind.LUN))
)
ESX = HostCapabilities(live_migration=True, quick_migration=True, csv=True, network_kind="port_group")


def net(name: str, bound_to: str = "nic1", vlan: int = 0, kind: str = "virtual_network") -> NetworkInfo:
    return NetworkInfo(name, kind, bound_to, vlan)


def host(
    name: str, *networks: NetworkInfo, cluster: str | None = "c1", profile: str = "hyperv-2008r2"
) -> HostRecord:
    return HostRecord(
        name=name,
        cluster=cluster,
        profile=profile,
        address=f"{name}:1",
        cpu=CPU,
        memory_mb=32768,
        host_reserve_mb=2048,
        memory_free_mb=30000,
        disks=(),
        networks=networks,
        volumes=(),
        state=HostState.OK,
        last_refresh=T0,
        reported_capabilities=ESX if profile == "esx" else None,
    )


def vm(
    name: str,
    host_name: str | None = "n1",
    storage: StorageLocation | None = StorageLocation(StorageKind.CSV, "Volume1"),
    networks: tuple[str, ...] = (),
    ha: bool = True,
) -> VmRecord:
    return VmRecord(
        id=f"id-{name}",
        name=name,
        host=host_name,
        state=VmState.RUNNING,
        highly_available=ha,
        memory_mb=1024,
        cpus=1,
        disk_gb=10,
        storage=storage,
        networks=networks,
    )


def view(hosts: list[HostRecord], vms: list[VmRecord] = (), level=R2) -> ClusterView:  # type: ignore[assignment]
    clusters: dict[str, list[str]] = {}
    for h in hosts:
        if h.cluster:
            clusters.setdefault(h.cluster, []).append(h.name)
    records = [ClusterRecord(c, "hyperv-2008r2", 1, tuple(nodes), VOLUMES) for c, nodes in clusters.items()]
    return ClusterView.of(level, hosts, records, vms)


def causes(reasons: tuple[StatusReason, ...]) -> list[ConfigCause]:
    return [r.cause for r in reasons]


# ----------------------------------------------------------------------- networks


def test_a_network_every_node_has_alike_is_common() -> None:
    (backend,) = cluster_networks(
        [host("n1", net("Backend")), host("n2", net("Backend"))], case_sensitive=False
    )
    assert backend.common and backend.missing_on == () and backend.differs_on == ()
    assert (
        judge(vm("a", networks=("Backend",)), view([host("n1", net("Backend")), host("n2", net("Backend"))]))
        == ()
    )


def test_a_network_on_one_node_only_is_missing_on_the_others() -> None:
    hosts = [host("n1", net("Backend")), host("n2"), host("n3")]
    (backend,) = cluster_networks(hosts, case_sensitive=False)
    assert not backend.common and backend.missing_on == ("n2", "n3")
    (reason,) = judge(vm("a", networks=("Backend",)), view(hosts))
    assert reason.cause is ConfigCause.NETWORK_NOT_COMMON
    assert (
        reason.detail
        == "virtual network 'Backend' is not common to every node of cluster c1: missing on n2, n3"
    )


@pytest.mark.parametrize(
    ("other", "what"),
    [
        (net("Backend", bound_to="nic2"), "host adapter 'nic2', not 'nic1'"),
        (net("Backend", vlan=7), "VLAN 7, not 0"),
        (net("Backend", bound_to="nic2", vlan=7), "host adapter 'nic2', not 'nic1'; VLAN 7, not 0"),
    ],
)
@pytest.mark.parametrize("level", [R2, V2008], ids=["2008r2", "2008"])
def test_a_network_under_another_adapter_or_vlan_differs_on_that_node(
    other: NetworkInfo, what: str, level: LevelTraits
) -> None:
    # The odd one out is the minority: two nodes agree.
    hosts = [host("n1", net("Backend")), host("n2", net("Backend")), host("n3", other)]
    (backend,) = cluster_networks(hosts, case_sensitive=level.network_names_case_sensitive)
    assert not backend.common and [(d.node, d.detail) for d in backend.differs_on] == [("n3", what)]
    assert (backend.bound_to, backend.vlan_id) == ("nic1", 0)
    (reason,) = judge(vm("a", networks=("Backend",)), view(hosts, level=level))
    assert reason.cause is ConfigCause.NETWORK_NOT_COMMON and f"on n3 {what}" in reason.detail


def test_names_differing_in_case_are_common_under_2008_r2_only() -> None:
    hosts = [host("n1", net("Backend")), host("n2", net("backend"))]
    assert cluster_networks(hosts, case_sensitive=False)[0].common
    assert judge(vm("a", networks=("Backend",)), view(hosts, level=R2)) == ()
    (strict,) = cluster_networks(hosts, case_sensitive=True)
    assert not strict.common and "named 'backend', not 'Backend'" in strict.differs_on[0].detail
    (reason,) = judge(vm("a", networks=("Backend",)), view(hosts, level=V2008))
    assert reason.cause is ConfigCause.NETWORK_NOT_COMMON


def test_an_esx_port_group_missing_on_a_node() -> None:
    pg = net("VM Network", kind="port_group")
    hosts = [host("e1", pg, profile="esx"), host("e2", profile="esx")]
    (reason,) = judge(vm("a", "e1", networks=("VM Network",)), view(hosts))
    assert reason.cause is ConfigCause.PORT_GROUP_MISSING
    assert reason.detail == "port group 'VM Network' is not common to every node of cluster c1: missing on e2"
    # A port group on every node is enough, whatever its VLAN.
    hosts = [host("e1", pg, profile="esx"), host("e2", replace(pg, vlan_id=9), profile="esx")]
    assert judge(vm("a", "e1", networks=("VM Network",)), view(hosts)) == ()


# ------------------------------------------------------------------------ storage


def test_local_storage_and_a_standalone_host() -> None:
    local = vm("a", "s1", StorageLocation(StorageKind.LOCAL_DISK, "C"))
    reasons = judge(local, view([host("s1", cluster=None)]))
    assert causes(reasons) == [ConfigCause.STANDALONE_HOST, ConfigCause.LOCAL_STORAGE]
    assert reasons[1].detail == "its files are on local disk C, which no other host can see"
    assert judge(replace(local, highly_available=False), view([host("s1", cluster=None)])) == ()


def test_two_ha_vms_on_one_lun_both_are_unsupported_but_not_on_a_csv() -> None:
    lun = StorageLocation(StorageKind.LUN, "lun1")
    a, b, c = (
        vm("a", storage=lun),
        vm("b", storage=lun),
        vm("c", storage=StorageLocation(StorageKind.LUN, "lun2")),
    )
    v = view([host("n1"), host("n2")], [a, b, c])
    (reason,) = judge(a, v)
    assert reason == StatusReason(
        ConfigCause.SHARED_LUN,
        "LUN lun1 is not a CSV and is also used by highly available VM b: each needs a LUN of its own",
        "lun:lun1",
    )
    assert causes(judge(b, v)) == [ConfigCause.SHARED_LUN] and judge(c, v) == ()
    csv = StorageLocation(StorageKind.CSV, "Volume1")
    v = view([host("n1")], [vm("a", storage=csv), vm("b", storage=csv)])
    assert judge(vm("a", storage=csv), v) == ()


def test_every_cause_at_once_is_listed() -> None:
    lun = StorageLocation(StorageKind.LUN, "lun1")
    v = view([host("n1", net("Backend")), host("n2")], [vm("a", storage=lun), vm("b", storage=lun)])
    assert causes(judge(vm("a", storage=lun, networks=("Backend",)), v)) == [
        ConfigCause.SHARED_LUN,
        ConfigCause.NETWORK_NOT_COMMON,
    ]


# ---------------------------------------------------------------- the judging store


def judging_store(*hosts: HostRecord, level=R2) -> ConfigJudgingStore:  # type: ignore[assignment]
    store = ConfigJudgingStore(MemoryStore(), level)
    nodes = tuple(h.name for h in hosts if h.cluster)
    store.put_cluster(ClusterRecord("c1", "hyperv-2008r2", 1, nodes, VOLUMES))
    for h in hosts:
        store.put_host(h)
    return store


def stored(store: ConfigJudgingStore, name: str) -> VmRecord:
    record = store.get_vm_by_name(name)
    assert record is not None
    return record


def test_the_store_judges_a_vm_when_it_is_written_and_when_its_cluster_changes() -> None:
    store = judging_store(host("n1", net("Backend")), host("n2", net("Backend")))
    store.put_vm(vm("a", networks=("Backend",)))
    assert stored(store, "a").status is ConfigStatus.OK
    # An administrator moved n2's Backend to VLAN 7; the refresh records the host.
    store.put_host(host("n2", net("Backend", vlan=7)))
    after = stored(store, "a")
    assert after.status is ConfigStatus.UNSUPPORTED_CLUSTER_CONFIGURATION
    assert causes(after.status_reasons) == [ConfigCause.NETWORK_NOT_COMMON]
    # A flow writing back a copy it read before keeps the judgement.
    store.put_vm(replace(vm("a", networks=("Backend",)), state=VmState.PAUSED))
    assert stored(store, "a").status is ConfigStatus.UNSUPPORTED_CLUSTER_CONFIGURATION
    store.put_host(host("n2", net("Backend")))
    assert stored(store, "a").status is ConfigStatus.OK and stored(store, "a").status_reasons == ()


def test_a_second_vm_on_a_lun_makes_both_unsupported_and_deleting_it_clears_both() -> None:
    store = judging_store(host("n1"), host("n2"))
    lun = StorageLocation(StorageKind.LUN, "lun1")
    store.put_vm(vm("a", storage=lun))
    assert stored(store, "a").status is ConfigStatus.OK
    store.put_vm(vm("b", "n2", storage=lun))
    assert {stored(store, n).status for n in "ab"} == {ConfigStatus.UNSUPPORTED_CLUSTER_CONFIGURATION}
    store.delete_vm("id-b")
    assert stored(store, "a").status is ConfigStatus.OK


def test_ignored_reasons_accept_the_configuration_until_a_new_cause_appears() -> None:
    store = judging_store(host("n1", net("Backend"), net("Front")), host("n2"))
    store.put_vm(vm("a", networks=("Backend",)))
    unsupported = stored(store, "a")
    # Only the layer's accept changes what is ignored: a writer cannot.
    store.put_vm(replace(unsupported, ignored_reasons=unsupported.status_reasons))
    assert stored(store, "a").ignored_reasons == ()
    store.accept("id-a")
    accepted = stored(store, "a")
    assert accepted.status is ConfigStatus.OK and accepted.ignored_reasons == unsupported.status_reasons
    # A new, different cause counts again; the ignored one stays ignored.
    store.put_vm(replace(accepted, networks=("Backend", "Front")))
    again = stored(store, "a")
    assert again.status is ConfigStatus.UNSUPPORTED_CLUSTER_CONFIGURATION
    assert len(again.status_reasons) == 2 and again.ignored_reasons == unsupported.status_reasons
    # Once the cause is fixed, its acceptance is forgotten: if it comes back, it is new.
    store.put_vm(replace(again, networks=()))
    fixed = stored(store, "a")
    assert fixed.status is ConfigStatus.OK and fixed.ignored_reasons == ()


def test_review_all_judges_records_written_before_the_judgement_existed() -> None:
    inner = MemoryStore()
    inner.put_vm(vm("a", "s1", StorageLocation(StorageKind.LOCAL_DISK, "C")))
    inner.put_host(host("s1", cluster=None))
    store = ConfigJudgingStore(inner, R2)
    assert store.review_all() == 1
    assert causes(stored(store, "a").status_reasons) == [
        ConfigCause.STANDALONE_HOST,
        ConfigCause.LOCAL_STORAGE,
    ]
    assert store.review_all() == 0


# ------------------------------------------------------------------ review cases


def test_under_2008_r2_names_differing_in_case_vote_together_and_the_odd_node_is_named() -> None:
    hosts = [
        host("n1", net("External", vlan=7)),
        host("n2", net("external")),
        host("n3", net("EXTERNAL")),
    ]
    (external,) = cluster_networks(hosts, case_sensitive=False)
    assert [(d.node, d.detail) for d in external.differs_on] == [("n1", "VLAN 7, not 0")]


def test_an_ignored_network_reason_survives_a_case_only_rename_and_a_stale_copy() -> None:
    store = judging_store(host("n1", net("Backend", vlan=5)), host("n2", net("Backend", vlan=6)))
    store.put_vm(vm("a", networks=("Backend",)))
    accepted = store.accept("id-a")
    assert accepted is not None and accepted.status is ConfigStatus.OK
    # n1 renames its network in case only: the sentence changes, the reason does not.
    store.put_host(host("n1", net("BACKEND", vlan=5)))
    after = stored(store, "a")
    assert after.status is ConfigStatus.OK and after.ignored_reasons == after.status_reasons
    assert "'BACKEND'" in after.status_reasons[0].detail or "'Backend'" in after.status_reasons[0].detail
    # A flow writing back a copy read before the Ignore keeps it.
    store.put_vm(replace(vm("a", networks=("Backend",)), state=VmState.PAUSED))
    assert stored(store, "a").status is ConfigStatus.OK and stored(store, "a").ignored_reasons


def test_an_ha_vm_on_a_lun_or_csv_that_is_not_a_disk_of_its_cluster_is_on_local_storage() -> None:
    cluster = ClusterRecord(
        "c1",
        "hyperv-2008r2",
        1,
        ("n1", "n2"),
        (VolumeInfo("lun1", StorageKind.LUN, GIB, GIB), VolumeInfo("Volume1", StorageKind.CSV, GIB, GIB)),
    )
    v = ClusterView.of(R2, [host("n1"), host("n2")], [cluster], [])
    assert judge(vm("a", storage=StorageLocation(StorageKind.LUN, "lun1")), v) == ()
    (reason,) = judge(vm("b", storage=StorageLocation(StorageKind.LUN, "lun9")), v)
    assert reason.cause is ConfigCause.LOCAL_STORAGE
    assert reason.detail == "its files are on LUN lun9, which is not a disk of cluster c1"
    (reason,) = judge(vm("c", storage=StorageLocation(StorageKind.CSV, "Volume7")), v)
    assert reason.cause is ConfigCause.LOCAL_STORAGE and "CSV volume Volume7" in reason.detail


def test_a_lun_passed_through_to_one_ha_vm_and_holding_another_is_shared() -> None:
    lun = StorageLocation(StorageKind.LUN, "lun1")
    a = vm("a", storage=lun)
    b = replace(vm("b", "n2"), passthrough_disks=(lun,))
    v = view([host("n1"), host("n2")], [a, b])
    assert causes(judge(a, v)) == [ConfigCause.SHARED_LUN] and causes(judge(b, v)) == [ConfigCause.SHARED_LUN]


def test_a_vm_passing_through_a_lun_another_ha_vm_is_on_makes_both_unsupported_in_the_store() -> None:
    store = judging_store(host("n1"), host("n2"))
    lun = StorageLocation(StorageKind.LUN, "lun1")
    store.put_vm(vm("files", storage=lun))
    # Made on n2 behind the manager's back, imported by a refresh.
    store.put_vm(replace(vm("raw", "n2"), passthrough_disks=(lun,)))
    assert [r.cause for r in stored(store, "raw").status_reasons] == [ConfigCause.SHARED_LUN]
    assert [r.cause for r in stored(store, "files").status_reasons] == [ConfigCause.SHARED_LUN]
    store.delete_vm("id-raw")
    assert stored(store, "files").status is ConfigStatus.OK
