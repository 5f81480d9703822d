"""This host's live-migration network, and the one fault it can suffer: being cut.

Migration streams go agent to agent on their own addresses, as on a cluster's dedicated
live-migration network, so the fault relay that carries the heartbeat and management
paths never sees them (pushing hundreds of MB/s through a userspace relay would also
measure the relay, not the migration). The cut is therefore made here, in the agent's
own transport: `havm fault isolate HOST --from migration` (or `all`) creates the file
`migration-network-cut` in the agent's state directory, and `havm fault heal` removes
it. While it exists, nothing goes out on this host's migration streams and nothing
that arrives is taken in, as with a pulled cable: both ends see a silent peer, and their
stall timeouts decide. A heal within the timeouts lets the stream carry on, as TCP does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

CUT_FILE = "migration-network-cut"
# How often a cut (or its heal) is noticed: a stat at most this often.
POLL_S = 0.05


class MigrationNetwork:
    def __init__(self, state_dir: Path | None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._file = None if state_dir is None else state_dir / CUT_FILE
        self._monotonic = monotonic
        self._cut = False
        self._checked_at = float("-inf")

    def is_cut(self) -> bool:
        if self._file is None:
            return False
        now = self._monotonic()
        if now - self._checked_at >= POLL_S:
            self._checked_at = now
            self._cut = self._file.exists()
        return self._cut

    async def wait_connected(self) -> None:
        """Return once the network carries traffic (at once when it is not cut)."""
        while self.is_cut():
            await asyncio.sleep(POLL_S)
