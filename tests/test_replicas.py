"""Several replicas on one Redis: one notification per channel, no loss when a replica or
Redis dies.

Two real ``notifier serve`` processes (different ports) share a private redis-server the
test starts on a free port, in its own folder, with AOF on and ``appendfsync always``;
each replica has webhook channels pointing at a sink in the test's event loop.

- An HA pair (both Alertmanagers) posting the same payloads to both replicas at the same
  moment produces exactly one notification per channel and group, and no job is
  delivered twice: the log entry compare-and-set and the claim are each one Lua script.
- A replica SIGKILLed while the slow sink holds its requests loses nothing: its leases
  run out and the other replica delivers every accepted notification (at-least-once:
  a send under way at the kill may be repeated, at most one per worker of the dead one).
- Redis crashing (SIGKILL) while the replicas run: meanwhile both answer 503 on the
  receiver and on ``/-/ready`` (so Alertmanager retries and a load balancer drains
  them); once Redis is back on the same folder they recover by themselves, and every
  notification acknowledged (202) before the crash is delivered, since ``appendfsync
  always`` fsyncs each write before Redis replies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.processes import (
    TOKEN,
    NotifierProcess,
    WebhookSink,
    serve_app,
    wait_until,
    webhook_payload,
)
from tests.redis_server import PrivateRedis, free_port, started_redis
from tests.stand_ins import write_config

WORKERS = 4
LEASE = "2s"
SINK_DELAY = 0.3


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, durable as deployed with ``appendfsync always``."""
    with started_redis(
        tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always"
    ) as server:
        yield server


def replica_config(
    path: Path, redis: PrivateRedis, channels: Mapping[str, str], workers: int = WORKERS
) -> Path:
    """A replica's config: the shared Redis, one webhook channel per ``name: url``."""
    return write_config(
        path,
        {name: {"type": "webhook", "url": url} for name, url in channels.items()},
        default_channels=list(channels),
        storage={"url": f"redis://127.0.0.1:{redis.port}/0", "lease": LEASE, "workers": workers},
        defaults={"timeout": "1s"},
    )


@asynccontextmanager
async def running_replicas(
    configs: Sequence[Path], log_dir: Path
) -> AsyncIterator[list[NotifierProcess]]:
    """``notifier serve`` per config, started together; all SIGKILLed on the way out."""
    replicas: list[NotifierProcess] = []
    try:
        for index, config in enumerate(configs):
            log = log_dir / f"replica-{index}.log"
            replicas.append(NotifierProcess(config, free_port(), log, {}))
        await asyncio.gather(*(replica.wait_ready() for replica in replicas))
        yield replicas
    finally:
        for replica in replicas:
            replica.kill()
        for replica in replicas:
            replica.dump_log(last=80)


