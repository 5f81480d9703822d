"""The cluster reserve: can a cluster lose any `reserve` of its nodes and still restart
every highly available VM?

Purely computational, no side effects. VMM 2008 R2 judges the reserve with slots (every
node holds as many VMs as the largest HA VM fits), which calls clusters overcommitted
that would in fact survive. This check is exact instead: a cluster is `ok` when, for
every set of `reserve` healthy nodes failing together, the very restart planner that
failover runs (`plan_restarts`, with the same placement rules) finds a node for every
HA VM it would have to restart. Nodes that are not `ok` (maintenance, fenced, not
responding, ...) count as gone already, so the reserve applies to the healthy ones,
and HA VMs still waiting to be restarted from them must fit in every case.

Exploring every failure set with the planner is exact but slow on large clusters, so
sets are pruned with a bound that is sound for the planner. The planner places VMs
one after the other on any node with room; it can fail to place a VM v only if every
node that could run v (networks, cores, storage) was filled below v's size by the
other lost VMs, which needs

    sum over those nodes of max(0, free - size(v) + 1)  <=  lost memory - size(v).

Where the left side is larger for every lost VM, the planner places them all and need
not run. The same bound taken over the worst nodes of a whole branch of failure sets
(heaviest loads lost, largest contributions removed) prunes the branch at once, so a
cluster with room to spare is judged without enumerating anything. Sets are explored
heaviest first, so the failure set reported for an overcommitted cluster is the most
damaging one found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from math import gcd

from manager.core.failover import RESTARTABLE_STATES, plan_restarts, restart_request, without_self
from manager.core.model import RESTART_RANK, RestartPriority, StorageKind, VmRecord
from manager.core.placement import HostCapacity, PlacementSnapshot, pick_storage, refusals
from manager.core.states import ClusterState, HostState, VmState

# Memory no host has: checks a VM's static fit on a host, whatever its free memory.
_UNLIMITED_MB = 1 << 50


@dataclass(frozen=True)
class Overcommit:
    """A failure set that breaks the reserve, and what it leaves unplaced."""

    failed_nodes: tuple[str, ...]
    unplaced_vms: tuple[str, ...]
    detail: str


@dataclass(frozen=True)
class ReserveReport:
    cluster: str
    reserve: int
    healthy_nodes: tuple[str, ...]
    # Nodes that are not ok, with their state: they count as failed already.
    gone_nodes: tuple[tuple[str, HostState], ...]
    overcommit: Overcommit | None
    # Sets of `reserve` healthy nodes there are, and how many the planner ran on
    # (the others were proven survivable by the bound).
    failure_sets: int
    planned: int

    @property
    def state(self) -> ClusterState:
        return ClusterState.OK if self.overcommit is None else ClusterState.OVERCOMMITTED

    def summary(self) -> str:
        """`ok: it can lose any 1 node and restart every highly available VM`, or why not."""
        if self.overcommit is not None:
            return f"overcommitted: {self.overcommit.detail}"
        if self.reserve <= 0:
            return "ok: every highly available VM has room"
        nodes = "node" if self.reserve == 1 else "nodes"
        return f"ok: it can lose any {self.reserve} {nodes} and restart every highly available VM"


def is_protected(vm: VmRecord) -> bool:
    """Whether failover would restart this VM if its node failed (or does now)."""
    if not vm.highly_available or vm.restart_priority is RestartPriority.NONE:
        return False
    # A VM being created counts as the running VM it is about to be.
    return vm.failover_from is not None or vm.state in RESTARTABLE_STATES or vm.state is VmState.CREATING


def _fit_key(vm: VmRecord) -> tuple[object, ...]:
    """What decides whether a node can run `vm` at all, memory aside."""
    shared = vm.storage if vm.storage is not None and vm.storage.kind is not StorageKind.LOCAL_DISK else None
    # A LUN's other users block it, its own files do not: the VM's name matters there.
    owner = vm.name if shared is not None and shared.kind is StorageKind.LUN else ""
    # Owners narrow (and order) the nodes a restart may take.
    owners = (vm.policy.preferred_owners, vm.policy.possible_owners)
    return (vm.cpus, vm.networks, shared, owner, owners)


def _combinations(total: int, k: int) -> int:
    result = 1
    for i in range(k):
        result = result * (total - i) // (i + 1)
    return result


class _Bound:
    """The pruning bound over one cluster's healthy nodes and protected VMs."""

    def __init__(
        self,
        order: Sequence[HostCapacity],
        protected: dict[str, list[VmRecord]],
        always_lost: Sequence[VmRecord],
        max_vcpus_per_core: int,
    ) -> None:
        self.order = order
        self.load = [sum(vm.memory_mb for vm in protected.get(h.name, ())) for h in order]
        self.always_mb = sum(vm.memory_mb for vm in always_lost)
        # Each VM's class: the nodes (positions in `order`) that could run it at all.
        classes: dict[tuple[int, ...], int] = {}
        self.eligible: list[tuple[int, ...]] = []
        self.pairs_on: list[set[tuple[int, int]]] = []
        # Per node, its VMs in restart order with their pair: for the refined bound.
        self.ranked_on: list[list[tuple[tuple[int, str], int, tuple[int, int]]]] = []
        vm_lists = [protected.get(h.name, []) for h in order] + [list(always_lost)]
        # Every lost VM's size is a multiple of this, so memory the planner placed on a
        # node is too.
        self.grain = gcd(*(vm.memory_mb for vms in vm_lists for vm in vms)) or 1
        # VMs alike in what a node must offer them share one verdict per node.
        known: dict[tuple[object, ...], tuple[int, ...]] = {}
        for vms in vm_lists:
            pairs: set[tuple[int, int]] = set()
            ranked: list[tuple[tuple[int, str], int, tuple[int, int]]] = []
            for vm in vms:
                key = _fit_key(vm)
                nodes = known.get(key)
                if nodes is None:
                    nodes = known[key] = self._nodes_for(vm, max_vcpus_per_core)
                cls = classes.setdefault(nodes, len(classes))
                if cls == len(self.eligible):
                    self.eligible.append(nodes)
                pairs.add((cls, vm.memory_mb))
                ranked.append(
                    ((RESTART_RANK.get(vm.restart_priority, 9), vm.name), vm.memory_mb, (cls, vm.memory_mb))
                )
            self.pairs_on.append(pairs)
            self.ranked_on.append(ranked)
        self.always_pairs = self.pairs_on.pop()
        self.always_ranked = self.ranked_on.pop()
        self.all_pairs = set(self.always_pairs).union(*self.pairs_on)
        # contribution[pair][position]: what a node adds to the left side of the bound.
        self.contribution: dict[tuple[int, int], list[int]] = {}
        self.total: dict[tuple[int, int], int] = {}
        for cls, size in self.all_pairs:
            row = [0] * len(order)
            for i in self.eligible[cls]:
                short = order[i].memory_free_mb - size + 1
                row[i] = -(-short // self.grain) * self.grain if short > 0 else 0
            self.contribution[(cls, size)] = row
            self.total[(cls, size)] = sum(row)

    def _nodes_for(self, vm: VmRecord, max_vcpus_per_core: int) -> tuple[int, ...]:
        request = restart_request(vm, max_vcpus_per_core)
        nodes = []
        for i, host in enumerate(self.order):
            roomy = replace(host, memory_free_mb=_UNLIMITED_MB)
            if refusals(roomy, request, every=False):
                continue
            if pick_storage(without_self(host, vm), request)[0] is None:
                continue
            nodes.append(i)
        return tuple(nodes)

    def set_survives(self, failed: Sequence[int]) -> bool:
        """True when the planner surely places every VM lost with these nodes."""
        lost_mb = self.always_mb + sum(self.load[i] for i in failed)
        pairs = set(self.always_pairs).union(*(self.pairs_on[i] for i in failed))
        left: dict[tuple[int, int], int] = {}
        for pair in pairs:
            row = self.contribution[pair]
            left[pair] = self.total[pair] - sum(row[i] for i in failed)
        if all(left[pair] > lost_mb - pair[1] for pair in pairs):
            return True
        # Refined: only the VMs before v in restart order can have filled the nodes.
        lost = sorted(self.always_ranked + [entry for i in failed for entry in self.ranked_on[i]])
        before = 0
        for _rank, size, pair in lost:
            if left[pair] <= before:
                return False
            before += size
        return True

    def branch_survives(self, chosen: Sequence[int], start: int, more: int) -> bool:
        """True when every set made of `chosen` and `more` nodes from `start` on survives."""
        if more == 0:
            return self.set_survives(chosen)
        rest = range(start, len(self.order))
        lost_mb = (
            self.always_mb
            + sum(self.load[i] for i in chosen)
            + sum(sorted((self.load[i] for i in rest), reverse=True)[:more])
        )
        for pair in self.all_pairs:
            row = self.contribution[pair]
            worst = sum(sorted((row[i] for i in rest), reverse=True)[:more])
            left = self.total[pair] - sum(row[i] for i in chosen) - worst
            if left <= lost_mb - pair[1]:
                return False
        return True


def reserve_report(
    cluster: str,
    reserve: int,
    snapshot: PlacementSnapshot,
    vms: Iterable[VmRecord],
    *,
    max_vcpus_per_core: int = 8,
    prune: bool = True,
) -> ReserveReport:
    """Judge `cluster` against its reserve; see the module docstring for the rule.

    `snapshot` holds the room of the cluster's nodes (others are ignored); `vms` the
    VM records (those on other hosts are ignored). `prune=False` runs the planner on
    every failure set: the reference the pruned search is tested against.
    """
    nodes = [h for h in snapshot.hosts if h.cluster == cluster]
    names = {h.name for h in nodes}
    healthy = [h for h in nodes if h.state is HostState.OK]
    healthy_names = {h.name for h in healthy}
    gone = tuple(sorted((h.name, h.state) for h in nodes if h.state is not HostState.OK))
    protected: dict[str, list[VmRecord]] = {}
    always_lost: list[VmRecord] = []
    for vm in vms:
        if not is_protected(vm) or (vm.host not in names and vm.failover_from not in names):
            continue
        if vm.failover_from is None and vm.host in healthy_names:
            protected.setdefault(vm.host or "", []).append(vm)
        else:
            always_lost.append(vm)
    load = {h.name: sum(vm.memory_mb for vm in protected.get(h.name, ())) for h in healthy}
    # Heaviest first: the first failure set found to break the cluster hurts most.
    order = sorted(healthy, key=lambda h: (-load[h.name], h.name))
    k = min(max(0, reserve), len(order))
    total_sets = _combinations(len(order), k)
    bound = _Bound(order, protected, always_lost, max_vcpus_per_core) if prune else None
    planned = 0

    def plan(failed: Sequence[int]) -> Overcommit | None:
        nonlocal planned
        planned += 1
        down = {order[i].name for i in failed}
        survivors = PlacementSnapshot(tuple(h for h in order if h.name not in down))
        lost = list(always_lost) + [vm for i in failed for vm in protected.get(order[i].name, ())]
        result = plan_restarts(survivors, lost, 0.0, cluster=cluster, max_vcpus_per_core=max_vcpus_per_core)
        if not result.waiting:
            return None
        return _overcommit(sorted(down), gone, lost, result.waiting)

    def explore(chosen: list[int], start: int) -> Overcommit | None:
        more = k - len(chosen)
        if bound is not None and bound.branch_survives(chosen, start, more):
            return None
        if more == 0:
            return plan(chosen)
        for i in range(start, len(order) - more + 1):
            chosen.append(i)
            found = explore(chosen, i + 1)
            chosen.pop()
            if found is not None:
                return found
        return None

    overcommit = explore([], 0)
    return ReserveReport(
        cluster=cluster,
        reserve=reserve,
        healthy_nodes=tuple(sorted(healthy_names)),
        gone_nodes=gone,
        overcommit=overcommit,
        failure_sets=total_sets,
        planned=planned,
    )


def _overcommit(
    failed: list[str],
    gone: tuple[tuple[str, HostState], ...],
    lost: Sequence[VmRecord],
    waiting: Sequence[tuple[str, str]],
) -> Overcommit:
    names = {vm.id: vm.name for vm in lost}
    unplaced = sorted(names[vm_id] for vm_id, _ in waiting)
    why = "; ".join(
        f"{names[vm_id]}: {reason}" for vm_id, reason in sorted(waiting, key=lambda w: names[w[0]])
    )
    if failed:
        what = f"if {_and(failed)} failed"
    else:
        what = "with the nodes that are out already"
    out = f" ({_and([f'{n} is {s.value}' for n, s in gone])})" if gone else ""
    count = len(unplaced)
    detail = (
        f"{what}{out}, {count} highly available VM{'s' if count != 1 else ''} "
        f"could not restart on any other node: {why}"
    )
    return Overcommit(tuple(failed), tuple(unplaced), detail)


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
