"""Store throughput: enqueue, claim and complete operations per second, per store.

    .venv/bin/python -m bench.store_bench [--jobs 20000] [--concurrency 64] [--stores memory,sqlite]

Each phase runs ``--concurrency`` coroutines against one store until ``--jobs`` jobs are
through (every loop is bounded by the job count):

- enqueue:  ``enqueue`` calls of ``--per-call`` jobs each (a webhook payload fanning out);
- claim:    ``claim(limit=--batch)`` until the queue is empty (jobs claimed per second);
- complete: one ``complete`` call per job (the dispatcher's ack, group-committed);
- deliver:  the dispatcher's loop on a fresh backlog: claim a batch, complete each job
            concurrently; jobs delivered per second through the store;
- steady:   producers enqueue while the dispatchers deliver (the service's steady
            state): jobs per second through enqueue, claim and complete.

SQLite runs in a temporary folder (``--synchronous FULL`` or ``NORMAL``); Redis uses a
fresh key prefix on ``--redis-url`` and deletes its keys afterwards. The notification
is the four-alert fixture, so payload (de)serialisation is part of the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from notifier.dedup import PlannedJob
from notifier.notification import Notification
from notifier.payload import WebhookPayload
from notifier.store.base import DeliveryRecord, Store
from notifier.store.memory import MemoryStore
from notifier.store.redis import RedisStore
from notifier.store.sqlite import SQLiteStore

FIXTURE = (
    Path(__file__).resolve().parent.parent
    / "tests/fixtures/alertmanager/grouped_firing_4_alerts.json"
)
LEASE = 300.0


def planned_jobs(count: int, now: float) -> list[PlannedJob]:
    payload = WebhookPayload.model_validate_json(FIXTURE.read_text())
    run = uuid.uuid4().hex[:8]
    return [
        PlannedJob(
            Notification(
                job_id=f"{run}-{i}",
                channel="ops-slack",
                route="critical",
                received_at=now,
                receiver=payload.receiver,
                status=payload.status,
                group_key=payload.group_key,
                group_labels=payload.group_labels,
                common_labels=payload.common_labels,
                common_annotations=payload.common_annotations,
                external_url=payload.external_url,
                alerts=tuple(payload.alerts),
            ),
            channel="ops-slack",
            group=f"{run}-group-{i}",
            firing=frozenset(a.fingerprint for a in payload.alerts if a.status == "firing"),
            resolved=frozenset(a.fingerprint for a in payload.alerts if a.status == "resolved"),
            send_resolved=True,
            repeat_interval=3600.0,
        )
        for i in range(count)
    ]


def delivered(job_id: str, now: float) -> DeliveryRecord:
    return DeliveryRecord(
        job_id=job_id,
        channel="ops-slack",
        channel_type="slack",
        outcome="delivered",
        reason=None,
        error="ok",
        latency=0.05,
        at=now,
        received_at=now,
        severity="critical",
        status="firing",
        alerts=4,
    )


async def run_phase(concurrency: int, worker: Callable[[], Awaitable[int]]) -> tuple[int, float]:
    """Run ``concurrency`` copies of ``worker``; return the items they handled and seconds."""
    start = time.perf_counter()
    counts = await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sum(counts), time.perf_counter() - start


async def bench_store(store: Store, args: argparse.Namespace) -> dict[str, float]:
    now = time.time()
    figures: dict[str, float] = {}

    async def enqueue_all(jobs: list[PlannedJob]) -> None:
        chunks = [jobs[i : i + args.per_call] for i in range(0, len(jobs), args.per_call)]

        async def worker() -> int:
            done = 0
            while chunks:
                done += len((await store.enqueue(chunks.pop(), now)).enqueued)
            return done

        count, seconds = await run_phase(args.concurrency, worker)
        assert count == len(jobs), (count, len(jobs))
        figures["enqueue jobs/s"] = count / seconds
        figures["enqueue calls/s"] = len(jobs) / args.per_call / seconds

    await enqueue_all(planned_jobs(args.jobs, now))

    claimed: list[str] = []

    async def claimer() -> int:
        done = 0
        for _ in range(args.jobs):  # bounded: each round claims at least one or stops
            batch = await store.claim(args.batch, LEASE, now)
            if not batch:
                break
            claimed.extend(job.id for job in batch)
            done += len(batch)
        return done

    count, seconds = await run_phase(args.concurrency, claimer)
    assert count == args.jobs, (count, args.jobs)
    figures["claim jobs/s"] = count / seconds

    async def completer() -> int:
        done = 0
        while claimed:
            await store.complete(delivered(claimed.pop(), now))
            done += 1
        return done

    count, seconds = await run_phase(args.concurrency, completer)
    figures["complete ops/s"] = count / seconds

    await enqueue_all(planned_jobs(args.jobs, now))

    async def dispatcher() -> int:
        done = 0
        for _ in range(args.jobs):
            batch = await store.claim(args.batch, LEASE, now)
            if not batch:
                break
            await asyncio.gather(*(store.complete(delivered(job.id, now)) for job in batch))
            done += len(batch)
        return done

    count, seconds = await run_phase(max(1, args.concurrency // 8), dispatcher)
    assert count == args.jobs, (count, args.jobs)
    figures["deliver jobs/s"] = count / seconds

    # Steady state: payloads keep arriving while the dispatchers deliver them.
    arriving = planned_jobs(args.jobs, now)
    chunks = [arriving[i : i + args.per_call] for i in range(0, len(arriving), args.per_call)]
    delivered_count = 0
    deadline = time.monotonic() + 120.0

    async def producer() -> int:
        while chunks:
            await store.enqueue(chunks.pop(), now)
        return 0

    async def steady_dispatcher() -> int:
        nonlocal delivered_count
        while delivered_count < args.jobs and time.monotonic() < deadline:
            batch = await store.claim(args.batch, LEASE, now)
            if not batch:
                await asyncio.sleep(0.001)
                continue
            await asyncio.gather(*(store.complete(delivered(job.id, now)) for job in batch))
            delivered_count += len(batch)
        return 0

    start = time.perf_counter()
    await asyncio.gather(
        run_phase(args.concurrency, producer),
        run_phase(max(1, args.concurrency // 8), steady_dispatcher),
    )
    assert delivered_count == args.jobs, (delivered_count, args.jobs)
    figures["steady jobs/s"] = args.jobs / (time.perf_counter() - start)
    return figures


@asynccontextmanager
async def opened(name: str, args: argparse.Namespace) -> AsyncIterator[Store]:
    store: Store
    if name == "memory":
        store = MemoryStore()
    elif name == "sqlite":
        folder = tempfile.TemporaryDirectory(prefix="notifier-bench-", dir=args.tmp)
        path = Path(folder.name) / "notifier.db"
        store = SQLiteStore(path, synchronous=args.synchronous)
    else:
        prefix = f"notifier-bench-{uuid.uuid4().hex}:"
        store = RedisStore(args.redis_url, prefix=prefix)
    await store.open()
    try:
        yield store
    finally:
        if isinstance(store, RedisStore):
            await store.delete_all_keys()
        await store.close()
        if name == "sqlite":
            folder.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="claim limit")
    parser.add_argument("--per-call", type=int, default=2, help="jobs per enqueue call")
    parser.add_argument("--stores", default="memory,sqlite,redis")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tmp", default=None, help="folder for the SQLite file")
    args = parser.parse_args()
    print(
        f"jobs={args.jobs} concurrency={args.concurrency} batch={args.batch} "
        f"per_call={args.per_call} sqlite synchronous={args.synchronous}"
    )
    for name in args.stores.split(","):
        async with opened(name, args) as store:
            figures = await bench_store(store, args)
        print(f"{name:7} " + "  ".join(f"{k} {v:9,.0f}" for k, v in figures.items()))


if __name__ == "__main__":
    asyncio.run(main())
