"""Suite-wide guards.

Every process a test starts inherits HAVM_TEST_RUN; when the session ends, any process
still carrying this run's marker is a leak: it is killed and the session fails. Every
asyncio test must also leave no task of its own running behind it. Ctrl-C reaches the
processes tests start however the suite itself was started.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import uuid
from pathlib import Path

import pytest

RUN_MARKER = f"HAVM_TEST_RUN={uuid.uuid4().hex}".encode()
os.environ["HAVM_TEST_RUN"] = RUN_MARKER.split(b"=", 1)[1].decode()

# A suite started in the background by a shell without job control inherits SIGINT
# ignored, and so would every process it starts: the tests of Ctrl-C could not send one.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture
async def no_leftover_tasks():
    """Fail an asyncio test that leaves tasks running once its fixtures are torn down."""
    yield
    for _ in range(3):  # let cancelled tasks finish their last step
        await asyncio.sleep(0)
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in left:
        task.cancel()
    if left:
        names = ", ".join(sorted(t.get_coro().__qualname__ for t in left))  # type: ignore[union-attr]
        pytest.fail(f"the test left asyncio tasks running: {names}", pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            # First requested, so torn down last: after the test's own async fixtures.
            item.fixturenames.insert(0, "no_leftover_tasks")  # type: ignore[attr-defined]
