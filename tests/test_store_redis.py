"""What only the Redis store promises: replicas, outages, TLS and passwords, JSON rows.

The shared semantics are in ``tests/store_contract.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import trustme
from redis.exceptions import ResponseError

from notifier.dedup import FIRING_ENTRY_RETENTION
from notifier.store.base import StoreUnavailable
from notifier.store.redis import _SKIP_SCAN, RedisStore
from notifier.store.redis_batch import ScriptBatcher
from tests.redis_server import (
    PrivateRedis,
    free_port,
    fresh_prefix,
    replica_stores,
    require_redis,
)
from tests.store_contract import (
    assert_one_change_wins,
    ids,
    log_job,
    new_incident,
    planned,
    record,
    step_timer,
)

PASSWORD = "s3cret-redis-pass"


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    async with replica_stores() as both:
        yield both


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, free_port(), "--requirepass", PASSWORD)
    server.start()
    yield server
    server.stop()


async def wait_subscribed(url: str, store: RedisStore, listeners: int) -> None:
    """Wait until ``listeners`` connections listen for ``store``'s wake-ups (PUBSUB NUMSUB)."""
    channel = f"{store.prefix}wake"
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        for _ in range(500):
            [(_, count)] = await client.pubsub_numsub(channel)
            if count >= listeners:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{listeners} listener(s) on {channel} never came")
    finally:
        await client.aclose()


