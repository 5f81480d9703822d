"""Host ratings, as VMM's "Select Host" page shows them: stars with their reasons.

Purely computational, no side effects. Every host gets 0 to 5 stars for a VM of the
requested shape, and the reasons: every cause that gives it zero stars (the same rules
placement applies, plus the cluster reserve), and for a host that can take the VM, how
loaded it would be, which is where its stars come from. Automatic placement takes the
best-rated host; failover does not look at the reserve (it must restart what it can).

The reserve (see `capacity`): the nodes of an overcommitted cluster get zero stars
for a highly available VM; so does a node on which the VM would make its cluster
overcommitted. An administrator can still place the VM on such a node by naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from manager.core.capacity import ReserveReport, reserve_report
from manager.core.model import RestartPriority, StorageKind, StorageLocation, VmRecord
from manager.core.placement import (
    HostCapacity,
    PlacementRequest,
    PlacementSnapshot,
    RatingReason,
    host_score,
    load_after,
    pick_storage,
    rate_host,
    refusals,
)
from manager.core.states import VmState

# Reasons that concern the reserve only: an administrator may override them.
RESERVE_REASONS = frozenset({RatingReason.CLUSTER_OVERCOMMITTED, RatingReason.WOULD_OVERCOMMIT})


@dataclass(frozen=True)
class RatingNote:
    code: RatingReason
    detail: str
    # True when this reason alone gives the host zero stars.
    blocking: bool


@dataclass(frozen=True)
class HostRating:
    host: str
    cluster: str | None
    stars: float
    notes: tuple[RatingNote, ...]
    # Where the VM's files would go; None when the host cannot take the VM.
    storage: StorageLocation | None

    @property
    def blocking(self) -> tuple[RatingNote, ...]:
        return tuple(n for n in self.notes if n.blocking)

    def only_reserve_blocks(self) -> bool:
        """The host could take the VM but for the cluster reserve."""
        blocking = self.blocking
        return bool(blocking) and all(n.code in RESERVE_REASONS for n in blocking)

    def why_not(self) -> str:
        """`node1 has 2048 MB free, needs 4096 MB, has no network 'Backend'`."""
        return f"{self.host} " + ", ".join(n.detail for n in self.blocking)


def planned_vm(
    request: PlacementRequest, host: str, storage: StorageLocation | None, **kw: object
) -> VmRecord:
    """The VM the request describes, running on `host`: for what-if reserve checks."""
    planned = VmRecord(
        id=f"planned:{request.vm_name}",
        name=request.vm_name,
        host=host,
        state=VmState.RUNNING,
        highly_available=request.highly_available,
        memory_mb=request.memory_mb,
        cpus=request.cpus,
        disk_gb=request.disk_gb,
        storage=storage,
        networks=request.networks,
    )
    return replace(planned, **kw)  # type: ignore[arg-type]


def with_vm_on(snapshot: PlacementSnapshot, host: str, vm: VmRecord) -> PlacementSnapshot:
    """The snapshot once `vm` runs on `host` with its files where it says."""

    def take(h: HostCapacity) -> HostCapacity:
        if h.name != host:
            return h
        rooms = tuple(
            replace(s, used_by=s.used_by + (vm.name,))
            if vm.storage is not None and s.kind is StorageKind.LUN and s.name == vm.storage.name
            else s
            for s in h.storage
        )
        return replace(
            h,
            memory_free_mb=h.memory_free_mb - vm.memory_mb,
            running_vcpus=h.running_vcpus + vm.cpus,
            storage=rooms,
        )

    return PlacementSnapshot(tuple(take(h) for h in snapshot.hosts))


def _load_notes(host: HostCapacity, request: PlacementRequest) -> list[RatingNote]:
    memory_left, cpu_left = load_after(host, request)
    used_mb = host.usable_memory_mb - host.memory_free_mb + request.memory_mb
    vcpus = host.running_vcpus + request.cpus
    slots = host.cores * request.max_vcpus_per_core
    return [
        RatingNote(
            RatingReason.MEMORY_LOAD,
            f"{used_mb} of {host.usable_memory_mb} MB in use after placement "
            f"({round(100 * (1 - memory_left))}%)",
            False,
        ),
        RatingNote(
            RatingReason.CPU_LOAD,
            f"{vcpus} vCPUs on {host.cores} cores after placement "
            f"({round(100 * (1 - cpu_left))}% of {request.max_vcpus_per_core} per core, {slots} in all)",
            False,
        ),
    ]


def rate_one(
    snapshot: PlacementSnapshot,
    host: HostCapacity,
    request: PlacementRequest,
    vms: Sequence[VmRecord],
    clusters: Mapping[str, ReserveReport],
    *,
    protected: bool = True,
) -> HostRating:
    """One host's stars and reasons for the request (see `rate_hosts`)."""
    notes = [RatingNote(r.code, r.detail, True) for r in refusals(host, request, every=True)]
    storage, why = pick_storage(host, request)
    # The storage a VM needs follows from whether it is highly available: on a host of
    # the wrong kind, "sees no CSV volume" would only repeat that.
    wrong_kind = any(
        n.code in (RatingReason.NOT_CLUSTER_NODE, RatingReason.CLUSTER_NODE, RatingReason.LIBRARY_SERVER)
        for n in notes
    )
    if storage is None and not wrong_kind:
        notes.append(RatingNote(RatingReason.STORAGE, why, True))
    cluster = clusters.get(host.cluster or "")
    if request.highly_available and cluster is not None and not notes:
        current = cluster.overcommit
        if current is not None:
            notes.append(
                RatingNote(
                    RatingReason.CLUSTER_OVERCOMMITTED,
                    f"is a node of cluster {host.cluster}, which is overcommitted: {current.detail}",
                    True,
                )
            )
        elif protected:
            vm = planned_vm(request, host.name, storage)
            after = reserve_report(
                host.cluster or "",
                cluster.reserve,
                with_vm_on(snapshot, host.name, vm),
                [*vms, vm],
                max_vcpus_per_core=request.max_vcpus_per_core,
            )
            if after.overcommit is not None:
                notes.append(
                    RatingNote(
                        RatingReason.WOULD_OVERCOMMIT,
                        f"would make cluster {host.cluster} overcommitted: {after.overcommit.detail}",
                        True,
                    )
                )
    if any(n.blocking for n in notes):
        return HostRating(host.name, host.cluster, 0.0, tuple(notes), None)
    notes.extend(_load_notes(host, request))
    return HostRating(host.name, host.cluster, rate_host(host, request), tuple(notes), storage)


def rate_hosts(
    snapshot: PlacementSnapshot,
    request: PlacementRequest,
    vms: Sequence[VmRecord],
    clusters: Mapping[str, ReserveReport],
    *,
    restart_priority: RestartPriority = RestartPriority.MEDIUM,
    starts: bool = True,
) -> tuple[HostRating, ...]:
    """Every host of the snapshot rated for the request, best first (zero stars last,
    then by name).

    `clusters` maps each cluster's name to its current verdict (which says its reserve). A VM that
    will not run (`starts` False) or that failover never restarts (priority `none`)
    cannot overcommit a cluster, so the what-if reserve check is skipped for it.
    """
    protected = starts and restart_priority is not RestartPriority.NONE
    hosts = {h.name: h for h in snapshot.hosts}
    ratings = [
        rate_one(snapshot, host, request, vms, clusters, protected=protected) for host in snapshot.hosts
    ]

    def rank(rating: HostRating) -> tuple[float, float, str]:
        # Equal stars are told apart by the score behind them, as placement does.
        score = host_score(hosts[rating.host], request) if rating.stars > 0 else 0.0
        return (-rating.stars, -score, rating.host)

    return tuple(sorted(ratings, key=rank))
