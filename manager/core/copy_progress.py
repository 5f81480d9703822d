"""How a copy under way reads in its job: a percentage and a sentence with what is left.

A network transfer and a disk conversion both follow an agent's stream of (bytes copied,
bytes in all, MB/s); their jobs show the same words. Purely computational.
"""

from __future__ import annotations

MB = 1_000_000


def copy_percent(copied: int, total: int, low: int, high: int) -> int:
    """Where the copy stands between `low` and `high` percent of its job (the rest is
    the job's other steps); the middle of the range while the total is unknown."""
    if total <= 0:
        return (low + high) // 2
    return max(low, min(high, low + int((high - low) * copied / total)))


def copying(copied: int, total: int, mb_per_s: float) -> str:
    """`copying: 210.0 of 512.0 MB, 512 MB/s, 1 s left`."""
    left = max(0, total - copied)
    eta = f", {left / MB / mb_per_s:.0f} s left" if mb_per_s > 0 else ""
    return f"copying: {copied / MB:,.1f} of {total / MB:,.1f} MB, {mb_per_s:,.0f} MB/s{eta}"
