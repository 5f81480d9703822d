"""What the manager does about a highly available VM someone turned off on its host.

An administrator may act on a host directly (havm's `admin` identity may, as one
logged on to a Hyper-V host could), and a refresh then finds a VM the manager had
running turned off, with no job, migration or failover of its own at work on it. A
failover cluster treats a clustered VM that goes off behind its back as a failed
resource and brings it online again on its node; the manager does the same: it
records the VM stopped with the reason, raises an `outside_change` event naming what
happened and what it does, and starts the VM again on its host, unless the VM's
restart priority is `none` (the administrator's way of saying "leave it off"). A VM
that is not highly available is only recorded: nothing restarts it.
"""

from __future__ import annotations

import logging

from manager.app.events import EventBus
from manager.app.vms import VmService
from manager.core.errors import ManagerError
from manager.core.model import RestartPriority, VmOperation, VmRecord

log = logging.getLogger(__name__)

KIND = "outside_change"


class OutsideChanges:
    def __init__(self, vms: VmService, events: EventBus) -> None:
        self._vms = vms
        self._events = events

    def on_stopped(self, vm: VmRecord) -> None:
        host = vm.host or ""
        what = f"VM {vm.name} was turned off on host {host} outside the manager"
        if vm.restart_priority is RestartPriority.NONE:
            self._events.emit(KIND, f"{what}; left off: its restart priority is none", host=host, vm=vm.name)
            return
        self._events.emit(
            KIND,
            f"{what}; starting it again there, as a cluster brings a failed resource back online",
            host=host,
            vm=vm.name,
        )
        try:
            self._vms.operate(vm.name, VmOperation.START)
        except ManagerError as error:
            log.warning("VM %s cannot be started again: %s", vm.name, error.message)
            self._events.emit(
                KIND, f"VM {vm.name} cannot be started again: {error.message}", host=host, vm=vm.name
            )
