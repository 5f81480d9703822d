"""From topology and inventories to host and cluster records, and to placement room.

Purely computational: the app reads records from the store, calls these, and writes
the results back. Kept apart from placement so placement sees only room, not records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from havm.contract.hosts import HostSpec
from havm.contract.topology import Topology, seen_by_every_node
from manager.core.errors import FailedPreconditionError
from manager.core.membership import host_record
from manager.core.model import (
    GIB,
    ClusterRecord,
    HostRecord,
    Inventory,
    NetworkInfo,
    StorageKind,
    VmRecord,
    VolumeInfo,
)
from manager.core.placement import HostCapacity, PlacementSnapshot, StorageRoom
from manager.core.states import ClusterState, HostState, VmState, change_host_state

# States in which a VM holds memory and CPU on its host.
ACTIVE_VM_STATES = frozenset(
    {VmState.STARTING, VmState.RUNNING, VmState.PAUSED, VmState.SAVING, VmState.MIGRATING}
)
# What placement counts against a host: a VM being created is about to start there, so
# two creates placed at the same moment never count the same free memory.
PLACED_VM_STATES = ACTIVE_VM_STATES | {VmState.CREATING}
NO_ADDRESS = "no agent address"


def _host_from_spec(spec: HostSpec, topology: Topology) -> HostRecord:
    record = host_record(
        spec,
        (
            VolumeInfo(v.name, StorageKind(v.kind), v.capacity_gb * GIB, v.capacity_gb * GIB)
            for v in topology.volumes_visible_to(spec.name)
        ),
    )
    return record if spec.address else replace(record, state_reason=NO_ADDRESS)


def _added_at_runtime(topology: Topology, hosts: Sequence[HostRecord]) -> list[HostRecord]:
    """The stored hosts AddHost recorded and the topology does not declare: kept."""
    declared = {h.name for h in topology.hosts}
    return [h for h in hosts if h.added_at_runtime and h.name not in declared]


def removed_from_topology(
    topology: Topology,
    hosts: Sequence[HostRecord],
    clusters: Sequence[ClusterRecord],
    vms: Sequence[VmRecord],
) -> tuple[list[str], list[str]]:
    """Names of the stored hosts and clusters the topology no longer declares.

    Hosts added at runtime (AddHost) are not the topology's to remove: they stay, and
    so does their cluster membership. Purely computational. Raises
    FailedPreconditionError naming the host and its VMs when a removed host still has
    VMs recorded on it (forgetting the host would orphan them), and naming the hosts
    added at runtime to a cluster the topology no longer declares.
    """
    declared_hosts = {h.name for h in topology.hosts}
    declared_clusters = {c.name for c in topology.clusters}
    for host in _added_at_runtime(topology, hosts):
        if host.cluster is not None and host.cluster not in declared_clusters:
            raise FailedPreconditionError(
                f"topology: cluster {host.cluster} was removed but host {host.name}, added at runtime, "
                f"is one of its nodes; remove the host first (havm host remove {host.name})"
            )
    gone_hosts = sorted(h.name for h in hosts if h.name not in declared_hosts and not h.added_at_runtime)
    for name in gone_hosts:
        left = sorted(vm.name for vm in vms if vm.host == name)
        if left:
            raise FailedPreconditionError(
                f"topology: host {name} was removed but VM{'s' if len(left) > 1 else ''} "
                f"{', '.join(left)} {'are' if len(left) > 1 else 'is'} still recorded on it; "
                "move or delete them first"
            )
    gone_clusters = sorted(c.name for c in clusters if c.name not in declared_clusters)
    return gone_hosts, gone_clusters


def merge_topology(
    topology: Topology,
    hosts: Sequence[HostRecord],
    clusters: Sequence[ClusterRecord],
) -> tuple[list[HostRecord], list[ClusterRecord]]:
    """Host and cluster records for a (re)loaded topology.

    New hosts and clusters are added; existing ones take the topology's description
    (address, memory, membership) but keep their state and last inventory, and the
    VMs recorded on them are untouched. Hosts added at runtime that the topology does
    not declare are kept as they are and stay nodes of their cluster, seeing what a
    node joining it sees (see membership.seen_by_every_node); one the topology now
    declares becomes a topology host.
    """
    old_hosts = {h.name: h for h in hosts}
    old_clusters = {c.name: c for c in clusters}
    runtime = _added_at_runtime(topology, hosts)
    new_hosts: list[HostRecord] = []
    for spec in topology.hosts:
        fresh = _host_from_spec(spec, topology)
        old = old_hosts.get(spec.name)
        if old is not None:
            fresh = replace(
                fresh,
                memory_free_mb=old.memory_free_mb,
                state=old.state,
                state_reason=old.state_reason if spec.address else NO_ADDRESS,
                last_refresh=old.last_refresh,
                boot_id=old.boot_id,
                fence_decided=old.fence_decided,
                reported_capabilities=old.reported_capabilities,
            )
            fresh = replace(fresh, networks=_kinded(fresh.networks, fresh.capabilities.network_kind))
        new_hosts.append(fresh)
    new_hosts.extend(runtime)
    new_clusters: list[ClusterRecord] = []
    for cluster_spec in topology.clusters:
        old_cluster = old_clusters.get(cluster_spec.name)
        old_volumes = {v.name: v for v in old_cluster.volumes} if old_cluster is not None else {}
        volumes = []
        for v in cluster_spec.volumes:
            capacity = v.capacity_gb * GIB
            free = old_volumes[v.name].free_bytes if v.name in old_volumes else capacity
            volumes.append(VolumeInfo(v.name, StorageKind(v.kind), capacity, min(free, capacity)))
        joined = tuple(h.name for h in runtime if h.cluster == cluster_spec.name)
        seen = set(
            seen_by_every_node(
                cluster_spec.nodes,
                {v.name: v.visible_to for v in cluster_spec.volumes},
                (v.name for v in cluster_spec.volumes if v.kind == "csv"),
            )
        )
        new_clusters.append(
            ClusterRecord(
                name=cluster_spec.name,
                profile=cluster_spec.profile,
                reserve=cluster_spec.reserve,
                nodes=cluster_spec.nodes + joined,
                volumes=tuple(volumes),
                visibility=tuple(
                    (v.name, v.visible_to + (joined if v.name in seen else ())) for v in cluster_spec.volumes
                ),
                datacenter=cluster_spec.datacenter,
            )
        )
    return new_hosts, new_clusters


def set_host_state(
    host: HostRecord, state: HostState, reason: str, fence_decided: bool = False
) -> HostRecord:
    """The host in `state` (a legal transition); `fence_decided` only with the detector's
    not-responding verdict that fencing follows, cleared by every other change."""
    return replace(
        host,
        state=change_host_state(host.name, host.state, state),
        state_reason=reason,
        fence_decided=fence_decided,
    )


# States the failure detector and the failover service own: a refresh records what the
# host reported but leaves the verdict alone (an isolated host answers, yet it is not ok).
DETECTOR_STATES = frozenset({HostState.SUSPECT, HostState.ISOLATED, HostState.FENCING})
# States an operator's action holds, whatever a refresh finds.
_OPERATOR_STATES = frozenset({HostState.MAINTENANCE, HostState.STOPPING})
# States a failed refresh does not change: the failover, or the shutdown, has the host.
_KEPT_WHEN_SILENT = frozenset({HostState.FENCED, HostState.STOPPING, HostState.STOPPED})


def apply_inventory(
    host: HostRecord, inventory: Inventory, now: datetime, stale: Sequence[str] = ()
) -> HostRecord:
    """The host after a successful GetInventory: `ok`, with what the agent reported,
    its capabilities included (kept from the last report when an agent reports none).

    A fenced host rejoins only once it no longer holds copies of VMs that moved
    (`stale`); a host under the detector's judgement, or in maintenance, keeps its state.
    """
    capabilities = inventory.capabilities or host.reported_capabilities
    kind = (capabilities or host.capabilities).network_kind
    refreshed = replace(
        host,
        cpu=inventory.cpu if inventory.cpu.cores > 0 else host.cpu,
        memory_mb=inventory.memory_mb or host.memory_mb,
        memory_free_mb=inventory.memory_free_mb,
        disks=inventory.disks or host.disks,
        networks=inventory.networks or _kinded(host.networks, kind),
        volumes=inventory.volumes or host.volumes,
        last_refresh=now,
        boot_id=inventory.boot_id,
        reported_capabilities=capabilities,
    )
    if host.state in DETECTOR_STATES or host.state in _OPERATOR_STATES:
        # Maintenance ends only when an operator stops it, not because the host answers;
        # a host being shut down is the shutdown's until it is stopped.
        return refreshed
    if host.state is HostState.STOPPED and inventory.boot_id == host.boot_id:
        # The agent answered once more on its way out: only a new boot brings it back.
        return refreshed
    if host.state is HostState.FENCED and stale:
        return replace(
            refreshed,
            state_reason=f"fenced; it still holds stale copies of {', '.join(sorted(stale))}",
        )
    return set_host_state(refreshed, HostState.OK, "")


def _kinded(networks: tuple[NetworkInfo, ...], kind: str) -> tuple[NetworkInfo, ...]:
    """The topology's networks named as the host names them (virtual networks or port groups)."""
    return tuple(replace(n, kind=kind) for n in networks)


