"""Which power operations a VM's recorded state allows, and what they lead to.

Purely computational: the VM service checks a request here before it creates a job,
and again when the job gets the VM's lock (another job may have changed it meanwhile).
"""

from __future__ import annotations

from manager.core.errors import FailedPreconditionError
from manager.core.model import VmOperation, VmRecord
from manager.core.states import VmState

S = VmState

ALLOWED_FROM: dict[VmOperation, frozenset[VmState]] = {
    VmOperation.START: frozenset({S.STOPPED, S.SAVED, S.FAILED}),
    VmOperation.SHUTDOWN: frozenset({S.RUNNING}),
    VmOperation.TURN_OFF: frozenset({S.RUNNING, S.PAUSED, S.STARTING, S.FAILED}),
    VmOperation.SAVE: frozenset({S.RUNNING, S.PAUSED}),
    VmOperation.RESTORE: frozenset({S.SAVED}),
    VmOperation.PAUSE: frozenset({S.RUNNING}),
    VmOperation.RESUME: frozenset({S.PAUSED}),
}

# The state recorded while the agent works on the operation, when there is one.
IN_PROGRESS: dict[VmOperation, VmState] = {
    VmOperation.START: S.STARTING,
    VmOperation.RESTORE: S.STARTING,
    VmOperation.SAVE: S.SAVING,
}

# States from which a VM may be deleted: nothing of it runs anywhere (a failed VM
# holds no memory; deleting it clears the failure with its files).
DELETABLE = frozenset({S.STOPPED, S.SAVED, S.FAILED, S.MISSING, S.WAITING})

# The verb phrase of each operation after "cannot".
_VERBS: dict[VmOperation, str] = {
    VmOperation.START: "be started",
    VmOperation.SHUTDOWN: "be shut down",
    VmOperation.TURN_OFF: "be turned off",
    VmOperation.SAVE: "be saved",
    VmOperation.RESTORE: "be restored",
    VmOperation.PAUSE: "be paused",
    VmOperation.RESUME: "be resumed",
}

_HINTS: dict[VmOperation, str] = {
    VmOperation.START: "stop it first",
    VmOperation.SHUTDOWN: "start it first",
    VmOperation.TURN_OFF: "it is not running",
    VmOperation.SAVE: "start it first",
    VmOperation.RESTORE: "only a saved VM can be restored",
    VmOperation.PAUSE: "only a running VM can be paused",
    VmOperation.RESUME: "only a paused VM can be resumed",
}


def _unreachable(vm: VmRecord) -> str | None:
    if vm.state is S.UNKNOWN:
        return f"VM {vm.name} is unknown: its host {vm.host} does not answer"
    if vm.state is S.MISSING:
        return f"VM {vm.name} is missing: its host {vm.host} no longer reports it"
    if vm.state is S.CREATING:
        return f"VM {vm.name} is still being created on host {vm.host}"
    return None


def check_not_migrating(vm: VmRecord) -> None:
    """A migrating VM belongs to its migration until it ends."""
    if vm.migration_id:
        raise FailedPreconditionError(
            f"VM {vm.name} is migrating (migration {vm.migration_id}): wait until the migration ends"
        )


def check_operation(vm: VmRecord, operation: VmOperation) -> None:
    """Raise FailedPreconditionError when the VM's state does not allow the operation."""
    check_not_migrating(vm)
    reason = _unreachable(vm)
    if reason is not None:
        raise FailedPreconditionError(reason)
    if vm.state not in ALLOWED_FROM[operation]:
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}: it cannot {_VERBS[operation]} ({_HINTS[operation]})"
        )


def check_delete(vm: VmRecord) -> None:
    check_not_migrating(vm)
    if vm.state in DELETABLE:
        return
    if vm.state is S.UNKNOWN:
        raise FailedPreconditionError(
            f"VM {vm.name} is unknown: its host {vm.host} does not answer, so it may still run"
        )
    if vm.state is S.CREATING:
        raise FailedPreconditionError(f"VM {vm.name} is still being created on host {vm.host}")
    raise FailedPreconditionError(f"VM {vm.name} is {vm.state.value}: stop it first")


def check_update(vm: VmRecord, processor_compatibility: bool | None) -> None:
    """Processor compatibility changes only while the VM is off (the guest saw its CPU)."""
    check_not_migrating(vm)
    if processor_compatibility is not None and vm.state is not S.STOPPED:
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}: processor compatibility can be changed only while "
            "the VM is stopped (shut it down first)"
        )
