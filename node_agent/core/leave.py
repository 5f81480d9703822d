"""A host leaving its cluster on purpose: when it may, and what it does to its guests.

A host that is shut down (by an operator, or by the manager once it moved the VMs
it could) shuts its remaining guests down cleanly first, as a Windows Server host
does at shutdown, and then says it left on purpose, so that nobody mistakes the
silence for a failure. These are the decisions; the app carries them out.
"""

from __future__ import annotations

from collections.abc import Iterable

from node_agent.core.errors import FailedPrecondition, InvalidArgument
from node_agent.core.power import Operation, PowerState

# A reason is logged and published on the broker: one line, kept short.
MAX_REASON_CHARS = 200

# States in which a guest runs or is frozen in memory: something to stop.
GUEST_ACTIVE = frozenset({PowerState.RUNNING, PowerState.PAUSED})


def check_leave_reason(reason: str) -> str:
    """The reason a Shutdown call gives, checked; raises InvalidArgument naming the field."""
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidArgument(f"reason: must be at most {MAX_REASON_CHARS} characters, got {len(reason)}")
    if not reason.isprintable():
        raise InvalidArgument("reason: must be one line of printable characters")
    return reason.strip()


def check_can_leave(host: str, migrating: Iterable[str]) -> None:
    """A host may not leave in the middle of a live migration: the VM would be lost
    between the two hosts. Purely computational; `migrating` names the VMs."""
    names = sorted(migrating)
    if names:
        raise FailedPrecondition(
            f"host {host} cannot shut down while {', '.join(names)} "
            f"{'is' if len(names) == 1 else 'are'} being live-migrated; wait until the migration has ended"
        )


def clean_shutdown_actions(vms: Iterable[tuple[str, PowerState]]) -> list[tuple[str, Operation]]:
    """The operation that stops each guest (by VM id) the way a host shutdown does.

    Purely computational. Running guests shut down cleanly; a paused guest cannot
    shut itself down, so it is turned off; VMs between states are left to finish
    their change, and VMs at rest have nothing to stop.
    """
    actions: list[tuple[str, Operation]] = []
    for vm_id, state in sorted(vms):
        if state is PowerState.RUNNING:
            actions.append((vm_id, Operation.SHUTDOWN))
        elif state is PowerState.PAUSED:
            actions.append((vm_id, Operation.TURN_OFF))
    return actions
