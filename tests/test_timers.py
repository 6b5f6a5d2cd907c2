"""``TimerLoop``: one loop hands each due timer to the handler of its kind (or kind prefix)."""

from __future__ import annotations

import asyncio
import time

from notifier.store.base import Timer
from notifier.store.memory import MemoryStore
from notifier.testing import ManualClock
from notifier.timers import TimerLoop


def timer(key: str, kind: str, due_at: float) -> Timer:
    return Timer(id=f"id-{key}", key=key, group=key, kind=kind, due_at=due_at, data={"k": key})


async def test_each_timer_goes_to_the_handler_of_its_kind_or_prefix() -> None:
    store, clock = MemoryStore(), ManualClock(1000.0)
    seen: list[tuple[str, str, float]] = []

    async def heartbeat(t: Timer, now: float) -> None:
        seen.append(("heartbeat", t.key, now))

    async def incident(t: Timer, now: float) -> None:
        seen.append(("incident", t.key, now))

    loop = TimerLoop(store, {"heartbeat": heartbeat, "incident": incident}, clock=clock)
    await store.schedule_timers(
        [
            timer("a", "heartbeat", 1000.0),
            timer("b", "incident.step", 999.0),
            timer("c", "heartbeat", 1001.0),  # not due yet
        ]
    )
    assert await loop.run_due() == 2
    assert seen == [("incident", "b", 1000.0), ("heartbeat", "a", 1000.0)]
    assert await store.next_timer_at() == 1001.0  # the handled ones are finished
    assert loop.handler_for("incidentally") is None


async def test_a_failing_handler_or_an_unknown_kind_leaves_the_timer_to_run_again() -> None:
    store, clock = MemoryStore(), ManualClock(1000.0)
    calls = 0

    async def flaky(t: Timer, now: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug, or a crash half-way")

    loop = TimerLoop(store, {"heartbeat": flaky}, clock=clock, lease=30.0)
    await store.schedule_timers([timer("a", "heartbeat", 1000.0), timer("b", "digest", 1000.0)])
    assert await loop.run_due() == 0
    clock.advance(29)
    assert await loop.run_due() == 0  # still leased
    clock.advance(1)
    assert await loop.run_due() == 1
    assert calls == 2
    assert await store.next_timer_at() == clock() + 30.0  # the unknown kind, leased again


async def test_the_running_loop_handles_timers_as_they_fall_due() -> None:
    store = MemoryStore()
    handled = asyncio.Event()

    async def handler(t: Timer, now: float) -> None:
        handled.set()

    loop = TimerLoop(store, {"heartbeat": handler})
    await loop.start()
    try:
        await store.schedule_timers([timer("a", "heartbeat", time.time() + 0.05)])
        loop.wake()
        async with asyncio.timeout(10):  # a bound for a hang
            await handled.wait()
    finally:
        await loop.stop()
    assert not loop.running
