"""Keeps every VM's cluster configuration status true, whichever path wrote what.

A VM's status depends on its own record (host, storage, networks, highly available)
and on records around it: the networks of every node of its cluster, and the other
highly available VMs on its LUN. Flows that move, create, import or restart VMs, and
refreshes that record a host's new networks, all write through this store layer,
which judges (core.cluster_config) exactly the VMs a write can affect. So no code path
can forget to judge, and a flow that writes back a copy of a VM it read earlier
cannot undo a judgement made since.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from manager.core.cluster_config import ClusterView, judge
from manager.core.config_status import ConfigStatus, accepted, status_of
from manager.core.levels import LevelTraits
from manager.core.model import ClusterRecord, HostRecord, StorageKind, VmRecord
from manager.core.store import ForwardingStore, Store


def _judged_inputs(vm: VmRecord) -> tuple[object, ...]:
    """What of its own record a VM's judgement reads."""
    return (
        vm.name,
        vm.highly_available,
        vm.host,
        vm.storage,
        vm.networks,
        vm.passthrough_disks,
        vm.iso_image,
        vm.cluster_resources,
    )


def _host_inputs(host: HostRecord) -> tuple[object, ...]:
    return (host.cluster, host.networks, host.capabilities.network_kind)


def _lun(vm: VmRecord | None) -> str | None:
    if vm is not None and vm.highly_available and vm.storage is not None:
        if vm.storage.kind is StorageKind.LUN:
            return vm.storage.name
    return None


class ConfigJudgingStore(ForwardingStore):
    """A Store that judges the VMs each write can affect and records their status."""

    def __init__(self, inner: Store, level: LevelTraits) -> None:
        super().__init__(inner)
        self.level = level

    # ------------------------------------------------------------------ writes

    def put_vm(self, vm: VmRecord) -> None:
        old = self._inner.get_vm(vm.id)
        if old is not None:
            # What Ignore accepted is this layer's to change (accept): a writer's copy may
            # have been read before it.
            vm = replace(vm, ignored_reasons=old.ignored_reasons)
        if old is not None and _judged_inputs(old) == _judged_inputs(vm):
            # Judged already; the writer may hold a copy read before the last judgement.
            self._inner.put_vm(replace(vm, status=old.status, status_reasons=old.status_reasons))
            return
        luns = {_lun(old), _lun(vm)} - {None}
        # Only a VM on a LUN needs the others' records (who else is on that LUN).
        view = self._view(replacing=vm, with_vms=bool(luns))
        self._inner.put_vm(self._judged(vm, view))
        if luns:
            self._rejudge((v for v in self._inner.list_vms() if _lun(v) in luns and v.id != vm.id), view)

    def delete_vm(self, vm_id: str) -> None:
        old = self._inner.get_vm(vm_id)
        self._inner.delete_vm(vm_id)
        lun = _lun(old)
        if lun is not None:
            self._rejudge(v for v in self._inner.list_vms() if _lun(v) == lun)

    def put_host(self, host: HostRecord) -> None:
        old = self._inner.get_host(host.name)
        self._inner.put_host(host)
        if old is None or _host_inputs(old) != _host_inputs(host):
            self._rejudge(self._vms_around(host, old))

    def delete_host(self, name: str) -> None:
        old = self._inner.get_host(name)
        self._inner.delete_host(name)
        if old is not None:
            self._rejudge(self._vms_around(old, None))

    def put_cluster(self, cluster: ClusterRecord) -> None:
        old = self._inner.get_cluster(cluster.name)
        self._inner.put_cluster(cluster)
        if old is None or old.nodes != cluster.nodes:
            nodes = set(cluster.nodes) | set(old.nodes if old is not None else ())
            self._rejudge(v for v in self._inner.list_vms() if v.host in nodes)

    # ------------------------------------------------------------------ judging

    def accept(self, vm_id: str) -> VmRecord | None:
        """Repair's Ignore: the reasons standing now no longer make the VM unsupported.
        Returns the VM as recorded, or None when it does not exist."""
        vm = self._inner.get_vm(vm_id)
        if vm is None:
            return None
        accepted = replace(vm, ignored_reasons=vm.status_reasons, status=ConfigStatus.OK)
        self._inner.put_vm(accepted)
        return accepted

    def review_all(self) -> int:
        """Judge every VM again (at start: the level or the records may have changed
        while the manager was down). Returns how many statuses changed."""
        return self._rejudge(self._inner.list_vms())

    def view(self) -> ClusterView:
        return self._view()

    def _vms_around(self, host: HostRecord, old: HostRecord | None) -> list[VmRecord]:
        """The VMs a change of this host can affect: those of its cluster (old and new)."""
        clusters = {host.cluster, old.cluster if old is not None else None} - {None}
        nodes = {host.name}
        for name in clusters:
            record = self._inner.get_cluster(name or "")
            if record is not None:
                nodes.update(record.nodes)
        return [vm for vm in self._inner.list_vms() if vm.host in nodes]

    def _view(self, replacing: VmRecord | None = None, with_vms: bool = True) -> ClusterView:
        vms = self._inner.list_vms() if with_vms else []
        if replacing is not None:
            vms = [v for v in vms if v.id != replacing.id] + [replacing]
        return ClusterView.of(self.level, self._inner.list_hosts(), self._inner.list_clusters(), vms)

    def _judged(self, vm: VmRecord, view: ClusterView) -> VmRecord:
        reasons = judge(vm, view)
        # An accepted reason that no longer holds is forgotten: if it comes back, it is new.
        ignored = accepted(reasons, vm.ignored_reasons)
        status = status_of(reasons, ignored)
        return replace(vm, status=status, status_reasons=reasons, ignored_reasons=ignored)

    def _rejudge(self, vms: Iterable[VmRecord], view: ClusterView | None = None) -> int:
        targets = list(vms)
        if not targets:
            return 0
        view = view or self._view()
        changed = 0
        for vm in targets:
            judged = self._judged(vm, view)
            if judged != vm:
                self._inner.put_vm(judged)
                changed += 1
        return changed
