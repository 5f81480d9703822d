"""Restart planning after a host failure: which surviving node takes which HA VM.

Purely computational, no side effects: `plan_restarts` reads a placement snapshot and
the VMs to restart and returns a plan; the failover service performs it (lease bump,
take-over create, start) and persists each step. VMs restart in priority order (high,
medium, low) so that, when room is short, the important ones get it; `none` never
restarts automatically. Every VM the plan cannot place comes with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from manager.core.errors import ManagerError
from manager.core.failover_policy import owner_order
from manager.core.model import RESTART_RANK, RestartPriority, StorageKind, StorageLocation, VmRecord
from manager.core.placement import (
    HostCapacity,
    PlacementDecision,
    PlacementRequest,
    PlacementSnapshot,
    place,
)
from manager.core.states import HostState, VmState

# VM states that a host failure interrupts: the VM was meant to run, so it restarts.
RESTARTABLE_STATES = frozenset(
    {VmState.RUNNING, VmState.PAUSED, VmState.STARTING, VmState.SAVING, VmState.MIGRATING, VmState.UNKNOWN}
)


@dataclass(frozen=True)
class Restart:
    vm_id: str
    vm_name: str
    host: str
    storage: StorageLocation | None


@dataclass(frozen=True)
class RestartPlan:
    restarts: tuple[Restart, ...]  # in the order to perform them
    # (vm id, why no node can take it now): these wait for capacity.
    waiting: tuple[tuple[str, str], ...]
    # (vm id, why it is not restarted at all): priority `none`.
    skipped: tuple[tuple[str, str], ...]
    decided_at: float


def restart_order(vms: Sequence[VmRecord]) -> list[VmRecord]:
    """High before medium before low; by name within a priority, so plans are stable."""
    return sorted(vms, key=lambda vm: (RESTART_RANK.get(vm.restart_priority, 9), vm.name))


def placed_on(host: HostCapacity, vm: VmRecord) -> HostCapacity:
    """The host's room once `vm` runs there."""
    return replace(
        host,
        memory_free_mb=host.memory_free_mb - vm.memory_mb,
        running_vcpus=host.running_vcpus + vm.cpus,
    )


def without_self(host: HostCapacity, vm: VmRecord) -> HostCapacity:
    """The VM's own files already are on the shared volume: they do not block it."""
    if not any(vm.name in s.used_by for s in host.storage):
        return host
    rooms = tuple(replace(s, used_by=tuple(u for u in s.used_by if u != vm.name)) for s in host.storage)
    return replace(host, storage=rooms)


def restart_request(vm: VmRecord, max_vcpus_per_core: int) -> PlacementRequest:
    """What placement is asked when `vm` restarts on another node."""
    return PlacementRequest(
        vm_name=vm.name,
        memory_mb=vm.memory_mb,
        cpus=vm.cpus,
        # The files exist on shared storage already: the target needs no new room.
        disk_gb=0,
        highly_available=True,
        storage=vm.storage if vm.storage and vm.storage.kind is not StorageKind.LOCAL_DISK else None,
        networks=vm.networks,
        passthrough=vm.passthrough_disks,
        passthrough_home=vm.host,
        max_vcpus_per_core=max_vcpus_per_core,
    )


def plan_restarts(
    snapshot: PlacementSnapshot,
    vms_to_restart: Sequence[VmRecord],
    now: float,
    *,
    cluster: str | None = None,
    failed_host: str | None = None,
    avoid: Mapping[str, frozenset[str]] | None = None,
    max_vcpus_per_core: int = 8,
) -> RestartPlan:
    """Choose a node of `cluster` (never `failed_host`) for each VM, highest priority first.

    The snapshot is updated after each choice, so two VMs never count the same free
    memory. `avoid` names, per VM id, nodes on which restarts already failed too often.
    `cluster` defaults to each VM's own host's cluster as the snapshot shows it.
    """
    hosts = {h.name: h for h in snapshot.hosts}
    restarts: list[Restart] = []
    waiting: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for vm in restart_order(vms_to_restart):
        if vm.restart_priority is RestartPriority.NONE:
            skipped.append((vm.id, "restart priority is none: it is never restarted automatically"))
            continue
        home = cluster
        if home is None:
            source = hosts.get(vm.host or "")
            home = source.cluster if source is not None else None
        if home is None:
            waiting.append((vm.id, "its host is not a node of a cluster"))
            continue
        excluded = (avoid or {}).get(vm.id, frozenset())
        # The failed host is no candidate while it is down; once it is back in service
        # (ok again, its old copies gone) it is a node like any other.
        down = {n for n in (failed_host, vm.host) if n in hosts and hosts[n].state is not HostState.OK}
        nodes = [
            name
            for name, h in sorted(hosts.items())
            if h.cluster == home and name not in down and name not in excluded
        ]
        request = restart_request(vm, max_vcpus_per_core)
        decision, why = place_by_owners(hosts, vm, nodes, request)
        if decision is None and not why:
            why = f"no other node of cluster {home} can be tried"
        if decision is None or decision.host is None:
            waiting.append((vm.id, why))
            continue
        hosts[decision.host] = placed_on(hosts[decision.host], vm)
        restarts.append(Restart(vm.id, vm.name, decision.host, decision.storage))
    return RestartPlan(tuple(restarts), tuple(waiting), tuple(skipped), now)


def place_by_owners(
    hosts: Mapping[str, HostCapacity],
    vm: VmRecord,
    nodes: Sequence[str],
    request: PlacementRequest,
) -> tuple[PlacementDecision | None, str]:
    """Where an HA VM goes among `nodes`: its first preferred owner placement accepts, in
    order; else the best-rated other possible owner; never a node that is not one.

    Returns (decision, "") or (None, why no node fits: every refusal; empty when there
    was no node to try at all).
    """
    preferred, others = owner_order(vm.policy, nodes)
    if not preferred and not others:
        if vm.policy.possible_owners and nodes:
            owners = ", ".join(vm.policy.possible_owners)
            return None, f"none of its possible owners ({owners}) can be tried"
        return None, ""
    refusals: list[str] = []
    for group in [[name] for name in preferred] + [list(others)]:
        if not group:
            continue
        try:
            decision = place(PlacementSnapshot(tuple(without_self(hosts[n], vm) for n in group)), request)
        except ManagerError as error:  # e.g. no node of the group sees the VM's volume
            refusals.append(error.message)
            continue
        if decision.host is not None:
            return decision, ""
        refusals.extend(f"{h} {why}" for h, why in decision.rejections)
    return None, "; ".join(refusals)
