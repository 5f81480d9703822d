"""Which VMs someone works on right now: a job, a migration or a failover restart.

One object, shared by the services that claim VMs and read by the refresh, which leaves
a claimed VM's record to its claimant. It replaces sets that services reached into on
each other and a callback the HA service assigned to the refresh after construction.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager


class Claim(enum.Enum):
    JOB = "job"  # a VM job (create, start, stop, delete, ...) holds the VM
    MIGRATION = "migration"  # a migration moves it
    RESTART = "restart"  # a failover restarts it now


class VmClaims:
    def __init__(self) -> None:
        self._held: dict[Claim, set[str]] = {claim: set() for claim in Claim}

    def claim(self, vm_id: str, by: Claim) -> None:
        self._held[by].add(vm_id)

    def release(self, vm_id: str, by: Claim) -> None:
        self._held[by].discard(vm_id)

    @contextmanager
    def held(self, vm_id: str, by: Claim) -> Iterator[None]:
        self.claim(vm_id, by)
        try:
            yield
        finally:
            self.release(vm_id, by)

    def holds(self, vm_id: str, by: Claim) -> bool:
        return vm_id in self._held[by]

    def claimed(self, by: Claim | None = None) -> set[str]:
        """The VMs claimed (by one kind of claimant, or by any)."""
        if by is not None:
            return set(self._held[by])
        return set().union(*self._held.values())
