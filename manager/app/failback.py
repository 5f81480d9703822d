"""Failback: HA VMs go home to their most preferred owner once it is back in service.

A failover cluster moves a group back to its most preferred owner when that node
returns, if the group's failback policy allows it now (immediately, or inside a
window of hours). The decision is `core.failover_policy.plan_failbacks`; this loop
asks it every `failback_check_interval_s` seconds and acts through the migration
service (live where the profile allows, quick otherwise), whose per-host limit
queues them when many go home at once. A failback that fails is tried again only
after `failback_retry_after_s` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from manager.app.events import EventBus
from manager.app.jobs import JobBook
from manager.app.migrations import MigrationService
from manager.core.errors import ManagerError
from manager.core.failover_policy import Failback, plan_failbacks
from manager.core.settings import Settings
from manager.core.states import HostState, JobState
from manager.core.store import Store

log = logging.getLogger(__name__)


class FailbackService:
    def __init__(
        self,
        store: Store,
        jobs: JobBook,
        migrations: MigrationService,
        bus: EventBus,
        settings: Settings,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._migrations = migrations
        self._bus = bus
        self._settings = settings
        self._clock = clock
        self._now = monotonic
        self._not_before: dict[str, float] = {}  # VM id -> when a failed failback may be retried
        self._moving: set[str] = set()

    async def run(self) -> None:
        while True:
            try:
                await self.look()
            except Exception:  # one bad look must not end failback
                log.exception("failback pass failed")
            await asyncio.sleep(self._settings.failback_check_interval_s)

    def due(self) -> tuple[Failback, ...]:
        """The failbacks that may start now (the window is in the manager's local time)."""
        ok = {h.name for h in self._store.list_hosts() if h.state is HostState.OK}
        hour = self._clock().astimezone().hour
        now = self._now()
        return tuple(
            f
            for f in plan_failbacks(self._store.list_vms(), ok, hour)
            if f.source in ok and f.vm_id not in self._moving and self._not_before.get(f.vm_id, 0.0) <= now
        )

    async def look(self) -> None:
        await asyncio.gather(*(self._fail_back(f) for f in self.due()))

    async def _fail_back(self, failback: Failback) -> None:
        self._moving.add(failback.vm_id)
        try:
            self._bus.emit(
                "failback",
                f"VM {failback.vm_name} fails back from {failback.source} to its preferred owner "
                f"{failback.target}",
                failback.target,
                failback.vm_name,
            )
            try:
                job, migration = await self._migrations.migrate(
                    failback.vm_name, failback.target, quick=False, no_converge="quick"
                )
                async for update in self._jobs.watch(job.id):
                    job = update
                if job.state is not JobState.COMPLETED:
                    raise ManagerError(job.error or "the migration failed")
            except ManagerError as error:
                self._not_before[failback.vm_id] = self._now() + self._settings.failback_retry_after_s
                self._bus.emit(
                    "failback",
                    f"failback of VM {failback.vm_name} to {failback.target} failed: {error.message}; "
                    f"tried again in {self._settings.failback_retry_after_s:g} s",
                    failback.target,
                    failback.vm_name,
                )
                return
            self._not_before.pop(failback.vm_id, None)
            self._bus.emit(
                "failback",
                f"VM {failback.vm_name} is back on its preferred owner {failback.target} "
                f"({migration.kind.value} migration)",
                failback.target,
                failback.vm_name,
            )
        finally:
            self._moving.discard(failback.vm_id)
