"""The virtual-time loop: time jumps, machines freeze, thaw and die, threads hand work over."""

from __future__ import annotations

import asyncio
import time

import pytest

from havm.scenario.virtual_loop import Deadlock, VirtualTimeLoop


def run(loop: VirtualTimeLoop, coro) -> object:  # type: ignore[no-untyped-def]
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.discard_all()
        loop.close()


def test_an_hour_of_timers_takes_no_real_time() -> None:
    loop = VirtualTimeLoop()
    ticks: list[float] = []

    async def main() -> None:
        for _ in range(3600):
            await asyncio.sleep(1)
            ticks.append(loop.time())

    started = time.perf_counter()
    run(loop, main())
    assert ticks[0] == 1.0 and ticks[-1] == 3600.0 and len(ticks) == 3600
    assert time.perf_counter() - started < 5


def test_tenths_add_up_to_whole_seconds() -> None:
    # 0.1 added ten times is 0.9999999999999999: code waiting "until 1.0" must get there.
    loop = VirtualTimeLoop()

    async def main() -> float:
        target = 1.0
        while loop.time() < target:
            await asyncio.sleep(min(0.1, target - loop.time()))
        return loop.time()

    assert run(loop, main()) >= 1.0


def test_timers_due_at_one_moment_run_in_the_order_they_were_set() -> None:
    loop = VirtualTimeLoop()
    order: list[int] = []

    async def main() -> None:
        for i in range(50):
            loop.call_at(5.0, order.append, i)
        await asyncio.sleep(6)

    run(loop, main())
    assert order == list(range(50))


def test_a_frozen_machine_runs_nothing_and_resumes_where_it_was() -> None:
    loop = VirtualTimeLoop()
    beats: dict[str, list[float]] = {"a": [], "b": []}

    async def beat(name: str) -> None:
        while True:
            await asyncio.sleep(1)
            beats[name].append(loop.time())

    async def main() -> None:
        loop.spawn("a", beat("a"))
        loop.spawn("b", beat("b"))
        await asyncio.sleep(2.5)
        loop.freeze("a")
        await asyncio.sleep(3)
        loop.thaw("a")
        await asyncio.sleep(1.6)

    run(loop, main())
    assert beats["a"] == [1.0, 2.0, 5.5, 6.5]  # the beat due at 3.0 runs at the thaw
    assert beats["b"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_a_killed_machine_never_runs_again_not_even_its_cleanup() -> None:
    loop = VirtualTimeLoop()
    seen: list[str] = []

    async def victim() -> None:
        try:
            while True:
                await asyncio.sleep(1)
                seen.append("beat")
        finally:
            seen.append("cleanup")

    async def main() -> None:
        loop.spawn("v", victim())
        await asyncio.sleep(1.5)
        loop.kill("v")
        await asyncio.sleep(5)
        assert loop.tasks_of("v") == 0
        assert seen == ["beat"]  # (discard_all closes it at the very end, loop still open)

    run(loop, main())


def test_tasks_belong_to_the_machine_that_created_them() -> None:
    loop = VirtualTimeLoop()
    children: list[str] = []

    async def child() -> None:
        await asyncio.sleep(1)
        children.append("ran")

    async def parent() -> None:
        asyncio.get_running_loop().create_task(child())
        await asyncio.sleep(10)

    async def main() -> None:
        loop.spawn("p", parent())
        await asyncio.sleep(0.5)
        loop.kill("p")  # the child dies with it
        await asyncio.sleep(2)

    run(loop, main())
    assert children == []


def test_nothing_left_to_run_is_a_deadlock_not_a_hang() -> None:
    loop = VirtualTimeLoop()

    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(Deadlock):
        run(loop, main())


def test_a_thread_works_while_time_stands_still_and_hands_work_over() -> None:
    loop = VirtualTimeLoop()
    seen: list[tuple[str, float]] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1)
            seen.append(("tick", loop.time()))

    def blocking() -> float:
        time.sleep(0.05)  # real time passes; virtual time must not
        seen.append(("thread", loop.time()))
        loop.call_inside("client", asyncio.sleep(3))  # here virtual time flows
        seen.append(("thread", loop.time()))
        return loop.time()

    async def main() -> float:
        loop.spawn("t", ticker())
        await asyncio.sleep(0.5)
        return await loop.run_outside(blocking)

    assert run(loop, main()) == 3.5
    assert seen == [("thread", 0.5), ("tick", 1.0), ("tick", 2.0), ("tick", 3.0), ("thread", 3.5)]


def test_work_in_a_thread_runs_inline() -> None:
    loop = VirtualTimeLoop()

    async def main() -> int:
        return await asyncio.to_thread(lambda: 41 + 1)

    assert run(loop, main()) == 42
