"""The store check behind /-/ready and /metrics: one write per ``ttl`` whatever the scrape rate."""

from __future__ import annotations

import asyncio

from notifier.health import StoreCheck
from notifier.store.base import StoreUnavailable
from notifier.store.memory import MemoryStore
from notifier.testing import ManualClock


class _CountedPings(MemoryStore):
    """A MemoryStore that counts its pings and fails them while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.pings = 0
        self.down = False

    async def ping(self) -> None:
        self.pings += 1
        await asyncio.sleep(0)  # let concurrent checks pile up behind this one
        if self.down:
            raise StoreUnavailable("store down")


async def test_checks_within_the_ttl_share_one_ping() -> None:
    store, clock = _CountedPings(), ManualClock()
    check = StoreCheck(store, ttl=1.0, clock=clock)
    results = await asyncio.gather(*(check.check() for _ in range(10)))
    assert results == [None] * 10
    clock.advance(0.5)
    assert await check.check() is None
    assert store.pings == 1

    clock.advance(0.5)
    assert await check.check() is None
    assert store.pings == 2


async def test_a_failed_check_is_reported_until_a_later_one_passes() -> None:
    store, clock = _CountedPings(), ManualClock()
    check = StoreCheck(store, ttl=1.0, clock=clock)
    store.down = True
    problem = await check.check()
    assert isinstance(problem, StoreUnavailable)
    store.down = False
    assert await check.check() is problem  # still within the ttl
    clock.advance(1.0)
    assert await check.check() is None
    assert store.pings == 2


async def test_a_failure_seen_elsewhere_is_reported_at_once() -> None:
    store, clock = _CountedPings(), ManualClock()
    check = StoreCheck(store, ttl=1.0, clock=clock)
    assert await check.check() is None
    problem = StoreUnavailable("enqueue failed")
    check.failed(problem)
    assert await check.check() is problem
    clock.advance(1.0)
    assert await check.check() is None  # checked again: the store answers
    assert store.pings == 2
