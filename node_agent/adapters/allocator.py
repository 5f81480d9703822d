"""Keep the C allocator from handing live-migration buffers back to the kernel.

A live migration builds, serialises and parses a 1 MiB message per chunk, several
hundred a second. glibc serves such sizes with mmap and unmaps them on free, so
every chunk costs 256 fresh page faults on each side: more than the copy itself.
Raising the mmap and trim thresholds lets the heap keep and reuse those buffers.
Elsewhere (another libc) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_large_buffers(mmap_threshold_bytes: int) -> None:
    """Serve allocations below `mmap_threshold_bytes` from the heap, and keep it grown."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes)
    ok = mallopt(_M_TRIM_THRESHOLD, 4 * mmap_threshold_bytes) and ok
    if not ok:
        log.debug("mallopt refused the thresholds; large buffers stay mmapped")
