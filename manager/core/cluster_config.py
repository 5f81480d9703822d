"""Judging a highly available VM's configuration as VMM does: every cause, typed.

A failover cluster can keep a VM available only if every node could run it: its
files and pass-through disks on cluster storage, a LUN of its own unless the volume
is a CSV, and each of its network adapters on a network that every node has alike
(a *common* virtual network: same name, same host adapter, same VLAN; for ESX, a
port group present on every host). VMM 2008 compares network names case-sensitively,
2008 R2 does not (the level's row decides).

Purely computational: `ClusterView` is a snapshot of the records the judgement needs,
`judge` lists the reasons of one VM, `cluster_networks` what the cluster's networks
are. The same function judges a VM at creation, at a refresh, after a migration and
after a manager restart, so the status never depends on the path that wrote it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from manager.core.config_status import ConfigCause, StatusReason
from manager.core.levels import LevelTraits
from manager.core.model import ClusterRecord, HostRecord, NetworkInfo, StorageKind, VmRecord
from manager.core.profiles import PORT_GROUP

NETWORK_TERM = {PORT_GROUP: "port group"}  # otherwise "virtual network"


@dataclass(frozen=True)
class NetworkDifference:
    node: str
    detail: str  # "host adapter 'B', not 'A'; VLAN 7, not 0"


@dataclass(frozen=True)
class ClusterNetwork:
    """One network name of a cluster, as `cluster show` lists it."""

    name: str  # the spelling most nodes use
    kind: str  # "virtual_network" | "port_group"
    common: bool  # a highly available VM may use it
    vlan_id: int  # as most nodes have it
    bound_to: str
    missing_on: tuple[str, ...]
    differs_on: tuple[NetworkDifference, ...]

    def explain(self, cluster: str) -> str:
        """Why it is not common: `missing on node3; on node2 host adapter 'B', not 'A'`."""
        parts = []
        if self.missing_on:
            parts.append(f"missing on {', '.join(self.missing_on)}")
        parts.extend(f"on {d.node} {d.detail}" for d in self.differs_on)
        term = NETWORK_TERM.get(self.kind, "virtual network")
        return f"{term} '{self.name}' is not common to every node of cluster {cluster}: {'; '.join(parts)}"


def cluster_networks(nodes: Sequence[HostRecord], case_sensitive: bool) -> tuple[ClusterNetwork, ...]:
    """Every network name of the nodes, whether it is common, and how the nodes differ.

    Names are grouped regardless of case, so that under a case-sensitive level a
    spelling that differs is reported as a difference rather than as two networks.
    """
    ordered = sorted(nodes, key=lambda h: h.name)
    groups: dict[str, list[tuple[str, NetworkInfo]]] = {}
    for host in ordered:
        for net in host.networks:
            groups.setdefault(net.name.casefold(), []).append((host.name, net))
    return tuple(
        _judge_network(entries, [h.name for h in ordered], case_sensitive) for entries in groups.values()
    )


def _judge_network(
    entries: list[tuple[str, NetworkInfo]], nodes: list[str], case_sensitive: bool
) -> ClusterNetwork:
    # The reference is what most nodes have (the first node breaks a tie): a single odd
    # node is named as the one that differs.
    per_node: dict[str, NetworkInfo] = {}
    for node, net in entries:
        per_node.setdefault(node, net)

    def setting(net: NetworkInfo) -> tuple[str, str, int]:
        return (net.name if case_sensitive else net.name.casefold(), net.bound_to, net.vlan_id)

    votes = Counter(setting(n) for n in per_node.values())
    reference = max(votes, key=lambda k: (votes[k], -_first(per_node, k, setting)))
    _, bound_to, vlan = reference
    # Shown as the spelling most nodes of the reference use.
    spellings = Counter(n.name for n in per_node.values() if setting(n) == reference)
    name = spellings.most_common(1)[0][0]
    kind = next(iter(per_node.values())).kind
    port_group = kind == PORT_GROUP
    missing = tuple(n for n in nodes if n not in per_node)
    differs = []
    for node, net in per_node.items():
        what = []
        if case_sensitive and net.name != name:
            what.append(f"named '{net.name}', not '{name}' (this level compares names case-sensitively)")
        if not port_group and net.bound_to != bound_to:
            what.append(f"host adapter '{net.bound_to}', not '{bound_to}'")
        if not port_group and net.vlan_id != vlan:
            what.append(f"VLAN {net.vlan_id}, not {vlan}")
        if what:
            differs.append(NetworkDifference(node, "; ".join(what)))
    return ClusterNetwork(
        name=name,
        kind=kind,
        common=not missing and not differs,
        vlan_id=vlan,
        bound_to=bound_to,
        missing_on=missing,
        differs_on=tuple(differs),
    )


def _first(
    per_node: dict[str, NetworkInfo],
    key: tuple[str, str, int],
    setting: Callable[[NetworkInfo], tuple[str, str, int]],
) -> int:
    for i, net in enumerate(per_node.values()):
        if setting(net) == key:
            return i
    return len(per_node)


@dataclass(frozen=True)
class ClusterView:
    """The records judging needs: hosts, clusters and who uses each LUN."""

    level: LevelTraits
    hosts: dict[str, HostRecord]
    clusters: dict[str, ClusterRecord]
    # Highly available VMs by the LUNs they use (their files', their pass-through disks).
    lun_users: dict[str, tuple[str, ...]]
    _networks: dict[str, dict[str, ClusterNetwork]] = field(default_factory=dict, compare=False)
    _disks: dict[tuple[str, StorageKind], frozenset[str]] = field(default_factory=dict, compare=False)

    @classmethod
    def of(
        cls,
        level: LevelTraits,
        hosts: Iterable[HostRecord],
        clusters: Iterable[ClusterRecord],
        vms: Iterable[VmRecord],
    ) -> ClusterView:
        users: dict[str, list[str]] = {}
        for vm in vms:
            if vm.highly_available:
                for lun in dict.fromkeys(vm.luns()):
                    users.setdefault(lun, []).append(vm.name)
        return cls(
            level,
            {h.name: h for h in hosts},
            {c.name: c for c in clusters},
            {lun: tuple(sorted(names)) for lun, names in users.items()},
        )

    def disks(self, cluster: ClusterRecord, kind: StorageKind) -> frozenset[str]:
        """The cluster's LUNs or CSVs by name, worked out once per judging pass."""
        key = (cluster.name, kind)
        if key not in self._disks:
            self._disks[key] = cluster.disk_names(kind)
        return self._disks[key]

    def networks(self, cluster: str) -> dict[str, ClusterNetwork]:
        """The cluster's networks by the name a VM's adapter uses (the level's case rule)."""
        known = self._networks.get(cluster)
        if known is None:
            record = self.clusters.get(cluster)
            names = record.nodes if record is not None else ()
            nodes = [self.hosts[n] for n in names if n in self.hosts]
            known = {}
            for net in cluster_networks(nodes, self.level.network_names_case_sensitive):
                known[net.name.casefold()] = net
            self._networks[cluster] = known
        return known


