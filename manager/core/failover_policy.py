"""A highly available VM's failover policy: owners, failover threshold and failback.

These are the group properties a Windows Server 2008 R2 failover cluster keeps for
each clustered VM, and that VMM shows: which nodes it prefers (in order), which nodes
it may run on at all, how many failovers in how long it is allowed before the cluster
leaves it failed, and whether it moves back to its most preferred owner once that
node returns. Purely computational, no side effects: the services ask these
functions and act on the answers; time is passed in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from manager.core.errors import FailedPreconditionError, InvalidArgumentError
from manager.core.model import FailbackMode, FailoverPolicy, VmRecord
from manager.core.states import VmState


def check_policy(policy: FailoverPolicy, *, highly_available: bool, cluster_nodes: Collection[str]) -> None:
    """Refuse a policy that names a node outside the VM's cluster, twice, or for a non-HA VM."""
    if policy == FailoverPolicy():
        return
    if not highly_available:
        raise FailedPreconditionError(
            "owners, failover threshold and failback apply to highly available VMs only"
        )
    problems: list[str] = []
    for field, names in (
        ("preferred_owners", policy.preferred_owners),
        ("possible_owners", policy.possible_owners),
    ):
        unknown = [n for n in names if n not in cluster_nodes]
        if unknown:
            problems.append(f"{field}: {', '.join(unknown)} not a node of the VM's cluster")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            problems.append(f"{field}: {', '.join(twice)} named twice")
    outside = [n for n in policy.preferred_owners if not policy.may_run_on(n)]
    if outside:
        problems.append(f"preferred_owners: {', '.join(outside)} not among the possible owners")
    if problems:
        raise InvalidArgumentError("; ".join(problems))


def effective_max_failovers(policy: FailoverPolicy, node_count: int) -> int:
    """The threshold in force: the policy's, else nodes - 1 (Windows Server 2008 R2's default)."""
    if policy.max_failovers is not None:
        return policy.max_failovers
    return max(node_count - 1, 0)


def recent_failovers(vm: VmRecord, now: datetime) -> tuple[datetime, ...]:
    """The VM's failovers inside its policy's period, oldest first."""
    since = now - timedelta(seconds=vm.policy.failover_period_s)
    return tuple(t for t in vm.failover_times if t > since)


def threshold_reached(vm: VmRecord, node_count: int, now: datetime) -> str | None:
    """Why one more failover is not allowed, or None when it is."""
    limit = effective_max_failovers(vm.policy, node_count)
    recent = recent_failovers(vm, now)
    if len(recent) < limit:
        return None
    hours = vm.policy.failover_period_s / 3600
    return (
        f"failover threshold reached: {len(recent)} failover(s) in the last {hours:g} h, "
        f"at most {limit} allowed"
    )


def owner_order(policy: FailoverPolicy, candidates: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(preferred owners among the candidates in preference order, the other allowed candidates).

    A candidate that is not a possible owner is in neither: the VM never goes there.
    """
    allowed = [c for c in candidates if policy.may_run_on(c)]
    preferred = tuple(p for p in policy.preferred_owners if p in allowed)
    others = tuple(c for c in allowed if c not in preferred)
    return preferred, others


def in_failback_window(policy: FailoverPolicy, hour: int) -> bool:
    """Whether a failback may happen at this hour of the day (0-23)."""
    if policy.failback is FailbackMode.NEVER:
        return False
    if policy.failback is FailbackMode.IMMEDIATE or policy.failback_window is None:
        return True
    start, end = policy.failback_window
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end  # spans midnight


@dataclass(frozen=True)
class Failback:
    vm_id: str
    vm_name: str
    source: str
    target: str  # its most preferred owner


def plan_failbacks(vms: Sequence[VmRecord], ok_hosts: Collection[str], hour: int) -> tuple[Failback, ...]:
    """Running HA VMs whose most preferred owner is back in service, inside their window.

    Only the most preferred owner counts, as in a failover cluster: a VM that runs on
    its second preferred owner while the first is down stays there.
    """
    planned: list[Failback] = []
    for vm in sorted(vms, key=lambda v: v.name):
        if not vm.highly_available or not vm.policy.preferred_owners or vm.host is None:
            continue
        if vm.state is not VmState.RUNNING or vm.migration_id is not None or vm.failover_from is not None:
            continue
        first = vm.policy.preferred_owners[0]
        if vm.host == first or first not in ok_hosts:
            continue
        if not in_failback_window(vm.policy, hour):
            continue
        planned.append(Failback(vm.id, vm.name, vm.host, first))
    return tuple(planned)


def describe_policy(policy: FailoverPolicy, node_count: int) -> str:
    """One line for a job message or an event."""
    parts: list[str] = []
    if policy.preferred_owners:
        parts.append(f"preferred owners {', '.join(policy.preferred_owners)}")
    if policy.possible_owners:
        parts.append(f"possible owners {', '.join(policy.possible_owners)}")
    limit = effective_max_failovers(policy, node_count)
    parts.append(f"at most {limit} failover(s) in {policy.failover_period_s / 3600:g} h")
    if policy.failback is FailbackMode.WINDOW and policy.failback_window is not None:
        start, end = policy.failback_window
        parts.append(f"failback between {start:02d}:00 and {end:02d}:00")
    else:
        parts.append(f"failback {policy.failback.value}")
    return "; ".join(parts)
