"""The progress of one move of a VM to another host, told to every caller that follows it.

A live migration or a network transfer runs on its own, whoever listens: a caller that
lost its stream (a manager restarted, its old connection not yet noticed as dead) asks
again with the same id and follows it from the latest update on, beside any listener
still there. The outcome (the final update, or the failure) is kept once the move
ended, so that a caller coming back afterwards still learns the figures or the failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Generic, TypeVar

from node_agent.core.errors import AgentError
from node_agent.core.migration import MigrationPhase, MigrationProgress
from node_agent.core.transfer import TransferProgress

P = TypeVar("P")


class Updates(Generic[P]):
    """The updates of one move: the latest for a caller joining late, the outcome at the end.
    `is_final` tells the last update of a move that succeeded."""

    def __init__(self, is_final: Callable[[P], bool]) -> None:
        self._is_final = is_final
        # One queue per caller following the move.
        self._listeners: set[asyncio.Queue[P | AgentError]] = set()
        self._latest: P | None = None
        self.outcome: P | AgentError | None = None

    async def follow(self) -> AsyncGenerator[P, None]:
        """The latest update, then every later one until the end; the failure is raised.

        A caller starts listening when it first iterates, and stops when it closes the
        iterator or it ends: the move never waits for a listener, nor ends with one.
        """
        if self.outcome is not None:
            async for final in replay(self.outcome):
                yield final
            return
        queue: asyncio.Queue[P | AgentError] = asyncio.Queue()
        if self._latest is not None:
            queue.put_nowait(self._latest)
        self._listeners.add(queue)
        try:
            while True:
                update = await queue.get()
                if isinstance(update, AgentError):
                    raise _own_copy(update)
                yield update
                if self._is_final(update):
                    return
        finally:
            self._listeners.discard(queue)

    @property
    def listening(self) -> int:
        """How many callers follow the move now."""
        return len(self._listeners)

    def publish(self, update: P | AgentError) -> None:
        if isinstance(update, AgentError):
            # Kept without its traceback, whose frames would pin this move's memory.
            update = _own_copy(update)
            self.outcome = update
        else:
            self._latest = update
            if self._is_final(update):
                self.outcome = update
        for queue in self._listeners:
            queue.put_nowait(update)


class MigrationUpdates(Updates[MigrationProgress]):
    def __init__(self) -> None:
        super().__init__(lambda update: update.phase is MigrationPhase.COMPLETED)


class TransferUpdates(Updates[TransferProgress]):
    def __init__(self) -> None:
        # Only the last update carries the VM as the destination holds it.
        super().__init__(lambda update: update.vm is not None)


async def replay(outcome: P | AgentError) -> AsyncGenerator[P, None]:
    """How a move ended, as its progress stream: the final update, or its failure raised."""
    if isinstance(outcome, AgentError):
        raise _own_copy(outcome)
    yield outcome


def _own_copy(exc: AgentError) -> AgentError:
    """The same failure, code and message, as a new exception for one raiser.

    One instance raised to several callers would gather every raiser's traceback,
    and keep their frames alive as long as the outcome is remembered.
    """
    try:
        error = type(exc)(exc.message)
    except TypeError:  # a class whose constructor takes other arguments
        error = AgentError(exc.message)
    error.code = exc.code
    error.migration_failure = exc.migration_failure
    return error
