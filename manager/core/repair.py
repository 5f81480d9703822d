"""What `vm repair` may do with a failed VM, decided purely.

VMM's Repair action offers Retry, Undo and Ignore for a VM in a failed state, and
for a VM whose cluster configuration is unsupported, a refresh or Ignore. Which
of them applies, and what "retry" means for this VM (a failover again, or the
operator's start again), depends only on the VM's record and its host's state.
"""

from __future__ import annotations

from enum import Enum

from manager.core.config_status import ConfigStatus
from manager.core.errors import FailedPreconditionError
from manager.core.model import FailedAction, VmRecord
from manager.core.states import HostState, VmState


class RepairAction(Enum):
    RETRY = "retry"  # run the failed action again
    UNDO = "undo"  # back to the last good state: stopped, its files where its lease is
    IGNORE = "ignore"  # accept what the agents report (a failed VM) or its configuration
    REFRESH = "refresh"  # ask its host again and judge its configuration anew


class RetryKind(Enum):
    FAILOVER = "failover"  # hand it back to the failover service (threshold and attempts reset)
    START = "start"  # an ordinary start on its host


# Failures that a failover (not an operator) ran into.
_FAILOVER_FAILURES = frozenset({FailedAction.FAILOVER, FailedAction.THRESHOLD})


def repairs_failure(vm: VmRecord, action: RepairAction) -> bool:
    """Whether this repair is of a failure (the VM is failed) or of its configuration.

    Raises FailedPreconditionError naming what can be done when the action fits neither.
    """
    if vm.state is VmState.FAILED:
        if action is RepairAction.REFRESH:
            raise FailedPreconditionError(
                f"VM {vm.name} is failed: get it out of its failure first (--retry, --undo or --ignore)"
            )
        return True
    if action in (RepairAction.RETRY, RepairAction.UNDO):
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value}, not failed: nothing to {action.value}; "
            "`vm repair` judges its configuration again, `--ignore` accepts it as it is"
        )
    if action is RepairAction.IGNORE and vm.status is ConfigStatus.OK:
        raise FailedPreconditionError(
            f"VM {vm.name} is {vm.state.value} and its configuration is supported: nothing to ignore"
        )
    return False


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
