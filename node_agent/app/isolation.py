"""Watches the host's two paths to the cluster and applies the isolation response.

Observe when the other side last proved contact (the last management call, the
last heartbeat the broker echoed back), decide (core.isolation), act (power
operations on the VMs), once per episode. When contact returns after a response,
the copies the cluster restarted elsewhere meanwhile are let go (app.stale_copies).
Only an agent that belongs to a heartbeat network watches: without a broker there
is no cluster to be isolated from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from node_agent.app.host import VmHost
from node_agent.app.leave import stop_guests
from node_agent.core.config import AgentSettings
from node_agent.core.isolation import isolation_actions, judge_isolation

log = logging.getLogger(__name__)


class IsolationWatch:
    def __init__(
        self, host: VmHost, settings: AgentSettings, broker_contact: Callable[[], float | None]
    ) -> None:
        self._host = host
        self._settings = settings
        # When the broker last proved it hears this host; None before it ever did.
        self._broker_contact = broker_contact
        # Until the broker proves anything, the count starts when the watch does.
        self._watching_since = host.clock()
        self._responded = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="isolation-watch")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.isolation_check_interval_s)
            try:
                await self.check()
            except Exception:
                log.exception("the isolation check failed; trying again")

    async def check(self) -> None:
        now = self._host.clock()
        contact = self._broker_contact()
        verdict = judge_isolation(
            now,
            self._host.last_management_call,
            self._watching_since if contact is None else contact,
            self._settings.isolation_timeout_s,
            self._responded,
        )
        if not verdict.isolated:
            if self._responded:
                self._responded = False
                log.info("contact with the cluster is back; the isolation episode is over")
                # The cluster may have restarted this host's VMs elsewhere meanwhile.
                self._host.let_go_stale_copies()
            return
        if not verdict.respond:
            return
        self._responded = True
        response = self._settings.isolation_response
        actions = isolation_actions(response, ((v.spec.id, v.state) for v in self._host.list_vms()))
        log.warning(
            "host %s isolated: no management call and no broker contact for %.1f s; "
            "isolation response %s (%d VMs)",
            self._host.config.name,
            verdict.silent_for_s,
            response.value,
            len(actions),
        )
        await stop_guests(self._host, actions, "as the isolation response")