def judge(vm: VmRecord, view: ClusterView) -> tuple[StatusReason, ...]:
    """Every reason the VM's configuration is unsupported; empty when it is supported."""
    if not vm.highly_available:
        return ()
    reasons: list[StatusReason] = []
    host = view.hosts.get(vm.host) if vm.host is not None else None
    if vm.host is not None and (host is None or host.cluster is None):
        reasons.append(
            StatusReason(
                ConfigCause.STANDALONE_HOST,
                f"host {vm.host} is a standalone host, not a node of a cluster",
                vm.host,
            )
        )
    cluster = view.clusters.get(host.cluster) if host is not None and host.cluster is not None else None
    reasons.extend(_storage_reasons(vm, view, cluster))
    reasons.extend(_passthrough_reasons(vm, cluster, view))
    if host is not None and host.cluster is not None:
        reasons.extend(_network_reasons(vm, host.cluster, view))
    reasons.extend(_level_reasons(vm, view.level))
    return tuple(reasons)


def _passthrough_reasons(
    vm: VmRecord, cluster: ClusterRecord | None, view: ClusterView
) -> list[StatusReason]:
    reasons = []
    cluster_luns = view.disks(cluster, StorageKind.LUN) if cluster else frozenset()
    for disk in vm.passthrough_disks:
        if disk.kind is StorageKind.LOCAL_DISK:
            reasons.append(
                StatusReason(
                    ConfigCause.LOCAL_STORAGE,
                    f"pass-through disk {disk.name} is a local disk of host {vm.host}, "
                    "which no other node can see",
                    f"passthrough:local:{disk.name}",
                )
            )
        elif disk.kind is StorageKind.LUN and disk.name not in cluster_luns:
            where = f"cluster {cluster.name}" if cluster is not None else "any cluster"
            reasons.append(
                StatusReason(
                    ConfigCause.PASSTHROUGH_NOT_CLUSTERED,
                    f"pass-through disk {disk.name} is not a disk of {where}: only its host sees it",
                    f"passthrough:lun:{disk.name}",
                )
            )
    return reasons


