"""A channel's rate limit holds for the deployment: with Redis, replicas share its bucket.

With the memory and SQLite stores (one process) the bucket is the in-process
``RateLimiter``; with Redis it is a hash in Redis that one Lua script call per send
draws from, so two replicas together send no faster than the configured rate. The last
test runs two real ``notifier serve`` processes on one private Redis and reads the
combined rate off the arrival times the sink recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from notifier.protection import RESERVE_AHEAD, RateLimiter, Reservation
from notifier.rate_limits import bucket_for
from notifier.store.memory import MemoryStore
from notifier.store.redis import RedisStore
from notifier.store.redis_rate_limit import RedisTokenBucket
from tests.processes import WebhookSink, serve_app, wait_until, webhook_payload
from tests.redis_server import (
    PrivateRedis,
    free_port,
    fresh_prefix,
    replica_stores,
    started_redis,
)
from tests.stand_ins import write_config
from tests.test_replicas import post, running_replicas

RATE = 2.0  # messages per second, the channel's rate_limit in the two-replica test
MESSAGES = 16
TURN = 1 / RATE  # seconds between two tokens of a bucket of burst 1


@pytest.fixture
async def stores() -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    async with replica_stores() as both:
        yield both


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with started_redis(tmp_path / "redis") as server:
        yield server


def test_single_process_stores_keep_the_in_process_bucket() -> None:
    assert isinstance(bucket_for(MemoryStore(), "slack", 1.0), RateLimiter)
    assert isinstance(bucket_for(None, "slack", 1.0), RateLimiter)


async def test_two_replicas_draw_from_one_bucket_and_are_spaced_one_token_apart(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    one, two = stores
    # A slow rate, so the calls below all fall within one slot's interval (10 s).
    first, second = bucket_for(one, "slack", 0.1), bucket_for(two, "slack", 0.1)
    assert isinstance(first, RedisTokenBucket)
    assert await first.acquire(0.0) == Reservation(0.0, reserved=True)  # one slot at once
    told = await second.acquire(0.0)  # the other replica's next slot is 10 s away, out of reach
    assert not told.reserved and 10.0 - RESERVE_AHEAD - 0.5 < told.wait <= 10.0 - RESERVE_AHEAD
    later = await first.acquire(0.0)  # and the next caller comes back one slot later
    assert not later.reserved and 20.0 - RESERVE_AHEAD - 0.5 < later.wait <= 20.0 - RESERVE_AHEAD
    other_channel = bucket_for(two, "email", 0.1)
    assert (await other_channel.acquire(0.0)).reserved  # a bucket per channel


async def test_slots_within_reach_are_reserved_across_replicas(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    one, two = stores
    first, second = bucket_for(one, "pager", 2.0), bucket_for(two, "pager", 2.0)
    turns = [await first.acquire(0.0), await second.acquire(0.0), await first.acquire(0.0)]
    assert [turn.reserved for turn in turns] == [True, True, True]
    # One schedule for both: the slots are half a second apart, whoever asked.
    assert [round(turn.wait * 2) / 2 for turn in turns] == [0.0, 0.5, 1.0]
    assert not (await second.acquire(0.0)).reserved  # 1.5 s ahead, beyond the reach


async def test_a_burst_is_shared_too(stores: tuple[RedisStore, RedisStore]) -> None:
    one, two = stores
    first, second = bucket_for(one, "sms", 0.1, burst=3), bucket_for(two, "sms", 0.1, burst=3)
    turns = [await first.acquire(0.0), await second.acquire(0.0), await first.acquire(0.0)]
    assert turns == [Reservation(0.0, reserved=True)] * 3
    assert not (await second.acquire(0.0)).reserved


async def test_unreachable_redis_holds_the_rate_in_process_instead_of_failing() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", prefix=fresh_prefix())
    bucket = bucket_for(store, "slack", 0.1)
    assert await bucket.acquire(100.0) == Reservation(0.0, reserved=True)
    assert await bucket.acquire(100.0) == Reservation(
        pytest.approx(10.0 - RESERVE_AHEAD), reserved=False
    )
    await store.close()


def most_in_any_window(arrivals: Sequence[float], window: float) -> int:
    """The most arrivals within ``window`` seconds of one another."""
    ordered = sorted(arrivals)
    return max(
        sum(1 for t in ordered[i:] if t - start <= window) for i, start in enumerate(ordered)
    )


async def test_two_replicas_together_send_no_faster_than_the_channel_rate(
    tmp_path: Path, redis: PrivateRedis
) -> None:
    sink = WebhookSink()
    async with serve_app(sink.app()) as sink_url:
        configs = [
            write_config(
                tmp_path / f"{name}.yaml",
                {"hook": {"type": "webhook", "url": f"{sink_url}/{name}", "rate_limit": RATE}},
                default_channels=["hook"],
                storage={"url": f"redis://127.0.0.1:{redis.port}/0", "lease": "5s", "workers": 4},
            )
            for name in ("a", "b")
        ]
        async with running_replicas(configs, tmp_path) as replicas:
            answers = await asyncio.gather(
                *(post(replicas[i % 2], webhook_payload(f"Rate{i:02d}")) for i in range(MESSAGES))
            )
            assert [status for status, _ in answers] == [202] * MESSAGES
            # At the rate, the last one is due after (MESSAGES - 1) / RATE seconds.
            await wait_until(lambda: len(sink.requests) >= MESSAGES, "every message", 90)

    arrivals = [request.at for request in sink.requests]
    by_replica = {name: sum(r.path == f"/{name}" for r in sink.requests) for name in "ab"}
    assert len(arrivals) == MESSAGES, by_replica
    # One bucket of burst 1 grants its tokens a turn apart; allowing half a turn of jitter
    # between a grant and its arrival, no two arrivals fall within half a turn. (With a
    # bucket per replica, the two replicas' sends often arrive a few ms apart.)
    assert most_in_any_window(arrivals, TURN / 2) == 1, (by_replica, sorted(arrivals))
    # Over the whole run: the first message takes the one token saved up, each other one
    # waits its turn; a quarter of a turn is allowed for the jitter of the two arrivals.
    # (Each replica holding the rate alone, the two together send up to twice as fast.)
    span = max(arrivals) - min(arrivals)
    assert span >= (MESSAGES - 1.25) * TURN, (span, by_replica)
    # Nor much slower: a send that loses its slot costs at least one more turn.
    assert span < (MESSAGES - 1) * TURN + 1.5, (span, by_replica)
