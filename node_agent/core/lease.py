"""Storage leases: who may run a VM and write its disk, decided by a generation number.

Each VM directory holds `lease.json` = {"generation": n, "owner": host}. Whoever takes
a VM away from a host (failover, quick migration) writes a higher generation; every
copy knows the generation it holds and checks the lease before each journal write,
so the copy left behind stops itself at its next write instead of corrupting the
disk. These are the decisions; reading and writing the file is the adapters' job.
"""

from __future__ import annotations

from dataclasses import dataclass

from node_agent.core.errors import FailedPrecondition, InvalidArgument
from node_agent.core.power import HOLDS_MEMORY, PowerState

# What a newly created VM holds.
FIRST_GENERATION = 1


@dataclass(frozen=True)
class Lease:
    generation: int
    owner: str


class Fenced(FailedPrecondition):
    """This copy of a VM lost its lease: it may neither write nor run."""

    def __init__(self, vm_label: str, lease: Lease) -> None:
        super().__init__(
            f"VM {vm_label} fenced: the lease moved to {lease.owner} (generation {lease.generation})"
        )
        self.lease = lease


def is_fenced(host: str, held_generation: int, on_storage: Lease | None) -> bool:
    """Whether a copy holding `held_generation` on `host` lost the VM.

    Purely computational. A newer generation fences the copy, and so does the same
    generation held by another host (two hosts must never hold one generation). A
    missing lease fences nothing: there is nobody to hand the VM to.
    """
    if on_storage is None:
        return False
    if on_storage.generation > held_generation:
        return True
    return on_storage.generation == held_generation and on_storage.owner != host


def is_stale_copy(host: str, state: PowerState, held_generation: int, on_storage: Lease | None) -> bool:
    """Whether this host's copy of a VM is a stale one to let go of.

    Purely computational. A copy at rest (stopped, saved or failed: no guest, no
    memory) is stale once another host holds the VM's lease at a newer generation:
    the cluster restarted the VM there, typically while this host was isolated. A
    copy whose guest is in memory finds out by itself, at its next lease check. A
    copy that holds the lease, or one whose lease is missing, is kept.
    """
    if state in HOLDS_MEMORY or on_storage is None:
        return False
    return on_storage.owner != host and on_storage.generation > held_generation


def check_write(vm_label: str, host: str, held_generation: int, on_storage: Lease | None) -> None:
    """Raise Fenced when a guest write of this copy must be refused."""
    if on_storage is not None and is_fenced(host, held_generation, on_storage):
        raise Fenced(vm_label, on_storage)


def take_over_lease(vm_label: str, host: str, requested: int, on_storage: Lease | None) -> Lease:
    """The lease a host writes to take a VM over, or why it may not.

    Purely computational. The requested generation must be newer than the one on
    storage, so that the previous owner's copy is fenced by it.
    """
    if requested <= 0:
        raise InvalidArgument(
            f"lease_generation: must be positive to take over VM {vm_label}, got {requested}"
        )
    held = on_storage.generation if on_storage is not None else 0
    if requested <= held:
        raise FailedPrecondition(
            f"cannot take over VM {vm_label}: stale lease generation {requested}: storage holds {held}"
        )
    return Lease(generation=requested, owner=host)


def hand_over_lease(
    vm_label: str, host: str, held_generation: int, new: Lease, on_storage: Lease | None
) -> Lease:
    """The lease a source writes to hand a VM to a live migration's destination, or why not.

    Purely computational: the compare half of a compare-and-swap. The lease on
    storage must still be exactly this copy's; if a failover took the VM meanwhile,
    writing over its newer lease would move the generation backwards and let two
    copies run. Raises Fenced when another host holds the VM now.
    """
    if on_storage is not None and is_fenced(host, held_generation, on_storage):
        raise Fenced(vm_label, on_storage)
    if on_storage != Lease(held_generation, host):
        found = "no lease" if on_storage is None else f"generation {on_storage.generation}"
        raise FailedPrecondition(
            f"cannot hand VM {vm_label} over: its storage holds {found}, not generation "
            f"{held_generation} of host {host}"
        )
    if new.generation <= held_generation:
        raise FailedPrecondition(
            f"cannot hand VM {vm_label} over: stale lease generation {new.generation}: "
            f"this copy holds {held_generation}"
        )
    return new


def recovery_verdict(host: str, held_generation: int | None, on_storage: Lease | None) -> str | None:
    """Why a VM found in this host's registry at start must be forgotten, or None to keep it.

    Purely computational. A host that was fenced while it was away must not run its
    old copies: the lease tells it whether the VM is still its own. An unknown held
    generation (a registry written before leases) trusts the lease's owner alone.
    """
    if on_storage is None:
        return None
    if on_storage.owner != host:
        return f"the lease is held by {on_storage.owner} (generation {on_storage.generation})"
    if held_generation is not None and on_storage.generation > held_generation:
        return f"the lease moved to generation {on_storage.generation}; this host held {held_generation}"
    return None