def apply_refresh_failure(host: HostRecord, why: str, now: datetime) -> HostRecord:
    """The host after a failed GetInventory: `not_responding` on the management path.

    A host the detector or the failover service holds keeps its state: whether its
    VMs move is decided from heartbeats and probes, not from one failed call.
    """
    if host.state in DETECTOR_STATES or host.state in _KEPT_WHEN_SILENT:
        return replace(host, last_refresh=now)
    return replace(set_host_state(host, HostState.NOT_RESPONDING, why), last_refresh=now)


def _zoned_luns(host: HostRecord, counted: set[str], vms: Sequence[VmRecord]) -> list[StorageRoom]:
    """LUNs a cluster shares with a host outside it (a standalone host the SAN zones the
    LUN to, so that VMs cross the cluster boundary by SAN): their room, whoever uses them."""
    rooms = []
    for volume in host.volumes:
        if volume.kind is not StorageKind.LUN or volume.name in counted:
            continue
        users = [vm for vm in vms if volume.name in vm.luns()]
        taken_gb = sum(vm.disk_gb for vm in users)
        free_gb = min(volume.free_bytes // GIB, volume.capacity_bytes // GIB - taken_gb)
        holders = tuple(dict.fromkeys(vm.name for vm in users))
        rooms.append(StorageRoom(volume.name, volume.kind, max(0, free_gb), holders))
    return rooms


def update_cluster_volumes(cluster: ClusterRecord, seen: Sequence[VolumeInfo]) -> ClusterRecord:
    """The cluster's volumes with the free space a node just reported."""
    reported = {v.name: v for v in seen}
    volumes = tuple(
        replace(v, free_bytes=reported[v.name].free_bytes) if v.name in reported else v
        for v in cluster.volumes
    )
    return replace(cluster, volumes=volumes)


def host_capacity(
    host: HostRecord,
    clusters: Sequence[ClusterRecord],
    vms: Sequence[VmRecord],
) -> HostCapacity:
    """What room a host has, from its last inventory and the VMs recorded on it.

    Free space is the smaller of what the agent last reported and what the records
    imply, so VMs placed since the last refresh are counted.
    """
    mine = [vm for vm in vms if vm.host == host.name]
    active = [vm for vm in mine if vm.state in PLACED_VM_STATES]
    usable = host.memory_mb - host.host_reserve_mb
    memory_free = min(host.memory_free_mb, usable - sum(vm.memory_mb for vm in active))
    rooms: list[StorageRoom] = []
    for disk in host.disks:
        used = sum(
            vm.disk_gb
            for vm in mine
            if vm.storage is not None
            and vm.storage.kind is StorageKind.LOCAL_DISK
            and vm.storage.name == disk.name
        )
        free_gb = min(disk.free_bytes // GIB, disk.capacity_bytes // GIB - used)
        rooms.append(StorageRoom(disk.name, StorageKind.LOCAL_DISK, max(0, free_gb)))
    cluster = next((c for c in clusters if c.name == host.cluster), None)
    if cluster is not None:
        members = set(cluster.nodes)
        for volume in cluster.volumes:
            if host.name not in cluster.visible_to(volume.name):
                continue
            users = [
                vm
                for vm in vms
                if vm.host in members
                and vm.storage is not None
                and vm.storage.kind is volume.kind
                and vm.storage.name == volume.name
            ]
            free_gb = min(
                volume.free_bytes // GIB,
                volume.capacity_bytes // GIB - sum(vm.disk_gb for vm in users),
            )
            # A LUN passed through to a VM is that VM's raw disk: nobody else's to use.
            raw = [vm for vm in vms if volume.kind is StorageKind.LUN and volume.name in vm.luns()]
            holders = tuple(dict.fromkeys(vm.name for vm in users + raw))
            rooms.append(StorageRoom(volume.name, volume.kind, max(0, free_gb), holders))
    rooms.extend(_zoned_luns(host, {r.name for r in rooms if r.kind is not StorageKind.LOCAL_DISK}, vms))
    return HostCapacity(
        name=host.name,
        cluster=host.cluster,
        state=host.state,
        usable_memory_mb=usable,
        memory_free_mb=max(0, memory_free),
        cores=host.cpu.cores,
        running_vcpus=sum(vm.cpus for vm in active),
        storage=tuple(rooms),
        networks=tuple(n.name for n in host.networks),
        library_server=host.capabilities.library_server,
    )


def build_snapshot(
    hosts: Sequence[HostRecord],
    clusters: Sequence[ClusterRecord],
    vms: Sequence[VmRecord],
) -> PlacementSnapshot:
    return PlacementSnapshot(tuple(host_capacity(h, clusters, vms) for h in hosts))


def cluster_state(cluster: ClusterRecord, hosts: Sequence[HostRecord]) -> ClusterState:
    """Whether a cluster can absorb the loss of its `reserve` nodes.

    Purely computational. The N-k reserve check (would the VMs of `reserve` failed
    nodes fit on the others) is not judged yet, so every cluster is `ok`; callers
    already take the decision from here, where that check will live.
    """
    del cluster, hosts
    return ClusterState.OK
