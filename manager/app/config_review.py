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

from dataclasses import replace

from manager.core.cluster_config import ClusterView, judge
from manager.core.config_status import ConfigStatus, accepted, status_of
from manager.core.levels import LevelTraits
from manager.core.model import ClusterRecord, HostRecord, VmRecord
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


def _luns(vm: VmRecord | None) -> frozenset[str]:
    """The LUNs by which a highly available VM's judgement depends on other VMs: the one
    its files are on and those passed through to it (as ClusterView.lun_users counts)."""
    if vm is None or not vm.highly_available:
        return frozenset()
    return frozenset(vm.luns())


class ConfigJudgingStore(ForwardingStore):
    """A Store that judges the VMs each write can affect and records their status.

    Each write reads the VMs at most once: the records a judgement needs (the view) and
    the VMs to judge again come from the same read."""

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
        luns = _luns(old) | _luns(vm)
        # Only a VM on a LUN needs the others' records (who else is on that LUN).
        others = [v for v in self._inner.list_vms() if v.id != vm.id] if luns else []
        view = self._view([*others, vm])
        self._inner.put_vm(self._judged(vm, view))
        self._rejudge([v for v in others if luns & _luns(v)], view)

    def delete_vm(self, vm_id: str) -> None:
        old = self._inner.get_vm(vm_id)
        self._inner.delete_vm(vm_id)
        luns = _luns(old)
        if luns:
            vms = self._inner.list_vms()
            self._rejudge([v for v in vms if luns & _luns(v)], self._view(vms))

    def put_host(self, host: HostRecord) -> None:
        old = self._inner.get_host(host.name)
        self._inner.put_host(host)
        if old is None or _host_inputs(old) != _host_inputs(host):
            self._rejudge_nodes(self._nodes_around(host, old))

    def delete_host(self, name: str) -> None:
        old = self._inner.get_host(name)
        self._inner.delete_host(name)
        if old is not None:
            self._rejudge_nodes(self._nodes_around(old, None))

    def put_cluster(self, cluster: ClusterRecord) -> None:
        old = self._inner.get_cluster(cluster.name)
        self._inner.put_cluster(cluster)
        if old is None or old.nodes != cluster.nodes:
            self._rejudge_nodes(set(cluster.nodes) | set(old.nodes if old is not None else ()))

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
        vms = self._inner.list_vms()
        return self._rejudge(vms, self._view(vms))

    def _nodes_around(self, host: HostRecord, old: HostRecord | None) -> set[str]:
        """The hosts whose VMs a change of this host can affect: its cluster's (old and new)."""
        nodes = {host.name}
        for name in {host.cluster, old.cluster if old is not None else None} - {None}:
            record = self._inner.get_cluster(name or "")
            if record is not None:
                nodes.update(record.nodes)
        return nodes

    def _rejudge_nodes(self, nodes: set[str]) -> None:
        vms = self._inner.list_vms()
        self._rejudge([vm for vm in vms if vm.host in nodes], self._view(vms))

    def _view(self, vms: list[VmRecord]) -> ClusterView:
        return ClusterView.of(self.level, self._inner.list_hosts(), self._inner.list_clusters(), vms)

    def _judged(self, vm: VmRecord, view: ClusterView) -> VmRecord:
        reasons = judge(vm, view)
        # An accepted reason that no longer holds is forgotten: if it comes back, it is new.
        ignored = accepted(reasons, vm.ignored_reasons)
        status = status_of(reasons, ignored)
        return replace(vm, status=status, status_reasons=reasons, ignored_reasons=ignored)

    def _rejudge(self, vms: list[VmRecord], view: ClusterView) -> int:
        changed = 0
        for vm in vms:
            judged = self._judged(vm, view)
            if judged != vm:
                self._inner.put_vm(judged)
                changed += 1
        return changed
