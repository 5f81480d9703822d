"""Duplicate copies: which copy of a VM running on two hosts at once is kept.

A VM must never run on two hosts. Fencing makes a copy that lost its lease stop by
itself, but a copy started through an agent's own API on files of its own holds a
lease nobody took away, and would run beside the real one forever. The refresh
service keeps each host's latest report; `find_duplicates` reads those reports and
says, for each VM active on more than one host, which copy stays and which ones the
resolver stops, and why. `held_elsewhere` keeps a copy beside the VM from taking its
record before it runs (the tie would then keep the wrong copy). Purely
computational: the resolver does the agent calls.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from manager.core.model import Incident, IncidentKind, ReportedVm, VmRecord
from manager.core.states import VmState

# A copy in one of these states holds the VM's memory and may write its disk.
ACTIVE_STATES = frozenset({VmState.RUNNING, VmState.PAUSED, VmState.STARTING})

# What a host's report says of the VMs it runs: {vm id: lease generation}.
HostCopies = Mapping[str, int]


class KeepReason(Enum):
    """Why one copy of a duplicated VM is the one kept."""

    NEWEST_GENERATION = "newest_generation"  # it holds a newer lease than every other running copy
    RECORDED_HOST = "recorded_host"  # a tie on the newest lease: the manager records the VM on its host
    FIRST_HOST = "first_host"  # a tie, recorded on none of them: the first host by name, every time


@dataclass(frozen=True)
class Duplicate:
    """One VM active on several hosts: the copy to keep and the copies to stop."""

    vm_id: str
    keep: str
    stop: tuple[str, ...]  # sorted by name
    reason: KeepReason
    # The lease generation each copy holds: ((host, generation), ...), the kept one first.
    generations: tuple[tuple[str, int], ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.keep, *self.stop)


def active_copies(reported: Iterable[ReportedVm]) -> dict[str, int]:
    """The copies a host's report shows active, as {vm id: lease generation}.

    A copy arriving or leaving by migration is not counted: the migration hands the
    VM over with a newer lease, and the manager may not know of it (one the agents
    finish after a manager restart).
    """
    return {
        vm.id: vm.lease_generation for vm in reported if vm.state in ACTIVE_STATES and not vm.migration_id
    }


def find_duplicates(
    reports: Mapping[str, HostCopies],
    recorded: Mapping[str, str | None],
    busy: Collection[str] = (),
    involving: str | None = None,
) -> tuple[Duplicate, ...]:
    """Every VM active on more than one host of `reports` ({host: {vm id: generation}}).

    The copy holding the newest lease generation is kept: storage fences every older
    one, so it is the only copy whose writes count. On a tie, the copy on the host the
    manager records the VM on (`recorded`: {vm id: host}) is kept, else the first by
    name, so that the same copy wins at every refresh. VMs in `busy` (a job or a
    failover works on them) are left alone. With `involving`, only the VMs that host
    runs a copy of are looked at.
    """
    copies: dict[str, dict[str, int]] = {}
    for host, vms in reports.items():
        for vm_id, generation in vms.items():
            copies.setdefault(vm_id, {})[host] = generation
    found: list[Duplicate] = []
    for vm_id in sorted(copies):
        held = copies[vm_id]
        if len(held) < 2 or vm_id in busy or (involving is not None and involving not in held):
            continue
        newest = max(held.values())
        leaders = sorted(host for host, generation in held.items() if generation == newest)
        home = recorded.get(vm_id)
        if len(leaders) == 1:
            keep, reason = leaders[0], KeepReason.NEWEST_GENERATION
        elif home in leaders:
            keep, reason = home, KeepReason.RECORDED_HOST
        else:
            keep, reason = leaders[0], KeepReason.FIRST_HOST
        stop = tuple(sorted(host for host in held if host != keep))
        generations = tuple((host, held[host]) for host in (keep, *stop))
        found.append(Duplicate(vm_id, keep, stop, reason, generations))
    return tuple(found)


def held_elsewhere(
    host: str,
    reported: Iterable[ReportedVm],
    records: Mapping[str, VmRecord],
    reports: Mapping[str, HostCopies],
    unconfirmed: Collection[str] = (),
) -> set[str]:
    """The VMs `host` reports whose record its report must not move onto it.

    Every legitimate move of a VM (migration, failover, take-over) gives it a newer
    lease generation, so a copy here that is not newer than the record must not take
    it while the recorded host may still run the VM: when that host's latest report
    runs it with a lease at least as new (a copy at rest created beside it, the first
    step of a duplicate, or a running one the resolver stops), or when it holds the
    same lease and the recorded host has not reported since a job last wrote the
    record (`unconfirmed`: a VM just created there, before that host's next report).
    Moving the record would make the next tie between the copies keep the wrong one.
    A copy older than the record is left to reconcile, which calls it stale.
    """
    found: set[str] = set()
    for vm in reported:
        record = records.get(vm.id)
        if record is None or record.host is None or record.host == host:
            continue
        if vm.lease_generation < record.lease_generation:
            continue
        there = reports.get(record.host, {}).get(vm.id)
        if there is not None and there >= vm.lease_generation:
            found.add(vm.id)
        elif vm.lease_generation == record.lease_generation and vm.id in unconfirmed:
            found.add(vm.id)
    return found


def describe(vm_name: str, duplicate: Duplicate, stopped: Collection[str]) -> str:
    """The sentence of the incident: where the VM ran, which copy stayed and why."""
    held = dict(duplicate.generations)
    gone = [host for host in duplicate.stop if host in stopped]
    others = ", ".join(f"{host} (lease generation {held[host]})" for host in gone)
    why = {
        KeepReason.NEWEST_GENERATION: "it holds the newest lease",
        KeepReason.RECORDED_HOST: "the copies hold the same lease generation and the VM is recorded there",
        KeepReason.FIRST_HOST: "the copies hold the same lease generation and the VM is recorded on neither",
    }[duplicate.reason]
    return (
        f"VM {vm_name} ran on {duplicate.keep} (lease generation {held[duplicate.keep]}) and on {others}: "
        f"kept on {duplicate.keep} because {why}; the copy on {', '.join(gone)} was turned off"
    )


def incident_for(vm_name: str, duplicate: Duplicate, stopped: Collection[str], now: datetime) -> Incident:
    """The incident a resolved duplicate leaves on the VM: the kept host first."""
    return Incident(
        kind=IncidentKind.DUPLICATE_COPY,
        time=now,
        hosts=(duplicate.keep, *(host for host in duplicate.stop if host in stopped)),
        detail=describe(vm_name, duplicate, stopped),
    )
