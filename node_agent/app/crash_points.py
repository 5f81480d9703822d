"""Crashes on purpose at named points of the migration protocol.

A failure in the few milliseconds between two messages of a live migration (after the
source paused the guest, after it moved the lease, after the destination said it is
ready) cannot be hit by killing a process from outside at the right moment. So an agent
can be told to die at such a point: write the point's name into the file `crash-at` of
its state directory (`havm fault crash-at HOST POINT` does). The first time the agent
reaches that point it exits at once, without any cleanup, like a process killed with
SIGKILL: its connections drop, its memory is lost, its files stay as they were. The
file is consumed, so the host starts normally afterwards. Nothing is read unless a
migration reaches a point, and only a stat when the file is absent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

ARM_FILE = "crash-at"
# The exit status of a process killed by SIGKILL, so that logs and tests read alike.
CRASH_EXIT_STATUS = 137

SOURCE_PRE_COPY = "migration-source-pre-copy"  # the first pass went out; the guest still runs here
SOURCE_PAUSED = "migration-source-paused"  # the guest is paused here; the lease has not moved
SOURCE_LEASE_MOVED = "migration-source-lease-moved"  # the lease names the destination; no commit sent
DESTINATION_COPYING = "migration-destination-copying"  # the skeleton holds the memory; pages arrive
DESTINATION_COMMITTING = "migration-destination-committing"  # the commit arrived; not resumed yet

POINTS = (SOURCE_PRE_COPY, SOURCE_PAUSED, SOURCE_LEASE_MOVED, DESTINATION_COPYING, DESTINATION_COMMITTING)


class CrashPoints:
    """The points this agent was told to die at (see the module's docstring)."""

    def __init__(self, state_dir: Path | None, die: Callable[[], None] | None = None) -> None:
        self._file = None if state_dir is None else state_dir / ARM_FILE
        # How to die: the process exits; a scenario kills only this machine of its loop.
        self._die = die or _exit

    def reach(self, point: str) -> None:
        if self._file is None:
            return
        try:
            armed = self._file.read_text().split()
        except OSError:
            return
        if point not in armed:
            return
        self._file.unlink(missing_ok=True)
        log.critical("crash point %s reached: the agent dies now, as armed", point)
        self._die()


def _exit() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(CRASH_EXIT_STATUS)
