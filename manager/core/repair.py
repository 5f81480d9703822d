"""What `vm repair` may do with a failed VM, decided purely.

VMM's Repair action offers Retry, Undo and Ignore for a VM in a failed state. Which
of them applies, and what "retry" means for this VM (a failover again, or the
operator's start again), depends only on the VM's record and its host's state.
"""

from __future__ import annotations

from enum import Enum

from manager.core.errors import FailedPreconditionError
from manager.core.model import FailedAction, VmRecord
from manager.core.states import HostState, VmState


class RepairAction(Enum):
    RETRY = "retry"  # run the failed action again
    UNDO = "undo"  # back to the last good state: stopped, its files where its lease is
    IGNORE = "ignore"  # accept what the agents report


class RetryKind(Enum):
    FAILOVER = "failover"  # hand it back to the failover service (threshold and attempts reset)
    START = "start"  # an ordinary start on its host


# Failures that a failover (not an operator) ran into.
_FAILOVER_FAILURES = frozenset({FailedAction.FAILOVER, FailedAction.THRESHOLD})


def check_repairable(vm: VmRecord) -> None:
    if vm.state is not VmState.FAILED:
        raise FailedPreconditionError(f"VM {vm.name} is {vm.state.value}, not failed: nothing to repair")


def retry_kind(vm: VmRecord, host_state: HostState | None) -> RetryKind:
    """A failover's failure is retried as a failover; so is any failure of a highly
    available VM whose host is out of service (it can only start elsewhere)."""
    if vm.failed_action in _FAILOVER_FAILURES:
        return RetryKind.FAILOVER
    if vm.highly_available and host_state is not HostState.OK:
        return RetryKind.FAILOVER
    return RetryKind.START