def _level_reasons(vm: VmRecord, level: LevelTraits) -> list[StatusReason]:
    """Causes VMM 2008 has and 2008 R2 no longer has."""
    reasons = []
    if level.only_vm_resources_in_group and vm.cluster_resources:
        extra = ", ".join(f"{r.name} ({r.type})" for r in vm.cluster_resources)
        reasons.append(
            StatusReason(
                ConfigCause.EXTRA_CLUSTER_RESOURCES,
                f"its cluster group holds {extra} beside the VM, its configuration and its disks, "
                "which is all VMM 2008 supports in a group",
                ",".join(sorted(r.name.casefold() for r in vm.cluster_resources)),
            )
        )
    if level.iso_attached_unsupported and vm.iso_image:
        reasons.append(
            StatusReason(
                ConfigCause.ISO_ATTACHED,
                f"an ISO image is attached to its DVD drive ({vm.iso_image}); VMM 2008 does not support "
                "that for a highly available VM",
                vm.iso_image,
            )
        )
    return reasons


def _storage_reasons(vm: VmRecord, view: ClusterView, cluster: ClusterRecord | None) -> list[StatusReason]:
    storage = vm.storage
    if storage is None:
        return []
    subject = f"{storage.kind.value}:{storage.name}"
    if storage.kind is StorageKind.LOCAL_DISK:
        return [
            StatusReason(
                ConfigCause.LOCAL_STORAGE,
                f"its files are on local disk {storage.name}, which no other host can see",
                subject,
            )
        ]
    if cluster is not None and storage.name not in view.disks(cluster, storage.kind):
        # A volume its host sees that is no disk of the cluster (made visible on the host).
        what = "LUN" if storage.kind is StorageKind.LUN else "CSV volume"
        return [
            StatusReason(
                ConfigCause.LOCAL_STORAGE,
                f"its files are on {what} {storage.name}, which is not a disk of cluster {cluster.name}",
                subject,
            )
        ]
    reasons = []
    for lun in dict.fromkeys(vm.luns()):
        others = [name for name in view.lun_users.get(lun, ()) if name != vm.name]
        if others:
            reasons.append(
                StatusReason(
                    ConfigCause.SHARED_LUN,
                    f"LUN {lun} is not a CSV and is also used by highly available VM "
                    f"{', '.join(others)}: each needs a LUN of its own",
                    f"lun:{lun}",
                )
            )
    return reasons


def _network_reasons(vm: VmRecord, cluster: str, view: ClusterView) -> list[StatusReason]:
    networks = view.networks(cluster)
    reasons = []
    for name in vm.networks:
        net = networks.get(name.casefold())
        subject = f"network:{name if view.level.network_names_case_sensitive else name.casefold()}"
        port_group = net is not None and net.kind == PORT_GROUP
        if net is None:
            # No node reports it at all (a host that lost it since).
            host = view.hosts.get(vm.host or "")
            is_esx = host is not None and host.capabilities.network_kind == PORT_GROUP
            cause = ConfigCause.PORT_GROUP_MISSING if is_esx else ConfigCause.NETWORK_NOT_COMMON
            term = "port group" if is_esx else "virtual network"
            reasons.append(
                StatusReason(cause, f"{term} '{name}' exists on no node of cluster {cluster}", subject)
            )
        elif port_group and (net.missing_on or net.differs_on):
            reasons.append(StatusReason(ConfigCause.PORT_GROUP_MISSING, net.explain(cluster), subject))
        elif not port_group and not net.common:
            reasons.append(StatusReason(ConfigCause.NETWORK_NOT_COMMON, net.explain(cluster), subject))
    return reasons
