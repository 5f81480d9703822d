"""A migration's phase as the manager records it, and the edges it may take.

The state (`queued`, `running`, `completed`, `failed`) says whether a migration is
over; the phase says where in its flow it is. For a live migration that is what the
source agent reports (the agent's own table is in `node_agent.core.migration`); for a
quick migration it is the step written before the manager acts on it, which is how a
restarted manager knows whether the source may still be saving or the destination may
already hold the VM. A failed migration keeps the phase it failed in.

Every phase change goes through `change_migration_phase`, which refuses an edge that
is not in the table and logs the change.
"""

from __future__ import annotations

import enum
import logging

from manager.core.errors import IllegalTransitionError

log = logging.getLogger(__name__)


class MigrationPhase(enum.Enum):
    """Where a migration is in its flow."""

    QUEUED = "queued"  # accepted; waiting for its job to begin (a live one, for a slot)
    PREPARING = "preparing"  # begun: a live one's destination checks the VM and reserves memory
    DISK_COPY = "disk_copy"  # the disk is copied while the guest runs (the files move too)
    PRE_COPY = "pre_copy"  # memory passes while the guest runs on the source
    BLACKOUT = "blackout"  # guest paused: last pages, device state, lease handoff, resume
    QUICK = "quick"  # a live migration that could not converge goes on as a quick one
    SAVING = "saving"  # the source saves the VM to storage
    SAVED = "saved"  # the source saved it; nobody else has it yet
    TAKING_OVER = "taking_over"  # the destination takes the VM over with a newer lease
    TAKEN_OVER = "taken_over"  # the destination holds it; the source's copy is fenced
    RESTORED = "restored"  # back on the destination to what it was doing before
    COMPLETED = "completed"  # the VM runs (or rests) where it was going
    FILE_COPY = "file_copy"  # a network transfer: the files of the VM at rest are copied


_P = MigrationPhase
# Live phases come from the source agent. A stream followed again (after it broke, or
# after a manager restart) starts from the agent's latest report, so the phases the
# manager did not see in between are skipped: every live phase may lead to any later one.
_UNSEEN = "the source reports it after phases the manager did not see (a stream followed again)"
_SETTLED = "the destination holds the VM with the new lease, as the agents' reports settle it"

MIGRATION_PHASE_TRANSITIONS: dict[MigrationPhase, dict[MigrationPhase, str]] = {
    _P.QUEUED: {
        _P.PREPARING: "its job began: a live migration got a slot on both hosts",
    },
    _P.PREPARING: {
        _P.DISK_COPY: "the destination accepted; the files move too",
        _P.PRE_COPY: "the destination accepted; the files stay on shared storage",
        _P.BLACKOUT: _UNSEEN,
        _P.COMPLETED: "the VM moved: the source reported it resumed, the files moved, or " + _SETTLED,
        _P.QUICK: "the live migration did not converge and its policy falls back to quick",
        _P.SAVING: "a quick migration saves the VM first: it may hold memory",
        _P.TAKING_OVER: "a quick migration or SAN transfer of a VM at rest: nothing to save",
        _P.FILE_COPY: "a network transfer: the source sends the files to the destination",
    },
    _P.FILE_COPY: {
        _P.COMPLETED: "the destination holds every byte, checked, and the VM",
    },
    _P.DISK_COPY: {
        _P.PRE_COPY: "the disk is copied up to the guest's current write",
        _P.BLACKOUT: _UNSEEN,
        _P.COMPLETED: _SETTLED,
    },
    _P.PRE_COPY: {
        _P.BLACKOUT: "what is left fits the blackout budget",
        _P.COMPLETED: _SETTLED,
        _P.QUICK: "the passes did not converge and the policy falls back to quick",
    },
    _P.BLACKOUT: {
        _P.COMPLETED: "the destination resumed the guest",
    },
    _P.QUICK: {
        _P.SAVING: "the VM may still hold memory: it is saved first",
        _P.TAKING_OVER: "the VM is at rest: nothing to save",
    },
    _P.SAVING: {
        _P.SAVED: "the source saved the VM",
    },
    _P.SAVED: {
        _P.TAKING_OVER: "the destination takes the saved VM over",
    },
    _P.TAKING_OVER: {
        _P.TAKEN_OVER: "the destination holds the VM with the newer lease",
    },
    _P.TAKEN_OVER: {
        _P.RESTORED: "the VM is back to what it was doing, or could not be restored",
        _P.COMPLETED: "a SAN transfer: the VM rests on the destination and the source let its copy go",
    },
    _P.RESTORED: {
        _P.COMPLETED: "the source let its fenced copy go",
        _P.TAKEN_OVER: "a restarted manager takes the quick migration forward again from its take-over",
    },
    _P.COMPLETED: {},
}


def change_migration_phase(migration: str, old: MigrationPhase, new: MigrationPhase) -> MigrationPhase:
    """The only way a migration's phase changes; returns `new`.

    Staying in a phase is no change (a live migration reports its phase with every
    pass). An edge not in the table raises IllegalTransitionError."""
    if new is old:
        return new
    reason = MIGRATION_PHASE_TRANSITIONS[old].get(new)
    if reason is None:
        raise IllegalTransitionError(
            f"migration of VM {migration} cannot go from phase {old.value} to {new.value}"
        )
    log.info("migration of VM %s: %s => %s (%s)", migration, old.value, new.value, reason)
    return new
