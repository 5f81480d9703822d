"""Hosts joining and leaving a running manager: the rules AddHost and RemoveHost apply.

Purely computational, no side effects: the host-admin service reads the records, asks
these functions whether the change is allowed and what the records become, and writes
them. The topology loader uses the same records and the same visibility rule, so a
host added at runtime looks, after a restart, exactly as it did before.

A node joining a cluster sees every cluster shared volume and each LUN that every
current node sees: storage zoned to a subset of the nodes stays zoned to it. A node
leaves only when nothing depends on it any more (no VM placed on it, no migration
or failover involving it) and its cluster keeps more nodes than its reserve, the
same rule the topology enforces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from havm.contract.hosts import HostSpec
from havm.contract.topology import seen_by_every_node
from manager.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from manager.core.model import (
    GIB,
    ClusterRecord,
    DiskInfo,
    HostRecord,
    MigrationRecord,
    NetworkInfo,
    StorageKind,
    VmRecord,
    VolumeInfo,
)
from manager.core.profiles import network_kind
from manager.core.states import HostState, MigrationState

OPEN_MIGRATION_STATES = frozenset({MigrationState.QUEUED, MigrationState.RUNNING})


def host_record(spec: HostSpec, volumes: Iterable[VolumeInfo], added_at_runtime: bool = False) -> HostRecord:
    """A host as described, before its agent ever answered: `not_responding`."""
    return HostRecord(
        name=spec.name,
        cluster=spec.cluster,
        profile=spec.profile,
        address=spec.address,
        migration_address=spec.migration_address,
        cpu=spec.cpu,
        memory_mb=spec.memory_mb,
        host_reserve_mb=spec.host_reserve_mb,
        memory_free_mb=spec.memory_mb - spec.host_reserve_mb,
        disks=tuple(DiskInfo(d.name, d.capacity_gb * GIB, d.capacity_gb * GIB) for d in spec.disks),
        networks=tuple(
            NetworkInfo(n.name, network_kind(spec.profile), n.bound_to, n.vlan_id) for n in spec.networks
        ),
        volumes=tuple(volumes),
        state=HostState.NOT_RESPONDING,
        state_reason="not refreshed yet",
        added_at_runtime=added_at_runtime,
    )


def check_new_host(
    spec: HostSpec, hosts: Sequence[HostRecord], clusters: Sequence[ClusterRecord]
) -> ClusterRecord | None:
    """Whether `spec` may join: its name is free, its address given and not another
    host's, its cluster exists and runs its profile. Returns that cluster (None for a
    standalone host); raises a ManagerError saying what is wrong otherwise."""
    if not spec.address:
        raise InvalidArgumentError(
            f"host.address: is required: where the manager reaches host {spec.name}'s agent (host:port)"
        )
    if any(h.name == spec.name for h in hosts):
        raise AlreadyExistsError(f"host {spec.name} already exists")
    if any(c.name == spec.name for c in clusters):
        raise AlreadyExistsError(
            f"host.name: {spec.name} is the name of a cluster; host and cluster names must differ"
        )
    same_address = next((h for h in hosts if h.address == spec.address), None)
    if same_address is not None:
        raise InvalidArgumentError(
            f"host.address: {spec.address} is already the address of host {same_address.name}"
        )
    if spec.cluster is None:
        return None
    cluster = next((c for c in clusters if c.name == spec.cluster), None)
    if cluster is None:
        raise NotFoundError(f"cluster {spec.cluster} does not exist")
    if spec.profile != cluster.profile:
        raise FailedPreconditionError(
            f"host {spec.name} runs {spec.profile} but cluster {cluster.name} runs {cluster.profile}: "
            "every node of a cluster runs the cluster's profile"
        )
    return cluster


def new_node_volumes(cluster: ClusterRecord) -> list[VolumeInfo]:
    """The cluster's volumes a node joining it now sees."""
    visible = set(
        seen_by_every_node(
            cluster.nodes,
            dict(cluster.visibility),
            (v.name for v in cluster.volumes if v.kind is StorageKind.CSV),
        )
    )
    return [v for v in cluster.volumes if v.name in visible]


def joined(cluster: ClusterRecord, host: str) -> ClusterRecord:
    """The cluster once `host` is one of its nodes, seeing what `new_node_volumes` says."""
    visible = {v.name for v in new_node_volumes(cluster)}
    visibility = dict(cluster.visibility)
    for volume in cluster.volumes:
        visibility.setdefault(volume.name, ())
    return replace(
        cluster,
        nodes=(*cluster.nodes, host),
        visibility=tuple(
            (name, (*seen, host) if name in visible and host not in seen else tuple(seen))
            for name, seen in visibility.items()
        ),
    )


def left(cluster: ClusterRecord, host: str) -> ClusterRecord:
    """The cluster once `host` is no longer one of its nodes."""
    return replace(
        cluster,
        nodes=tuple(n for n in cluster.nodes if n != host),
        visibility=tuple((name, tuple(n for n in seen if n != host)) for name, seen in cluster.visibility),
    )


def _names(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def check_removable(
    host: HostRecord,
    cluster: ClusterRecord | None,
    vms: Sequence[VmRecord],
    migrations: Sequence[MigrationRecord],
) -> None:
    """Raise FailedPreconditionError unless `host` can be forgotten now: no VM placed on
    it (or being restarted away from it), no open migration to or from it, no failover
    of it under way, and its cluster keeps more nodes than its reserve."""
    name = host.name
    placed = sorted({vm.name for vm in vms if vm.host == name or vm.failover_from == name})
    if placed:
        plural = len(placed) > 1
        raise FailedPreconditionError(
            f"host {name} cannot be removed: VM{'s' if plural else ''} {_names(placed)} "
            f"{'are' if plural else 'is'} placed on it; move or delete "
            f"{'them' if plural else 'it'} first"
        )
    moving = sorted(
        m.vm_name
        for m in migrations
        if m.state in OPEN_MIGRATION_STATES and name in (m.source, m.destination)
    )
    if moving:
        raise FailedPreconditionError(
            f"host {name} cannot be removed: a migration of VM {_names(moving)} to or from it is "
            "under way; wait for it to end"
        )
    if host.state is HostState.FENCING:
        raise FailedPreconditionError(
            f"host {name} cannot be removed: its VMs are being failed over; wait until it is fenced"
        )
    if cluster is not None and set(cluster.nodes) <= {name}:
        raise FailedPreconditionError(
            f"host {name} cannot be removed: it is the last node of cluster {cluster.name}, and a "
            "cluster keeps at least one node"
        )
    if cluster is not None and len(cluster.nodes) - 1 <= cluster.reserve:
        remaining = len(cluster.nodes) - 1
        raise FailedPreconditionError(
            f"host {name} cannot leave cluster {cluster.name}: the cluster must absorb "
            f"{cluster.reserve} node failure{'s' if cluster.reserve != 1 else ''} and would keep "
            f"{remaining} node{'s' if remaining != 1 else ''}; a cluster keeps more nodes than its "
            "reserve (lower the reserve first)"
        )
