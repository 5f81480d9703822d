"""The manager's state machines: host health, VM power state, jobs and migrations.

Each set of states is an enum whose members carry a one-line meaning, plus one table
of legal transitions. Every change goes through the one setter of its machine, which
refuses an edge the table does not list and logs `old => new`, so that an impossible
history (a job completing twice, a stopped VM pausing) is a loud error, not a quiet
corruption of the store.
"""

from __future__ import annotations

import logging
from enum import Enum

from manager.core.errors import IllegalTransitionError

log = logging.getLogger(__name__)


class HostState(Enum):
    OK = "ok"  # responding; VMs can be placed on it
    SUSPECT = "suspect"  # heartbeats missed; a probe is confirming
    ISOLATED = "isolated"  # heartbeats lost but the management path answers: no failover
    NOT_RESPONDING = "not_responding"  # neither heartbeats nor the management path answer
    FENCING = "fencing"  # its VMs are being taken away from it
    FENCED = "fenced"  # its VMs can no longer run or write there
    MAINTENANCE = "maintenance"  # taken out of placement by an operator
    STOPPING = "stopping"  # shut down by an operator: its VMs are leaving it
    STOPPED = "stopped"  # shut down on purpose; its VMs were moved or stopped first


HOST_TRANSITIONS: dict[HostState, frozenset[HostState]] = {
    # Heartbeats stop or a last will arrives (suspect); without a broker a failed
    # refresh is the only sign (not_responding); an operator takes it (maintenance).
    # An operator shuts it down (stopping), or the agent announces it leaves (stopped).
    HostState.OK: frozenset(
        {
            HostState.SUSPECT,
            HostState.NOT_RESPONDING,
            HostState.MAINTENANCE,
            HostState.STOPPING,
            HostState.STOPPED,
        }
    ),
    # The probe decides: beats back (ok), management answers (isolated), both silent;
    # or the agent announces it leaves.
    HostState.SUSPECT: frozenset(
        {HostState.OK, HostState.ISOLATED, HostState.NOT_RESPONDING, HostState.STOPPED}
    ),
    # Beats resume (ok), or the management path is lost too (not_responding).
    HostState.ISOLATED: frozenset(
        {HostState.OK, HostState.SUSPECT, HostState.NOT_RESPONDING, HostState.STOPPED}
    ),
    # A silent host either comes back or is fenced before its VMs restart elsewhere; a
    # late announcement that it left on purpose spares it the fencing.
    HostState.NOT_RESPONDING: frozenset(
        {HostState.OK, HostState.FENCING, HostState.MAINTENANCE, HostState.STOPPED}
    ),
    # Only once every HA VM of it is restarted, failed or waiting for capacity.
    HostState.FENCING: frozenset({HostState.FENCED}),
    # A fenced host rejoins only once it answers again without stale copies of VMs
    # that moved, or an operator takes it.
    HostState.FENCED: frozenset({HostState.OK, HostState.MAINTENANCE}),
    # Back from maintenance when it answers; a refresh failure while in it; shut down.
    HostState.MAINTENANCE: frozenset({HostState.OK, HostState.NOT_RESPONDING, HostState.STOPPING}),
    # Its VMs left and the agent was told to go (stopped); a step failed and it stays
    # in service (ok); it died on the way (not_responding).
    HostState.STOPPING: frozenset({HostState.STOPPED, HostState.OK, HostState.NOT_RESPONDING}),
    # Started again and answering (ok); an operator takes it into maintenance.
    HostState.STOPPED: frozenset({HostState.OK, HostState.MAINTENANCE}),
}


class ClusterState(Enum):
    OK = "ok"  # the cluster can absorb the loss of `reserve` nodes
    OVERCOMMITTED = "overcommitted"  # losing `reserve` nodes would leave VMs unable to restart


class VmState(Enum):
    CREATING = "creating"  # being created; its host may not have it yet
    STOPPED = "stopped"  # not running; no memory held
    STARTING = "starting"  # being powered on
    RUNNING = "running"  # guest running; memory held
    PAUSED = "paused"  # guest frozen in memory; memory held
    SAVING = "saving"  # memory being written to the saved-state file
    SAVED = "saved"  # memory image on storage; no memory held
    MIGRATING = "migrating"  # moving between hosts
    FAILED = "failed"  # could not be started or recovered; see the reason
    WAITING = "waiting"  # highly available, to be restarted once a node can take it
    UNKNOWN = "unknown"  # its host does not answer, so its state is unknown
    MISSING = "missing"  # its host answers but no longer reports it


_ALL_VM_STATES = frozenset(VmState)

