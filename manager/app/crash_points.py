"""Crashes on purpose at named steps of a migration, so a manager restart can be tested
at each of them.

The manager is not on a migration's data path, but it decides and records each step;
dying between two of them must leave nothing that a restart cannot settle. Killing the
process from outside lands wherever it lands, so the manager can be told to die at such
a step: write the step's name into the file `crash-at` of its state directory
(`havm fault crash-manager-at POINT` does). The first time the manager reaches that step
it exits at once, without any cleanup, like a process killed with SIGKILL. The file is
consumed, so the restarted manager goes on normally. Nothing is read unless a migration
reaches a step, and only a stat when the file is absent.
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

LIVE_PRE_COPY = "migration-manager-pre-copy"  # the source reported memory going over
LIVE_BLACKOUT = "migration-manager-blackout"  # the source reported that it pauses the guest
QUICK_SAVED = "migration-manager-quick-saved"  # saved on the source; no take-over asked yet
QUICK_TAKEN_OVER = "migration-manager-quick-taken-over"  # the destination holds the lease; not restored

CREATE_STARTED = "create-manager-started"  # the VM's record and job are stored; no host asked yet
CREATE_CONFIRMED = "create-manager-confirmed"  # the host created the VM; not recorded, not started

POINTS = (LIVE_PRE_COPY, LIVE_BLACKOUT, QUICK_SAVED, QUICK_TAKEN_OVER, CREATE_STARTED, CREATE_CONFIRMED)


class CrashPoints:
    """The steps this manager was told to die at (see the module's docstring)."""

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
        log.critical("crash point %s reached: the manager dies now, as armed", point)
        self._die()


def _exit() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(CRASH_EXIT_STATUS)
