"""An asyncio event loop on virtual time, where every task belongs to an emulated machine.

A scenario runs the real manager and the real agents in one process. Two things make
that deterministic and fast:

- Time is a number. When every task waits for a timer, the loop jumps to the next timer
  instead of sleeping, so five minutes of heartbeats take milliseconds. Work handed to
  a thread (`asyncio.to_thread`) runs inline, so that no real time passes behind the
  loop's back and the order of events never depends on the scheduler of the OS.
- Every task records the machine that created it (a host, the manager, the broker):
  a task inherits its creator's machine. This is what lets a fault act on one machine
  only: `freeze` parks that machine's tasks where they are (a stopped process: nothing
  of it runs, nothing of it closes) and `thaw` lets them go on; `kill` drops them for
  good, without running their cleanup (a killed process runs none).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import gc
import heapq
import math
import selectors
import threading
import warnings
from collections.abc import Callable, Coroutine
from concurrent.futures import Future as ConcurrentFuture
from typing import Any

# The machine whose code is running; tasks created meanwhile belong to it.
current_machine: contextvars.ContextVar[str] = contextvars.ContextVar("current_machine", default="")


class _MachineTask(asyncio.tasks._PyTask):  # type: ignore[name-defined,misc]
    """A task that steps only while its machine runs (the pure-Python Task, whose step
    can be intercepted; the C task's cannot)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], *, loop: VirtualTimeLoop, **kw: Any) -> None:
        context = kw.get("context")
        self.machine = context.get(current_machine, "") if context is not None else current_machine.get()
        self.dead = False
        super().__init__(coro, loop=loop, **kw)
        loop._machine_tasks.setdefault(self.machine, set()).add(self)
        self.add_done_callback(_forget)

    def _Task__step(self, exc: BaseException | None = None) -> None:  # noqa: N802 (asyncio's name)
        loop: VirtualTimeLoop = self._loop
        if self.dead:
            return  # a dead process runs nothing, not even its cleanup
        if self.machine in loop._frozen:
            loop._parked.setdefault(self.machine, []).append((self, exc))
            return
        super()._Task__step(exc)


def _forget(task: asyncio.Future[Any]) -> None:
    assert isinstance(task, _MachineTask)
    loop: VirtualTimeLoop = task._loop
    loop._machine_tasks.get(task.machine, set()).discard(task)


class _OrderedTimer(asyncio.TimerHandle):
    """Timers due at one moment run in the order they were set, as the code that set them
    expects; a heap alone orders equal moments by the heap's shape, which depends on
    everything else scheduled, and the scenario's log would change from run to run."""

    __slots__ = ("_seq",)

    def __init__(
        self,
        when: float,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context | None,
        seq: int,
    ) -> None:
        super().__init__(when, callback, args, loop, context)
        self._seq = seq

    def __lt__(self, other: object) -> bool:
        if isinstance(other, _OrderedTimer):
            # TimerHandle's own moment: private to asyncio, so typeshed does not list it.
            return (self._when, self._seq) < (other._when, other._seq)  # type: ignore[attr-defined]
        return super().__lt__(other)  # type: ignore[operator]


class _JumpingSelector(selectors.DefaultSelector):
    """Polls the loop's own wake-up pipe without waiting; a wait becomes a jump in time."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._virtual_loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._virtual_loop
        if loop._outside_work:
            # A thread of the scenario works (a command line): nothing runs and time
            # stands still until it hands the loop something to do or ends, so that
            # what the loop does never depends on how fast the thread is. A hand-over
            # already queued goes on at once: its wake-up byte may have been drained.
            return super().select(0 if loop._handoffs else None)
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise Deadlock("every task waits and no timer is due: the scenario can never go on")
        if timeout > 0:
            self._virtual_loop._jump(timeout)
        return []


class Deadlock(RuntimeError):
    """Nothing can ever run again: every task waits on something no timer will bring."""


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """The event loop of a scenario: virtual time, machines that can freeze and die."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timer_count = 0
        # Threads working outside the loop right now (see run_outside).
        self._outside_work = 0
        # One token per callback a thread queued and the loop has not run yet (a deque:
        # appended by the thread, taken by the loop, safely).
        self._handoffs: collections.deque[None] = collections.deque()
        self._machine_tasks: dict[str, set[_MachineTask]] = {}
        self._frozen: set[str] = set()
        # Killed tasks stay referenced, so that no garbage collection runs their cleanup.
        self._graveyard: list[_MachineTask] = []
        self._parked: dict[str, list[tuple[_MachineTask, BaseException | None]]] = {}
        super().__init__(_JumpingSelector(self))
        self.set_task_factory(self._make_task)  # type: ignore[arg-type]
        # Timers a hair apart run in one pass on a real loop; on virtual time they keep order.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._now

    # The overrides take *args as Any: typeshed's TypeVarTuple signatures cannot be
    # forwarded through `fire` below without losing them.
    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        when = self._now + delay
        if delay > 0 and when <= self._now:
            # A delay below the float's resolution at `now` still moves time on: code that
            # waits "until its plan" in tiny steps must get there.
            when = math.nextafter(self._now, math.inf)
        return self.call_at(when, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        def fire() -> None:
            # A timer runs at its own moment even when the loop took it a hair early
            # (clock resolution): time is never behind a timer that fired.
            if self._now < when:
                self._now = when
            callback(*args)

        self._check_closed()  # type: ignore[attr-defined]
        self._timer_count += 1
        timer = _OrderedTimer(when, fire, (), self, context, self._timer_count)
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def _jump(self, timeout: float) -> None:
        # To the due timer's own moment, not now + timeout: sums of float steps drift
        # (0.1 * 10 is 0.9999999999999999), and code that compares loop.time() with the
        # moment it planned would spin forever a hair short of it.
        scheduled = self._scheduled  # type: ignore[attr-defined]
        target = self._now + timeout
        if scheduled:
            target = max(target, scheduled[0]._when)
        self._now = target

    @staticmethod
    def _make_task(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kw: Any
    ) -> asyncio.Task[Any]:
        assert isinstance(loop, VirtualTimeLoop)
        return _MachineTask(coro, loop=loop, **kw)

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        # Inline: a thread would let virtual time jump while it works.
        future: ConcurrentFuture[Any] = ConcurrentFuture()
        try:
            future.set_result(func(*args))
        except BaseException as exc:  # handed to the awaiting task, as a thread would
            future.set_exception(exc)
        return asyncio.wrap_future(future, loop=self)

    # -- machines ---------------------------------------------------------------

    def spawn(self, machine: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start `coro` as a task of `machine` (and so are the tasks it creates)."""
        context = contextvars.copy_context()
        context.run(current_machine.set, machine)
        return self.create_task(coro, context=context)

    def freeze(self, machine: str) -> None:
        self._frozen.add(machine)

    def thaw(self, machine: str) -> None:
        self._frozen.discard(machine)
        for task, exc in self._parked.pop(machine, []):
            self.call_soon(task._Task__step, exc)

    def kill(self, machine: str) -> None:
        """The machine's tasks never run again; a later machine of the same name is new."""
        self._frozen.discard(machine)
        self._parked.pop(machine, None)
        for task in self._machine_tasks.pop(machine, set()):
            task.dead = True
            task._log_destroy_pending = False  # dropped on purpose, as a killed process's
            self._graveyard.append(task)

    def discard_all(self) -> None:
        """End of the scenario: close every coroutine still held, while the loop exists.

        Left to the garbage collector, killed and unfinished coroutines would run their
        cleanup at some later moment, in whatever runs then, against a closed loop."""
        tasks = list(self._graveyard) + [t for ts in self._machine_tasks.values() for t in ts]
        self._graveyard.clear()
        self._machine_tasks.clear()
        self._parked.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for task in tasks:
                task.dead = True
                task._log_destroy_pending = False
                with contextlib.suppress(BaseException):
                    task.get_coro().close()
            # Coroutines only the dropped tasks referred to: finalised now, loop still open.
            gc.collect()

    def tasks_of(self, machine: str) -> int:
        return len(self._machine_tasks.get(machine, ()))

    # -- work in a thread, with time standing still ---------------------------------

    async def run_outside(self, work: Callable[[], Any]) -> Any:
        """Run blocking `work` in a thread while virtual time stands still; the thread
        hands coroutines to the loop with `call_inside`, and time flows only while the
        thread waits for one of them."""
        done: asyncio.Future[Any] = self.create_future()

        def finish(result: Any, error: BaseException | None) -> None:
            self._handoffs.popleft()
            self._outside_work -= 1
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)

        def thread() -> None:
            try:
                result = work()
            except BaseException as exc:  # handed to the awaiting task
                self._hand_over(finish, None, exc)
            else:
                self._hand_over(finish, result, None)

        self._outside_work += 1
        threading.Thread(target=thread, name="scenario-command", daemon=True).start()
        return await done

    def call_inside(self, machine: str, coro: Coroutine[Any, Any, Any]) -> Any:
        """From the thread of run_outside: run `coro` on the loop as `machine`, wait for it."""
        result: ConcurrentFuture[Any] = ConcurrentFuture()

        def begin() -> None:
            self._handoffs.popleft()
            self._outside_work -= 1
            task = self.spawn(machine, coro)

            def end(task: asyncio.Task[Any]) -> None:
                self._outside_work += 1
                if task.cancelled():
                    result.set_exception(asyncio.CancelledError())
                elif task.exception() is not None:
                    result.set_exception(task.exception())  # type: ignore[arg-type]
                else:
                    result.set_result(task.result())

            task.add_done_callback(end)

        self._hand_over(begin)
        return result.result()

    def _hand_over(self, callback: Callable[..., None], *args: Any) -> None:
        self._handoffs.append(None)
        self.call_soon_threadsafe(callback, *args)
