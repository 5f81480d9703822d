"""Watches the host's two paths to the cluster and applies the isolation response.

Observe (when the last management call came, whether the broker is connected),
decide (core.isolation), act (power operations on the VMs), once per episode.
Only an agent that belongs to a heartbeat network watches: without a broker there
is no cluster to be isolated from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from node_agent.app.host import VmHost
from node_agent.core.config import AgentSettings
from node_agent.core.errors import AgentError
from node_agent.core.isolation import isolation_actions, judge_isolation

log = logging.getLogger(__name__)


class IsolationWatch:
    def __init__(self, host: VmHost, settings: AgentSettings, broker_connected: Callable[[], bool]) -> None:
        self._host = host
        self._settings = settings
        self._broker_connected = broker_connected
        self._last_broker_contact = host.clock()
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
        connected = self._broker_connected()
        if connected:
            self._last_broker_contact = now
        verdict = judge_isolation(
            now,
            self._host.last_management_call,
            self._last_broker_contact,
            connected,
            self._settings.isolation_timeout_s,
            self._responded,
        )
        if not verdict.isolated:
            if self._responded:
                log.info("contact with the cluster is back; the isolation episode is over")
            self._responded = False
            return
        if not verdict.respond:
            return
        self._responded = True
        response = self._settings.isolation_response
        actions = isolation_actions(response, ((v.spec.id, v.state) for v in self._host.list_vms()))
        log.warning(
            "host %s isolated: no management call and no broker for %.1f s; isolation response %s (%d VMs)",
            self._host.config.name,
            verdict.silent_for_s,
            response.value,
            len(actions),
        )
        for vm_id, operation in actions:
            try:
                await self._host.operate(vm_id, operation)
            except AgentError as exc:
                log.error("isolation response on VM %s: %s", vm_id, exc.message)
