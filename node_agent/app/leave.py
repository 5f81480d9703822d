"""Why and how the agent stops: a signal, or a Shutdown call that makes the host leave.

SIGTERM stops the agent and leaves its VMs' recorded states as they are, so that
running VMs start again with it (a service restart). A Shutdown call is a host that
shuts down: its running guests shut down cleanly first and stay stopped. Either way
the process ends the same way and announces `stopped` on the broker, so that the
cluster does not take a deliberate leave for a failure.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from node_agent.app.host import VmHost
from node_agent.core.errors import AgentError
from node_agent.core.leave import check_can_leave, check_leave_reason, clean_shutdown_actions
from node_agent.core.power import Operation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StopRequest:
    reason: str
    # Shut the guests down first, as a host that shuts down does.
    shut_guests_down: bool


class StopRequests:
    """The first reason to stop wins; later ones change nothing."""

    def __init__(self, host: VmHost) -> None:
        self._host = host
        self._event = asyncio.Event()
        self.request: StopRequest | None = None

    def on_signal(self, name: str) -> None:
        self._set(StopRequest(f"the agent received {name}", shut_guests_down=False))

    def leave(self, reason: str) -> None:
        """A Shutdown call: check it may happen now, then let the runner carry it out.

        Returns at once, so that the call is answered before the server stops.
        """
        reason = check_leave_reason(reason) or "shut down over the management path"
        host = self._host
        migrating = [migration.vm.label for migration in host.outgoing.values()]
        migrating += [vm.label for vm in host.incoming.values()]
        check_can_leave(host.config.name, migrating)
        self._set(StopRequest(reason, shut_guests_down=True))

    def _set(self, request: StopRequest) -> None:
        if self.request is not None:
            return
        self.request = request
        self._host.begin_stop()
        log.info("asked to stop: %s", request.reason)
        self._event.set()

    async def wait(self) -> StopRequest:
        await self._event.wait()
        assert self.request is not None
        return self.request


async def shut_guests_down(host: VmHost) -> None:
    """Stop every guest as a host shutdown does; the VMs stay stopped afterwards."""
    actions = clean_shutdown_actions((v.spec.id, v.state) for v in host.list_vms())
    if actions:
        log.info("shutting down %d guests before the host leaves", len(actions))
        await stop_guests(host, actions, "before the host leaves")


async def stop_guests(host: VmHost, actions: list[tuple[str, Operation]], why: str) -> None:
    """Run the operations side by side, so that the last guest stops as soon as the
    first; a VM that cannot be stopped is logged, the others go on."""
    results = await asyncio.gather(
        *(host.operate(vm_id, operation) for vm_id, operation in actions), return_exceptions=True
    )
    for (vm_id, operation), result in zip(actions, results, strict=True):
        if isinstance(result, BaseException):
            problem = result.message if isinstance(result, AgentError) else repr(result)
            log.error("VM %s: %s %s failed: %s", vm_id, operation.value, why, problem)