async def assert_enqueue_wakes(waiting: RedisStore, enqueuing: RedisStore, job: str) -> None:
    """An enqueue on ``enqueuing`` ends a wait on ``waiting`` (that would last an hour)."""
    waiter = asyncio.create_task(waiting.wait_for_work(3600.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await enqueuing.enqueue([planned(job)], now=100.0)
    await asyncio.wait_for(waiter, 30.0)


async def test_enqueue_on_one_replica_wakes_the_other(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    first, second = replicas
    started = time.monotonic()
    await first.wait_for_work(0.2)  # nothing published: waits the timeout
    assert time.monotonic() - started >= 0.19
    await assert_enqueue_wakes(first, second, "a")


async def test_a_cancelled_wait_still_hears_the_next_wake_up(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    """The dispatcher cancels ``wait_for_work`` whenever it is woken in-process: the
    subscription must survive that and hear the next enqueue."""
    first, second = replicas
    for _ in range(3):
        waiter = asyncio.create_task(first.wait_for_work(5.0))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    await assert_enqueue_wakes(first, second, "b")


async def test_another_replica_takes_over_an_expired_lease(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    first, second = replicas
    await first.enqueue([planned("a")], now=100.0)
    assert [job.id for job in await first.claim(limit=1, lease=30.0, now=100.0)] == ["a"]
    assert await second.claim(limit=1, lease=30.0, now=129.0) == []
    assert [job.id for job in await second.claim(limit=1, lease=30.0, now=130.0)] == ["a"]


async def test_two_replicas_change_an_incident_once(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    await assert_one_change_wins(*replicas)


async def test_incidents_and_timers_are_json_and_leave_no_index_behind(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    store, _ = replicas
    opened = new_incident("i1")
    step = step_timer(opened, 120.0)
    await store.open_incident(opened, [step])
    raw = aioredis.from_url(require_redis(), decode_responses=True)
    try:
        stored = json.loads(await raw.hget(f"{store.prefix}incident", "i1"))
        timer = json.loads(await raw.hget(f"{store.prefix}timer", step.id))
        assert await store.cancel_timers(step.group) == 1
        await store.finish_timer("unknown")
        leftovers = [
            await raw.exists(f"{store.prefix}{name}")
            for name in ("timer", "timer_due", "timer_key", "timer_group")
        ]
    finally:
        await raw.aclose()
    assert stored["id"] == "i1"
    assert stored["state"] == "open"
    assert timer["due_at"] == 120.0
    assert timer["data"] == {"incident": "i1", "epoch": 1}
    assert leftovers == [0, 0, 0, 0]


async def test_jobs_are_json_and_log_entries_are_collected_by_ttl(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    store, _ = replicas
    firing = planned("a", "g", repeat=60.0)
    resolved = log_job("b", "g", (), firing.firing)
    now = time.time()
    await store.enqueue([firing], now=now)
    raw = aioredis.from_url(require_redis(), decode_responses=True)
    try:
        payload = await raw.hget(f"{store.prefix}payload", "a")
        [entry_key] = [key async for key in raw.scan_iter(f"{store.prefix}nflog:*")]
        firing_ttl_ms = await raw.pttl(entry_key)
        entry = json.loads(await raw.get(entry_key))
        await store.enqueue([resolved], now=now + 1)
        resolved_ttl_ms = await raw.pttl(entry_key)
    finally:
        await raw.aclose()
    assert payload is not None
    assert json.loads(payload) == firing.notification.model_dump(mode="json")
    assert entry == {
        "firing": sorted(firing.firing),
        "resolved": [],
        "at": now,
        "expires_at": now + FIRING_ENTRY_RETENTION,
    }
    assert FIRING_ENTRY_RETENTION * 1000 - 1000 < firing_ttl_ms <= FIRING_ENTRY_RETENTION * 1000
    assert 119_000 < resolved_ttl_ms <= 120_000  # the group resolved: 2 × repeat_interval


async def test_the_channel_field_lets_a_claim_skip_and_leaves_with_the_job(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    store, _ = replicas
    await store.enqueue([planned("a", channel="mail"), planned("b", channel="mail")], now=100.0)
    raw = aioredis.from_url(require_redis(), decode_responses=True)
    channels = f"{store.prefix}channel"
    try:
        assert await raw.hgetall(channels) == {"a": "mail", "b": "mail"}
        await raw.hdel(channels, "b")  # as a job stored before the field existed
        skip = {"mail": 0}
        assert ids(await store.claim(limit=5, lease=30.0, now=100.0, channel_limits=skip)) == ["b"]
        assert ids(await store.claim(limit=5, lease=30.0, now=100.0)) == ["a"]
        await store.complete(record("a", at=101.0))
        await store.complete(record("b", at=101.0))
        assert await raw.hgetall(channels) == {}
    finally:
        await raw.aclose()


async def test_a_skipping_claim_looks_past_a_bounded_number_of_jobs(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    store, _ = replicas
    backlog = [planned(f"mail-{i:03}", channel="mail") for i in range(_SKIP_SCAN + 1)]
    await store.enqueue(backlog, now=100.0)
    await store.enqueue([planned("slack")], now=101.0)
    skip = {"mail": 0}
    # Behind one job more than the bound: this claim stops looking before it ...
    assert await store.claim(limit=1, lease=30.0, now=101.0, channel_limits=skip) == []
    # ... and a claim once the backlog ahead has shrunk finds it.
    assert ids(await store.claim(limit=1, lease=30.0, now=101.0)) == ["mail-000"]
    assert ids(await store.claim(limit=1, lease=30.0, now=101.0, channel_limits=skip)) == ["slack"]


async def test_unreachable_redis_is_unavailable_and_the_error_hides_the_password() -> None:
    store = RedisStore(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", prefix=fresh_prefix())
    with pytest.raises(StoreUnavailable) as opening:
        await store.open()
    with pytest.raises(StoreUnavailable) as enqueueing:
        await store.enqueue([planned("a")], now=100.0)
    await store.wait_for_work(0.05)  # a hint only: it never raises
    await store.close()
    for error in (opening.value, enqueueing.value):
        assert "127.0.0.1" in str(error)
        assert PASSWORD not in str(error)


async def test_wrong_password_is_unavailable(private_redis: PrivateRedis) -> None:
    store = RedisStore(f"redis://:wrong@127.0.0.1:{private_redis.port}/0")
    with pytest.raises(StoreUnavailable, match="AuthenticationError"):
        await store.open()
    await store.close()


async def test_store_recovers_by_itself_when_redis_comes_back(
    private_redis: PrivateRedis,
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{private_redis.port}/0"
    store, other = RedisStore(url), RedisStore(url)
    await store.open()
    await other.open()
    try:
        await store.enqueue([planned("before")], now=100.0)
        private_redis.stop()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.enqueue([planned("during")], now=101.0)
        await store.wait_for_work(0.05)  # no exception while Redis is away
        private_redis.start()  # empty again: this server keeps nothing on disk
        await store.ping()
        assert (await store.enqueue([planned("after")], now=102.0)).enqueued == ("after",)
        assert [job.id for job in await store.claim(limit=5, lease=30.0, now=102.0)] == ["after"]
        # The wake-up subscription comes back too: the enqueue ends an hour-long wait.
        waiter = asyncio.create_task(store.wait_for_work(3600.0))
        await wait_subscribed(url, store, 1)
        await other.enqueue([planned("woken")], now=103.0)
        await asyncio.wait_for(waiter, 30.0)
    finally:
        await store.close()
        await other.close()


async def test_rediss_with_a_password_in_the_url(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    port = free_port()
    server = PrivateRedis(
        tmp_path,
        port,
        *("--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"),
        *("--tls-cert-file", str(tmp_path / "cert.pem")),
        *("--tls-key-file", str(tmp_path / "key.pem")),
        *("--tls-ca-cert-file", str(tmp_path / "ca.pem")),
        *("--requirepass", PASSWORD),
    )
    server.start()
    store = RedisStore(
        f"rediss://:{PASSWORD}@localhost:{port}/0?ssl_ca_certs={tmp_path / 'ca.pem'}"
    )
    try:
        await store.open()
        assert (await store.enqueue([planned("a")], now=100.0)).enqueued == ("a",)
        [job] = await store.claim(limit=1, lease=30.0, now=100.0)
        assert job.notification == planned("a").notification
    finally:
        await store.close()
        server.stop()


async def test_store_opened_while_redis_is_down_works_once_it_is_up(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path, free_port())
    url = f"redis://127.0.0.1:{server.port}/0"
    store, other = RedisStore(url), RedisStore(url)
    with pytest.raises(StoreUnavailable):
        await store.open()
    server.start()
    try:
        await other.open()
        waiter = asyncio.create_task(store.wait_for_work(3600.0))  # subscribes now
        await wait_subscribed(url, store, 2)  # ``other`` listens since its open()
        await other.enqueue([planned("a")], now=100.0)
        await asyncio.wait_for(waiter, 30.0)
        assert [job.id for job in await store.claim(limit=1, lease=30.0, now=100.0)] == ["a"]
    finally:
        await store.close()
        await other.close()
        server.stop()


async def test_pipelined_calls_each_get_their_own_result_or_error() -> None:
    client = aioredis.from_url(require_redis(), decode_responses=True)
    script = client.register_script(
        "if ARGV[1] == 'bad' then return redis.error_reply('bad call') end return ARGV[1]"
    )
    batcher = ScriptBatcher(client)
    try:
        results = await asyncio.gather(
            *(batcher.call(script, [], [arg]) for arg in ["a", "bad", "c"]),
            return_exceptions=True,
        )
    finally:
        await client.aclose()
    assert results[0] == "a"
    assert isinstance(results[1], ResponseError)
    assert "bad call" in str(results[1])
    assert results[2] == "c"


async def test_scripts_redis_has_forgotten_are_loaded_again_and_run_once(
    private_redis: PrivateRedis,
) -> None:
    """After ``SCRIPT FLUSH`` (as after a restart) calls answer ``NOSCRIPT`` without running;
    they are sent again once the scripts are loaded, so each runs exactly once."""
    url = f"redis://:{PASSWORD}@127.0.0.1:{private_redis.port}/0"
    store = RedisStore(url)
    await store.open()
    client = aioredis.from_url(url)
    try:
        await store.enqueue([planned("before")], now=100.0)
        await client.script_flush()
        both = await asyncio.gather(
            store.enqueue([planned("a")], now=101.0), store.enqueue([planned("b")], now=101.0)
        )
        assert [result.enqueued for result in both] == [("a",), ("b",)]
        claimed = await store.claim(limit=10, lease=30.0, now=102.0)
        assert ids(claimed) == ["before", "a", "b"]
        await store.complete(record("a", at=103.0))
        assert [r.job_id for r in await store.deliveries(10)] == ["a"]
    finally:
        await client.aclose()
        await store.close()
