"""The timer loop: hands each due timer to its kind's owner, finishes it only once handled."""

from __future__ import annotations

import asyncio

from notifier.store.base import StoreUnavailable, Timer
from notifier.store.memory import MemoryStore
from notifier.testing import ManualClock
from notifier.timers import TimerLoop
from tests.processes import wait_until


def timer(kind: str, key: str, due_at: float) -> Timer:
    return Timer(id=f"id-{key}", key=key, group="g", kind=kind, due_at=due_at, data={"n": 1})


async def test_due_timers_go_to_their_owner_and_are_finished() -> None:
    store, clock = MemoryStore(), ManualClock()
    seen: list[str] = []

    async def handle(t: Timer) -> None:
        seen.append(t.key)

    loop = TimerLoop(store, {"incident": handle}, lease=60, clock=clock)
    await store.schedule_timers(
        [timer("incident.step", "a", clock()), timer("incident.step", "b", clock() + 10)]
    )
    assert await loop.run_due() == 1
    assert seen == ["a"]
    clock.advance(10)
    assert await loop.run_due() == 1
    assert await store.next_timer_at() is None


async def test_a_failing_handler_leaves_the_timer_to_fire_again_after_its_lease() -> None:
    store, clock = MemoryStore(), ManualClock()
    calls = 0

    async def handle(t: Timer) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("down")

    loop = TimerLoop(store, {"incident": handle}, lease=30, clock=clock)
    await store.schedule_timers([timer("incident.step", "a", clock())])
    assert await loop.run_due() == 0
    clock.advance(30)
    assert await loop.run_due() == 1 and calls == 2


async def test_a_kind_without_owner_is_left_alone() -> None:
    store, clock = MemoryStore(), ManualClock()
    loop = TimerLoop(store, {}, lease=30, clock=clock)
    await store.schedule_timers([timer("heartbeat.due", "a", clock())])
    assert await loop.run_due() == 0
    assert await store.next_timer_at() == clock() + 30  # leased, still there


async def test_the_running_loop_is_woken_for_a_timer_due_now() -> None:
    store = MemoryStore()
    fired = asyncio.Event()

    async def handle(t: Timer) -> None:
        fired.set()

    loop = TimerLoop(store, {"incident": handle}, lease=30, clock=lambda: 1000.0)
    await loop.start()
    try:
        await store.schedule_timers([timer("incident.step", "a", 1000.0)])
        loop.wake()
        await wait_until(fired.is_set, "the timer to fire", 10)
    finally:
        await loop.stop()
