"""Suite-wide guards.

Every process a test starts inherits HAVM_TEST_RUN; when the session ends, any process
still carrying this run's marker is a leak: it is killed and the session fails.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

RUN_MARKER = f"HAVM_TEST_RUN={uuid.uuid4().hex}".encode()
os.environ["HAVM_TEST_RUN"] = RUN_MARKER.split(b"=", 1)[1].decode()


def leaked_processes() -> list[tuple[int, str]]:
    """Processes other than this one whose environment carries this run's marker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline and RUN_MARKER in environ.split(b"\0"):
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    yield
    leaks = leaked_processes()
    for pid, _ in leaks:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if leaks:
        listing = "\n".join(f"  {pid}: {cmd}" for pid, cmd in leaks)
        pytest.fail(f"tests left processes behind:\n{listing}", pytrace=False)