VM_TRANSITIONS: dict[VmState, frozenset[VmState]] = {
    # The host answers the create (stopped) or, after a manager restart, reports it in
    # any state; a record whose host never got the VM is deleted, not moved.
    VmState.CREATING: _ALL_VM_STATES - {VmState.CREATING},
    VmState.STOPPED: frozenset(
        {VmState.STARTING, VmState.RUNNING, VmState.FAILED, VmState.UNKNOWN, VmState.MISSING}
    ),
    # A restore that the host aborts keeps the saved state.
    VmState.STARTING: frozenset(
        {
            VmState.RUNNING,
            VmState.STOPPED,
            VmState.SAVED,
            VmState.FAILED,
            VmState.UNKNOWN,
            VmState.MISSING,
        }
    ),
    VmState.RUNNING: frozenset(
        {
            VmState.STOPPED,
            VmState.PAUSED,
            VmState.SAVING,
            VmState.MIGRATING,
            VmState.FAILED,
            VmState.UNKNOWN,
            VmState.MISSING,
        }
    ),
    VmState.PAUSED: frozenset(
        {
            VmState.RUNNING,
            VmState.STOPPED,
            VmState.SAVING,
            VmState.MIGRATING,
            VmState.FAILED,
            VmState.UNKNOWN,
            VmState.MISSING,
        }
    ),
    # A save that fails leaves the guest where it was: running (or paused).
    VmState.SAVING: frozenset(
        {
            VmState.SAVED,
            VmState.RUNNING,
            VmState.PAUSED,
            VmState.FAILED,
            VmState.UNKNOWN,
            VmState.MISSING,
        }
    ),
    VmState.SAVED: frozenset(
        {
            VmState.STARTING,
            VmState.RUNNING,
            VmState.STOPPED,
            VmState.FAILED,
            VmState.UNKNOWN,
            VmState.MISSING,
        }
    ),
    VmState.MIGRATING: frozenset(
        {VmState.RUNNING, VmState.PAUSED, VmState.FAILED, VmState.UNKNOWN, VmState.MISSING}
    ),
    # Repaired (stopped, started) or accepted as reported; a failover tried again waits.
    VmState.FAILED: frozenset(
        {
            VmState.STOPPED,
            VmState.SAVED,
            VmState.STARTING,
            VmState.RUNNING,
            VmState.WAITING,
            VmState.UNKNOWN,
            VmState.MISSING,
        }
    ),
    # A node takes it (starting, running), or the failover gives up (failed), or an
    # operator stops waiting (stopped).
    VmState.WAITING: frozenset(
        {VmState.STARTING, VmState.RUNNING, VmState.FAILED, VmState.STOPPED, VmState.UNKNOWN}
    ),
    # Once its host answers again (or reports it again) the VM may be in any state.
    VmState.UNKNOWN: _ALL_VM_STATES - {VmState.UNKNOWN, VmState.CREATING},
    VmState.MISSING: _ALL_VM_STATES - {VmState.MISSING, VmState.CREATING},
}


class JobState(Enum):
    RUNNING = "running"  # its task is working on it
    COMPLETED = "completed"  # it did what it was asked
    FAILED = "failed"  # it stopped; the error says why


JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
}


class MigrationState(Enum):
    QUEUED = "queued"  # waiting for a live-migration slot on its source or destination
    RUNNING = "running"  # the VM is on its way
    COMPLETED = "completed"  # the VM runs (or rests) on the destination
    FAILED = "failed"  # the VM stayed where it was, or a failover took it; see the error


MIGRATION_TRANSITIONS: dict[MigrationState, frozenset[MigrationState]] = {
    # A slot frees up (running), or the manager restarts / the VM goes first (failed).
    MigrationState.QUEUED: frozenset({MigrationState.RUNNING, MigrationState.FAILED}),
    # The destination resumes the VM (completed) or anything before that fails.
    MigrationState.RUNNING: frozenset({MigrationState.COMPLETED, MigrationState.FAILED}),
    MigrationState.COMPLETED: frozenset(),
    MigrationState.FAILED: frozenset(),
}


def _change(kind: str, subject: str, old: Enum, new: Enum, table: dict) -> None:  # type: ignore[type-arg]
    if new is old:
        return
    if new not in table[old]:
        raise IllegalTransitionError(f"{kind} {subject} cannot go from {old.value} to {new.value}")
    log.info("%s %s: %s => %s", kind, subject, old.value, new.value)


def change_host_state(host: str, old: HostState, new: HostState) -> HostState:
    """The only way a host's state changes; raises IllegalTransitionError."""
    _change("host", host, old, new, HOST_TRANSITIONS)
    return new


def change_vm_state(vm: str, old: VmState, new: VmState) -> VmState:
    """The only way a VM's recorded state changes; raises IllegalTransitionError."""
    _change("VM", vm, old, new, VM_TRANSITIONS)
    return new


def change_job_state(job: str, old: JobState, new: JobState) -> JobState:
    """The only way a job's state changes; raises IllegalTransitionError."""
    _change("job", job, old, new, JOB_TRANSITIONS)
    return new


def change_migration_state(migration: str, old: MigrationState, new: MigrationState) -> MigrationState:
    """The only way a migration's state changes; raises IllegalTransitionError."""
    _change("migration", migration, old, new, MIGRATION_TRANSITIONS)
    return new


def observed_vm_state_path(old: VmState, new: VmState) -> tuple[VmState, ...]:
    """Legal steps from `old` to a state an agent reported.

    Only for what an agent observed, never for the manager's own actions (those use
    `change_vm_state`, which refuses an illegal edge). An agent may report a state the
    table cannot reach in one step (the VM changed twice between two refreshes).
    Through `unknown`, every state reaches every other, which records honestly that
    the manager did not see what happened in between.
    """
    if new is old:
        return ()
    if new in VM_TRANSITIONS[old]:
        return (new,)
    return (VmState.UNKNOWN, new)
