"""Blocking work beside the event loop, kept busy without the loop waiting for it.

A network transfer reads or writes a few megabytes per chunk and hashes them. Awaiting
each chunk in the default executor leaves the worker idle while the loop comes back
with the next one, and the loop idle while the worker works. Here a step in the
executor goes on from chunk to chunk as long as there is room ahead (`Prefetch`) or
something queued (`Drain`); the loop feeds or empties the queue meanwhile and waits
only when the worker is that far ahead or behind. One step at a time, chunks in order,
so that a digest the steps keep sees them in order.

Each step ends when it runs out of room or of work, never waits inside the executor:
a scenario's loop on virtual time runs executor calls inline (havm.scenario), and a
thread of our own, or a step that waits, would run behind its back or never return.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Prefetch(Generic[T]):
    """The items of a blocking iterator, made in the executor at most `depth` ahead of the
    loop that takes them. Starts at once; `close` must follow, on every path."""

    def __init__(self, items: Iterator[T], depth: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._items = items
        self._depth = depth
        # Appended by the step in the executor, taken by the loop (a deque: safely).
        self._ready: deque[T] = deque()
        self._making: asyncio.Future[None] | None = None
        self._ended = False
        self._failure: BaseException | None = None
        self._closed = False
        self._changed = asyncio.Event()
        self._pump()

    def _pump(self) -> None:
        if self._making is not None or self._ended or self._closed or self._failure is not None:
            return
        if len(self._ready) >= self._depth:
            return
        self._making = self._loop.run_in_executor(None, self._make)
        self._making.add_done_callback(self._made)

    def _make(self) -> None:
        """One step, in the executor: make items until `depth` are waiting."""
        while len(self._ready) < self._depth and not self._closed:
            item = next(self._items, None)
            if item is None:
                self._ended = True
                return
            self._ready.append(item)
            self._loop.call_soon_threadsafe(self._changed.set)

    def _made(self, making: asyncio.Future[None]) -> None:
        self._making = None
        if not making.cancelled() and making.exception() is not None:
            self._failure = making.exception()
        self._changed.set()
        self._pump()

    async def get(self) -> T | None:
        """The next item, None after the last; raises what the iterator raised."""
        while not self._ready:
            if self._failure is not None:
                raise self._failure
            if self._ended and self._making is None:
                return None
            self._changed.clear()
            await self._changed.wait()
        item = self._ready.popleft()
        self._pump()
        return item

    async def close(self) -> None:
        """Make no more, and wait for the step under way, even when cancelled meanwhile:
        what it works on must not be closed under it."""
        self._closed = True
        if self._making is not None:
            await settled(self._making)


class Drain(Generic[T]):
    """Items that a blocking function takes in the executor, one after the other, with at
    most `depth` of them queued. `finish` or `abandon` must follow, on every path."""

    def __init__(self, take: Callable[[T], None], depth: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._take = take
        # Appended by the loop, taken by the step in the executor (a deque: safely).
        self._queue: deque[T] = deque()
        self._room = asyncio.Semaphore(depth)
        self._taking: asyncio.Future[None] | None = None
        # The first failure of `take`: what is queued after it is dropped, as after `abandon`.
        self._failure: BaseException | None = None
        self._dropping = False
        self._idle = asyncio.Event()
        self._idle.set()

    async def put(self, item: T) -> None:
        """Queue an item, once there is room; raises the failure of an earlier one."""
        self._check()
        await self._room.acquire()
        self._check()
        self._queue.append(item)
        self._idle.clear()
        self._pump()

    def _pump(self) -> None:
        if self._taking is not None:
            return
        while self._queue and (self._dropping or self._failure is not None):
            self._queue.popleft()
            self._room.release()
        if not self._queue:
            self._idle.set()
            return
        self._taking = self._loop.run_in_executor(None, self._take_queued)
        self._taking.add_done_callback(self._taken)

    def _take_queued(self) -> None:
        """One step, in the executor: take what is queued, including what comes meanwhile."""
        while self._queue and self._failure is None and not self._dropping:
            item = self._queue.popleft()
            try:
                self._take(item)
            except BaseException as exc:
                self._failure = exc
            self._loop.call_soon_threadsafe(self._room.release)

    def _taken(self, taking: asyncio.Future[None]) -> None:
        self._taking = None
        if not taking.cancelled() and taking.exception() is not None:
            self._failure = self._failure or taking.exception()
        self._pump()

    async def finish(self) -> None:
        """Wait until every item was taken; raises the first failure."""
        await self._idle.wait()
        self._check()

    async def abandon(self) -> None:
        """Drop what is still queued and wait for the step under way, even when cancelled
        meanwhile: what it works on must not be closed under it."""
        self._dropping = True
        taking = self._taking
        if taking is not None:
            await settled(taking)
        self._pump()

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure


async def settled(work: asyncio.Future[Any]) -> None:
    """Wait for work that cannot be stopped (a thread), even when cancelled meanwhile; its
    failure is the caller's to have seen already, or not at all."""
    if not work.done():
        await asyncio.wait([work])
    if not work.cancelled():
        work.exception()  # retrieved: a failure nobody awaited is no warning
