"""Free loopback ports for processes that will bind them later.

A port chosen now and bound by another process a moment later can be taken in
between. Asking the kernel for port 0 hands out ports from its ephemeral range,
the same range it draws from for every outgoing connection: a cluster that starts
a dozen processes, each connecting to the broker and to the others, can have one
of those connections land on a port the manager was about to listen on. So the
ports come from below (or above) the ephemeral range, which outgoing connections
never use, at random, and each is checked by binding it.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Collection
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# "LOW-HIGH": take ports only from this range. Clusters started side by side (one per
# test worker) each get a range of their own, so that two of them never pick one port
# in the moment between choosing it and binding it.
PORT_RANGE_ENV = "HAVM_PORT_RANGE"
LINUX_DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
# Below 10000 live many well-known services; above 65535 there is nothing.
LOWEST_PORT, HIGHEST_PORT = 10000, 65535
_random = random.SystemRandom()


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_EPHEMERAL_RANGE
    return low, high


class PortRangeError(ValueError):
    """HAVM_PORT_RANGE does not name a usable range; the message says why."""


def configured_range(text: str | None) -> range:
    """The range HAVM_PORT_RANGE allows ("LOW-HIGH", both included); every port when unset."""
    if not text:
        return range(LOWEST_PORT, HIGHEST_PORT + 1)
    low_text, _, high_text = text.partition("-")
    if not (low_text.strip().isdigit() and high_text.strip().isdigit()):
        raise PortRangeError(f"{PORT_RANGE_ENV}: {text!r} is not a range of ports like 20000-29999")
    low, high = int(low_text), int(high_text)
    if not LOWEST_PORT <= low <= high <= HIGHEST_PORT:
        raise PortRangeError(
            f"{PORT_RANGE_ENV}: {text!r} must lie within {LOWEST_PORT}-{HIGHEST_PORT}, low end first"
        )
    return range(low, high + 1)


def candidate_ports() -> list[range]:
    """The port ranges outgoing connections never take (within HAVM_PORT_RANGE if set)."""
    low, high = ephemeral_range()
    allowed = configured_range(os.environ.get(PORT_RANGE_ENV))
    below = range(max(LOWEST_PORT, allowed.start), min(low, allowed.stop))
    above = range(max(high + 1, allowed.start), min(HIGHEST_PORT + 1, allowed.stop))
    ranges = [below, above]
    return [r for r in ranges if len(r) > 0]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1", exclude: Collection[int] = ()) -> list[int]:
    """`count` distinct ports nothing listens on, outside the ephemeral range, and none
    of `exclude` (ports already promised to processes not listening yet).

    Each chosen port stays bound until all are chosen, so the list has no repeats.
    Falls back to the kernel's choice when no range is left outside the ephemeral one.
    """
    ranges = candidate_ports()
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            s = _bind_one(ranges, host)
            if s.getsockname()[1] in exclude:
                s.close()
                continue
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def _bind_one(ranges: list[range], host: str) -> socket.socket:
    total = sum(len(r) for r in ranges)
    for _ in range(200 if total else 0):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, _pick(ranges, _random.randrange(total))))
        except OSError:
            s.close()
            continue
        return s
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s


def _pick(ranges: list[range], index: int) -> int:
    for r in ranges:
        if index < len(r):
            return r[index]
        index -= len(r)
    raise IndexError(index)
