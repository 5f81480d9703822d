"""VM power states, the table of legal changes, and what each operation means.

Every change of a VM's power state goes through `transition`, so an impossible edge
is caught where it happens and every change is logged the same way (`old => new`).
`plan_operation` turns a requested operation into the action the app performs, or a
sentence telling the caller why the VM's state does not allow it.
"""

from __future__ import annotations

import enum
import logging

from node_agent.core.errors import FailedPrecondition

log = logging.getLogger(__name__)


class PowerState(enum.Enum):
    """Power state of a VM on this host."""

    STOPPED = "stopped"  # not running; no memory held
    STARTING = "starting"  # being powered on or restored; memory held
    RUNNING = "running"  # guest runs: dirties memory, writes its journal
    PAUSED = "paused"  # guest frozen in memory; memory held
    SAVING = "saving"  # memory being written to memory.vsv; memory held
    SAVED = "saved"  # memory image on storage; no memory held
    FAILED = "failed"  # could not be started or recovered; see the reason
    # Arriving by live migration: memory reserved, pages coming in, guest not yet running.
    MIGRATING = "migrating"


# Each legal edge, with why it exists.
TRANSITIONS: dict[PowerState, dict[PowerState, str]] = {
    PowerState.STOPPED: {
        PowerState.STARTING: "power on",
        PowerState.FAILED: "recovery found the VM unable to start",
    },
    PowerState.STARTING: {
        PowerState.RUNNING: "guest booted or memory restored",
        PowerState.STOPPED: "power on aborted",
        PowerState.FAILED: "could not start, or the saved state could not be restored",
    },
    PowerState.RUNNING: {
        PowerState.PAUSED: "pause",
        PowerState.SAVING: "save",
        PowerState.STOPPED: "shut down or turned off",
        PowerState.FAILED: "guest crashed",
    },
    PowerState.PAUSED: {
        PowerState.RUNNING: "resume",
        PowerState.SAVING: "save",
        PowerState.STOPPED: "turned off",
    },
    PowerState.SAVING: {
        PowerState.SAVED: "memory image written",
        PowerState.RUNNING: "save failed; the guest keeps running",
        PowerState.PAUSED: "save failed; the guest stays paused",
        PowerState.FAILED: "save failed",
    },
    PowerState.SAVED: {
        PowerState.STARTING: "restore",
    },
    PowerState.FAILED: {
        PowerState.STOPPED: "turned off to clear the failure",
        PowerState.STARTING: "start again",
    },
    # A skeleton that is given up is removed, not stopped: it never ran here.
    PowerState.MIGRATING: {
        PowerState.RUNNING: "live migration resumed the guest here",
        PowerState.FAILED: "the lease came here but the guest could not be resumed",
    },
}

# States in which the VM holds its memory on the host.
HOLDS_MEMORY = frozenset(
    {PowerState.STARTING, PowerState.RUNNING, PowerState.PAUSED, PowerState.SAVING, PowerState.MIGRATING}
)

# States that mean "it was running when the service stopped": restarted at agent start.
# MIGRATING is on record only once a live migration's lease came to this host.
RESTART_ON_RECOVERY = frozenset(
    {PowerState.STARTING, PowerState.RUNNING, PowerState.PAUSED, PowerState.SAVING, PowerState.MIGRATING}
)


class IllegalTransition(FailedPrecondition):
    """A power-state change that the table does not allow."""


def transition(vm_label: str, old: PowerState, new: PowerState) -> PowerState:
    """Check one power-state change against the table and log it; return `new`."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"VM {vm_label} cannot go from {old.value} to {new.value}")
    log.info("VM %s: %s => %s", vm_label, old.value, new.value)
    return new


class Operation(enum.Enum):
    """Power operations a caller may request."""

    START = "start"
    SHUTDOWN = "shutdown"
    TURN_OFF = "turn_off"
    SAVE = "save"
    RESTORE = "restore"
    PAUSE = "pause"
    RESUME = "resume"


class Action(enum.Enum):
    """What the app does to carry out an operation."""

    POWER_ON = "power_on"  # fresh boot: memory all zero, journal continues
    RESTORE = "restore"  # memory read back from memory.vsv
    SHUTDOWN = "shutdown"  # let the guest finish, then stop
    TURN_OFF = "turn_off"  # stop at once
    SAVE = "save"  # write memory.vsv, then release memory
    PAUSE = "pause"
    RESUME = "resume"


_PARTICIPLE = {
    Operation.START: "started",
    Operation.SHUTDOWN: "shut down",
    Operation.TURN_OFF: "turned off",
    Operation.SAVE: "saved",
    Operation.RESTORE: "restored",
    Operation.PAUSE: "paused",
    Operation.RESUME: "resumed",
}

# For each operation, the action it means in each state that allows it.
_PLANS: dict[Operation, dict[PowerState, Action]] = {
    Operation.START: {
        PowerState.STOPPED: Action.POWER_ON,
        PowerState.FAILED: Action.POWER_ON,
        PowerState.SAVED: Action.RESTORE,
    },
    Operation.RESTORE: {PowerState.SAVED: Action.RESTORE},
    Operation.SHUTDOWN: {PowerState.RUNNING: Action.SHUTDOWN},
    Operation.TURN_OFF: {
        PowerState.RUNNING: Action.TURN_OFF,
        PowerState.PAUSED: Action.TURN_OFF,
        PowerState.FAILED: Action.TURN_OFF,
    },
    Operation.SAVE: {PowerState.RUNNING: Action.SAVE, PowerState.PAUSED: Action.SAVE},
    Operation.PAUSE: {PowerState.RUNNING: Action.PAUSE},
    Operation.RESUME: {PowerState.PAUSED: Action.RESUME},
}

_HINTS = {
    (Operation.RESTORE, PowerState.STOPPED): " (it has no saved state)",
    (Operation.SHUTDOWN, PowerState.PAUSED): " (resume it first, or turn it off)",
    (Operation.PAUSE, PowerState.PAUSED): " again",
}


def plan_operation(vm_label: str, state: PowerState, operation: Operation) -> Action:
    """Return the action that carries out `operation` from `state`.

    Purely computational. Raises FailedPrecondition with a sentence such as
    "VM web1 is stopped; it cannot be paused" when the state does not allow it.
    """
    action = _PLANS[operation].get(state)
    if action is None:
        hint = _HINTS.get((operation, state), "")
        raise FailedPrecondition(
            f"VM {vm_label} is {state.value}; it cannot be {_PARTICIPLE[operation]}{hint}"
        )
    return action


# States in which nothing of the VM runs, so its files may go.
DELETABLE = frozenset({PowerState.STOPPED, PowerState.SAVED, PowerState.FAILED})


def check_deletable(vm_label: str, state: PowerState) -> None:
    """Only a stopped, saved or failed VM may be deleted: nothing of it runs any more."""
    if state not in DELETABLE:
        raise FailedPrecondition(
            f"VM {vm_label} is {state.value}; it cannot be deleted (turn it off or save it first)"
        )
