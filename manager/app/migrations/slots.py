"""The live-migration slots: how many live migrations a host takes part in at once.

A host copies memory for at most `max_live_migrations_per_host` live migrations at a
time, as source or as destination; the others wait in order (`manager.core.migration.admit`
decides who may start). This object is the one owner of who waits and who runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from manager.core.migration import SlotRequest, admit


class LiveMigrationSlots:
    def __init__(self, limit: Callable[[], int]) -> None:
        # Read at every admission: the topology may change the limit while some wait.
        self._limit = limit
        self._waiting: list[SlotRequest] = []
        self.running: dict[str, SlotRequest] = {}
        self._changed = asyncio.Condition()

    async def take(self, slot: SlotRequest) -> None:
        """Wait until the migration may run on both its hosts."""
        self._waiting.append(slot)
        admitted = False
        try:
            async with self._changed:
                while slot.migration_id not in admit(
                    self._waiting, list(self.running.values()), self._limit()
                ):
                    await self._changed.wait()
                self.running[slot.migration_id] = slot
                admitted = True
        finally:
            self._waiting.remove(slot)
            if not admitted:
                # A waiter kept later migrations sharing its hosts waiting: they look again.
                async with self._changed:
                    self._changed.notify_all()

    def hold(self, slot: SlotRequest) -> None:
        """Count a migration as running without waiting: one a previous manager left under
        way, whose agents may still be migrating."""
        self.running[slot.migration_id] = slot

    async def release(self, slot: SlotRequest) -> None:
        self.running.pop(slot.migration_id, None)
        async with self._changed:
            self._changed.notify_all()
