"""Replicas racing on one heartbeat, on the stores that replicas share (and SQLite).

Several ``HeartbeatWatch``es over one store handle the same due timer, or the same
return, at once: the compare-and-set lets exactly one of them tell the channels.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.heartbeats.watch import HeartbeatWatch
from notifier.store.base import Store
from notifier.store.redis import RedisStore
from notifier.store.sqlite import SQLiteStore
from notifier.testing import ManualClock, config_for_tests, make_payload
from tests.redis_server import fresh_prefix, require_redis

REPLICAS = 6
HEARTBEATS = [
    {
        "name": "watchdog",
        "matchers": ['alertname="Watchdog"'],
        "timeout": "1m",
        "channels": ["a", "b"],
    }
]


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "notifier.db")
        await sqlite.open()
        yield sqlite
        await sqlite.close()
    else:
        redis = RedisStore(require_redis(), prefix=fresh_prefix())
        await redis.open()
        yield redis
        await redis.delete_all_keys()
        await redis.close()


def _replicas(store: Store, clock: ManualClock) -> list[HeartbeatWatch]:
    loaded = config_for_tests({"a": {}, "b": {}}, [], heartbeats=HEARTBEATS)
    return [HeartbeatWatch(store, loaded.heartbeats, clock=clock) for _ in range(REPLICAS)]


async def test_racing_replicas_tell_a_miss_once_and_a_return_once(store: Store) -> None:
    clock = ManualClock(1_800_000_000.0)
    replicas = _replicas(store, clock)
    await asyncio.gather(*(replica.arm(clock()) for replica in replicas))
    clock.advance(60)
    now = clock()
    (timer,) = await store.claim_timers(10, 30.0, now)
    await asyncio.gather(*(replica.on_timer(timer) for replica in replicas))
    missed = await store.claim(100, 1e9, now)
    assert sorted(job.notification.channel for job in missed) == ["a", "b"]
    assert {job.notification.status for job in missed} == {"firing"}

    now += 600
    payload = make_payload(alertname="Watchdog")
    await asyncio.gather(
        *(replica.renew(replica.take(payload).renewals, now) for replica in replicas)
    )
    back = await store.claim(100, 1e9, now)
    assert sorted(job.notification.channel for job in back) == ["a", "b"]
    assert {job.notification.status for job in back} == {"resolved"}
    state = await store.get_heartbeat("watchdog")
    assert state is not None and state.status == "ok"
    assert await store.next_timer_at() == now + 60
