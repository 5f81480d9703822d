"""The clock port: the only way the agent's app learns the time.

Guests advance by the time that really passed, migrations measure passes, rates and
blackouts, and VMs are stamped with when their state changed. Read from a port, all
of that runs unchanged on a scenario's virtual time; a direct call to the `time`
module would tie it to the wall clock again.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Two readings, for the two things time is used for."""

    def time(self) -> float:
        """Seconds since the epoch: stamps that people and other hosts read."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going back: durations and ticks."""
        ...