async def post(replica: NotifierProcess, payload: dict[str, Any]) -> tuple[int, Any]:
    """POST a webhook payload; the status and the JSON body."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(f"{replica.url}/api/v1/alerts", json=payload, headers=headers) as response,
    ):
        return response.status, await response.json()


async def ready_status(replica: NotifierProcess) -> int:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{replica.url}/-/ready") as response,
    ):
        return response.status


async def all_ready(replicas: Sequence[NotifierProcess]) -> bool:
    statuses = await asyncio.gather(*(ready_status(replica) for replica in replicas))
    return statuses == [200] * len(replicas)


def alertnames(sink: WebhookSink, path: str | None = None) -> set[str]:
    return {
        alert["labels"]["alertname"]
        for request in sink.requests
        if path is None or request.path == path
        for alert in request.json()["alerts"]
    }


async def all_idle(replicas: Sequence[NotifierProcess]) -> bool:
    return all(await asyncio.gather(*(replica.idle() for replica in replicas)))


async def test_ha_pair_posting_the_same_payloads_gives_one_notification_per_channel(
    tmp_path: Path, redis: PrivateRedis
) -> None:
    sink = WebhookSink()
    groups = 20
    async with serve_app(sink.app()) as sink_url:
        config = replica_config(
            tmp_path / "notifier.yaml",
            redis,
            {"first": f"{sink_url}/first", "second": f"{sink_url}/second"},
        )
        async with running_replicas([config, config], tmp_path) as (one, two):
            payloads = [webhook_payload(f"Pair{i:02d}") for i in range(groups)]
            # Every payload reaches both replicas at the same moment, as from an HA pair.
            answers = await asyncio.gather(
                *(post(replica, payload) for payload in payloads for replica in (one, two))
            )
            assert [status for status, _ in answers] == [202] * 2 * groups
            for index in range(groups):
                pair = [body for _, body in answers[2 * index : 2 * index + 2]]
                # Two channels: two notifications between the replicas, two dropped.
                assert sum(body["notifications"] for body in pair) == 2, pair
                assert sum(body["deduplicated"] for body in pair) == 2, pair

            await wait_until(lambda: len(sink.requests) >= 2 * groups, "both channels", 15)
            await wait_until(lambda: all_idle([one, two]), "both queues to empty", 10)
            await asyncio.sleep(0.5)  # a second notification would have come by now

    names = {f"Pair{i:02d}" for i in range(groups)}
    for path in ("/first", "/second"):
        at_path = [r for r in sink.requests if r.path == path]
        assert len(at_path) == groups, f"{path}: {len(at_path)} notifications for {groups} groups"
        assert alertnames(sink, path) == names
    assert sink.duplicates() == 0  # no job was claimed by both replicas
    assert len(sink.requests) == 2 * groups


async def test_replica_killed_mid_delivery_the_other_delivers_its_jobs(
    tmp_path: Path, redis: PrivateRedis
) -> None:
    sink = WebhookSink(delay=SINK_DELAY)
    count = 40
    async with serve_app(sink.app()) as sink_url:
        # One channel ("sink") in both; the URL path tells which replica sent a request.
        doomed_config = replica_config(tmp_path / "a.yaml", redis, {"sink": f"{sink_url}/a"})
        survivor_config = replica_config(tmp_path / "b.yaml", redis, {"sink": f"{sink_url}/b"})
        async with running_replicas([doomed_config, survivor_config], tmp_path) as replicas:
            doomed, survivor = replicas
            names = [f"Kill{i:02d}" for i in range(count)]
            answers = await asyncio.gather(
                *(post(replicas[i % 2], webhook_payload(n)) for i, n in enumerate(names))
            )
            assert [status for status, _ in answers] == [202] * count

            def doomed_busy() -> list[str]:
                answered = {id(r) for r in sink.answered}
                return [r.key for r in sink.requests if r.path == "/a" and id(r) not in answered]

            await wait_until(lambda: bool(doomed_busy()), "replica a mid-delivery", 10)
            held = doomed_busy()
            doomed.kill()  # SIGKILL, no await since the check: the sink still holds ``held``
            killed_at = time.monotonic()
            assert len(alertnames(sink)) < count, "everything was delivered before the kill"

            await wait_until(
                lambda: alertnames(sink) == set(names), "every accepted payload at the sink", 20
            )
            await wait_until(survivor.idle, "the shared queue to empty", 10)

    keys = sink.keys()
    retaken = [r for r in sink.requests if r.path == "/b" and r.key in held]
    print(
        f"{len(keys)} requests, {len(set(keys))} distinct jobs, {sink.duplicates()} duplicates;"
        f" {len(held)} held at the kill, retaken by b after"
        f" {[round(r.at - killed_at, 2) for r in retaken]} s"
    )
    assert all(keys) and len(set(keys)) == count
    # The jobs the dead replica was sending were leased to it; the survivor took them over.
    assert {r.key for r in retaken} == set(held)
    assert sink.duplicates() <= WORKERS  # only sends under way at the kill are repeated


async def test_redis_crash_replicas_answer_503_then_recover_and_lose_nothing(
    tmp_path: Path, redis: PrivateRedis
) -> None:
    sink = WebhookSink(delay=SINK_DELAY)
    workers = 2  # slow delivery, so most jobs are still queued in Redis when it dies
    count = 30
    async with serve_app(sink.app()) as sink_url:
        config = replica_config(
            tmp_path / "notifier.yaml", redis, {"sink": f"{sink_url}/hook"}, workers
        )
        async with running_replicas([config, config], tmp_path) as replicas:
            names = [f"Before{i:02d}" for i in range(count)]
            payloads = [webhook_payload(name) for name in names]
            answers = await asyncio.gather(
                *(post(replicas[i % 2], p) for i, p in enumerate(payloads))
            )
            assert [status for status, _ in answers] == [202] * count

            redis.kill()  # a crash: only what AOF fsynced survives, i.e. every reply given
            delivered_at_crash = len(alertnames(sink))
            assert delivered_at_crash < count // 2, "most jobs were delivered before the crash"

            for replica in replicas:
                status, body = await post(replica, webhook_payload("During"))
                assert status == 503, body
                assert await ready_status(replica) == 503
                assert (await replica.get_json("/api/v1/status"))["queue"] is None

            redis.start()  # the same port and folder: the AOF is replayed
            await wait_until(lambda: all_ready(replicas), "both replicas ready again", 15)
            for index, replica in enumerate(replicas):
                status, body = await post(replica, webhook_payload(f"After{index}"))
                assert (status, body["notifications"]) == (202, 1), body
            # The notification log survived too: an acknowledged payload posted again is dropped.
            status, body = await post(replicas[0], payloads[-1])
            assert (status, body["notifications"], body["deduplicated"]) == (202, 0, 1), body

            wanted = {*names, "After0", "After1"}
            await wait_until(
                lambda: wanted <= alertnames(sink), "every acknowledged payload at the sink", 30
            )
            await wait_until(lambda: all_idle(replicas), "the shared queue to empty", 10)

    keys = sink.keys()
    print(
        f"{len(keys)} requests, {len(set(keys))} distinct jobs, {sink.duplicates()} duplicates;"
        f" {delivered_at_crash} of {count} delivered before the crash"
    )
    assert all(keys) and len(set(keys)) == len(wanted)
    assert "During" not in alertnames(sink)  # answered 503: not stored, Alertmanager retries
    # A send under way when Redis died could not be marked done: at most one per worker.
    assert sink.duplicates() <= 2 * workers
