"""Where a new VM goes: the best-rated host, or the one the administrator named.

Purely computational. Automatic placement takes the host with the most stars (see
`rating`); when no host has any, the refusal names every host's reasons, and when
only the cluster reserve stands in the way it says so (FAILED_PRECONDITION, naming
the failure set) and how to override it: name the node. A named node is checked by
the same rules except the reserve; if the VM overcommits its cluster there, the
choice says so, for the job's message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from manager.core.capacity import ReserveReport
from manager.core.errors import FailedPreconditionError, ResourceExhaustedError
from manager.core.failover_policy import owner_order
from manager.core.model import FailoverPolicy, RestartPriority, StorageLocation, VmRecord
from manager.core.placement import (
    PlacementGoal,
    PlacementRequest,
    PlacementSnapshot,
    RatingReason,
    check_request,
    describe_vm,
    pick_storage,
)
from manager.core.rating import RESERVE_REASONS, HostRating, rate_hosts, rate_one


@dataclass(frozen=True)
class VmShape:
    """A VM as `vm place` describes it: what it needs, not what it is called."""

    memory_mb: int
    cpus: int
    disk_gb: int
    highly_available: bool
    storage: StorageLocation | None = None
    networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class RatingsView:
    ratings: tuple[HostRating, ...]  # best first
    best_host: str | None
    goal: PlacementGoal


@dataclass(frozen=True)
class HostChoice:
    host: str
    storage: StorageLocation
    stars: float
    why: str  # for the job's message: why this host


def _load(rating: HostRating) -> str:
    return "; ".join(n.detail for n in rating.notes if n.code is RatingReason.MEMORY_LOAD)


def choose_host(
    snapshot: PlacementSnapshot,
    request: PlacementRequest,
    vms: Sequence[VmRecord],
    clusters: Mapping[str, ReserveReport],
    *,
    restart_priority: RestartPriority = RestartPriority.MEDIUM,
    starts: bool = True,
    policy: FailoverPolicy | None = None,
) -> HostChoice:
    """The host for a new VM; raises NotFoundError / InvalidArgumentError for a request
    that contradicts the topology, ResourceExhaustedError when no host can take it,
    FailedPreconditionError when only the reserve forbids automatic placement.

    A `policy` with owners narrows the choice: never a node that is not a possible
    owner; the first preferred owner with stars wins over a better-rated other node.
    """
    check_request(snapshot, request)
    what = describe_vm(request)
    policy = policy or FailoverPolicy()
    if request.host is None:
        ratings = rate_hosts(
            snapshot, request, vms, clusters, restart_priority=restart_priority, starts=starts
        )
        ratings = tuple(r for r in ratings if policy.may_run_on(r.host))
        usable = {r.host: r for r in ratings if r.stars > 0 and r.storage is not None}
        preferred, _ = owner_order(policy, usable)
        if preferred:
            first = usable[preferred[0]]
            assert first.storage is not None
            return HostChoice(
                first.host,
                first.storage,
                first.stars,
                f"its first available preferred owner, {first.stars:g} stars: {_load(first)}",
            )
        best = next((r for r in ratings if r.stars > 0), None)
        if best is not None and best.storage is not None:
            return HostChoice(
                best.host, best.storage, best.stars, f"best rated with {best.stars:g} stars: {_load(best)}"
            )
        reserve_only = [r for r in ratings if r.only_reserve_blocks()]
        if reserve_only:
            reasons = "; ".join(r.why_not() for r in reserve_only)
            raise FailedPreconditionError(
                f"automatic placement of {what} refused by the cluster reserve: {reasons}. "
                "Name a node (--host) to place it there anyway"
            )
        if not ratings:
            none = "none of its possible owners is a host" if policy.possible_owners else "there are no hosts"
            raise ResourceExhaustedError(f"no host can take {what}: {none}")
        raise ResourceExhaustedError(f"no host can take {what}: " + "; ".join(r.why_not() for r in ratings))
    host = snapshot.host(request.host)
    assert host is not None  # check_request raised NotFoundError otherwise
    if not policy.may_run_on(host.name):
        raise FailedPreconditionError(
            f"host {host.name} is not a possible owner of {what} "
            f"(possible owners: {', '.join(policy.possible_owners)})"
        )
    protected = starts and restart_priority is not RestartPriority.NONE
    rating = rate_one(snapshot, host, request, vms, clusters, protected=protected)
    refused = [n for n in rating.blocking if n.code not in RESERVE_REASONS]
    if any(n.code is RatingReason.MAINTENANCE for n in refused):
        raise FailedPreconditionError(
            f"host {host.name} is in maintenance mode: no VM can be created on it until "
            f"`havm host maintenance stop {host.name}`"
        )
    if refused:
        raise ResourceExhaustedError(
            f"no host can take {what}: {host.name} " + ", ".join(n.detail for n in refused)
        )
    storage, _ = pick_storage(host, request)
    assert storage is not None  # a storage refusal is among `refused`
    overcommit = [n for n in rating.blocking if n.code in RESERVE_REASONS]
    if not overcommit:
        return HostChoice(
            host.name, storage, rating.stars, f"as named, {rating.stars:g} stars: {_load(rating)}"
        )
    note = overcommit[0]
    detail = note.detail.split(": ", 1)[1] if ": " in note.detail else note.detail
    verb = "stays" if note.code is RatingReason.CLUSTER_OVERCOMMITTED else "is now"
    return HostChoice(
        host.name,
        storage,
        0.0,
        f"as named, overriding the reserve; cluster {host.cluster} {verb} overcommitted: {detail}",
    )
