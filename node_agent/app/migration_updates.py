"""The progress of one outgoing live migration, told to every caller that follows it.

A migration runs on its own, whoever listens: a caller that lost its stream (a manager
restarted, its old connection not yet noticed as dead) asks again with the same
migration id and follows it from the latest update on, beside any listener still
there. The outcome (the final update, or the failure) is kept once the migration
ended, so that a caller coming back afterwards still learns the figures or the failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from node_agent.core.errors import AgentError
from node_agent.core.migration import MigrationPhase, MigrationProgress, Outcome


class MigrationUpdates:
    """The updates of one migration: the latest for a caller joining late, the outcome at the end."""

    def __init__(self) -> None:
        # One queue per caller following the migration.
        self._listeners: set[asyncio.Queue[Outcome]] = set()
        self._latest: MigrationProgress | None = None
        self.outcome: Outcome | None = None

    async def follow(self) -> AsyncGenerator[MigrationProgress, None]:
        """The latest update, then every later one until the end; the failure is raised.

        A caller starts listening when it first iterates, and stops when it closes the
        iterator or it ends: the migration never waits for a listener, nor ends with one.
        """
        if self.outcome is not None:
            async for final in replay(self.outcome):
                yield final
            return
        queue: asyncio.Queue[Outcome] = asyncio.Queue()
        if self._latest is not None:
            queue.put_nowait(self._latest)
        self._listeners.add(queue)
        try:
            while True:
                update = await queue.get()
                if isinstance(update, AgentError):
                    raise _own_copy(update)
                yield update
                if update.phase is MigrationPhase.COMPLETED:
                    return
        finally:
            self._listeners.discard(queue)

    @property
    def listening(self) -> int:
        """How many callers follow the migration now."""
        return len(self._listeners)

    def publish(self, update: Outcome) -> None:
        if isinstance(update, AgentError):
            # Kept without its traceback, whose frames would pin this migration's memory.
            update = _own_copy(update)
        else:
            self._latest = update
        if isinstance(update, AgentError) or update.phase is MigrationPhase.COMPLETED:
            self.outcome = update
        for queue in self._listeners:
            queue.put_nowait(update)


async def replay(outcome: Outcome) -> AsyncGenerator[MigrationProgress, None]:
    """How a migration ended, as its progress stream: the final update, or its failure raised."""
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
