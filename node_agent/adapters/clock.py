"""The clock port's implementation: the process's clocks, or those a scenario hands in.

A scenario's agent reads a virtual loop's time; a real agent reads the system's. Both
arrive here as two plain functions, so that the composition root picks the source and
the app only sees the `Clock` port.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FunctionClock:
    """A Clock reading the two functions it is given; the system's by default."""

    wall: Callable[[], float] = _time.time
    ticks: Callable[[], float] = _time.monotonic

    def time(self) -> float:
        return self.wall()

    def monotonic(self) -> float:
        return self.ticks()


SYSTEM_CLOCK = FunctionClock()
