"""Console page latency over a full store: 10,000 deliveries and 1,000 dead letters.

    .venv/bin/python -m bench.console [--deliveries 10000]
        [--dead-letters 1000] [--rounds 20]

Fills a SQLite store (as shipped) through its own API (enqueue, claim, then ``complete``
or ``dead_letter`` each job) before the service starts, so its dispatcher finds nothing
to do; then serves the real app (``create_app``, console included, no
``server.auth``, so the console is open on localhost) on 127.0.0.1, and times each
page ``--rounds`` times, printing the median and the worst. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.store_bench import LEASE, delivered, planned_jobs
from notifier.runtime import Runtime
from notifier.server import create_app

PAGES = [
    "/ui/incidents",
    "/ui/deliveries",
    "/ui/deliveries?outcome=delivered&q=ops",
    "/ui/dead-letters",
    "/ui/dead-letters?limit=100",
    "/ui/dead-letters?before=none",  # a cursor not found: the whole window read, the worst case
    "/ui/channels",
    "/ui/routes?labels=severity%3Dcritical",
    "/ui/heartbeats",
]
CONFIG = """
server: {{listen: "127.0.0.1:0"}}
storage: {{url: "{url}"}}
channels:
  ops-slack: {{type: log}}
default_channels: [ops-slack]
"""


async def fill(runtime: Runtime, deliveries: int, dead: int) -> None:
    store = runtime.store
    now = time.time()
    jobs = planned_jobs(deliveries + dead, now)
    for start in range(0, len(jobs), 500):
        await store.enqueue(jobs[start : start + 500], now)
    claimed: list[str] = []
    for _ in range(len(jobs)):  # bounded: each round claims at least one or stops
        batch = await store.claim(500, LEASE, now)
        if not batch:
            break
        claimed.extend(job.id for job in batch)
    for index, job_id in enumerate(claimed):
        record = delivered(job_id, now + index * 0.001)
        if index < dead:
            failed = replace(record, outcome="dead", reason="client_error", error="answered 400")
            await store.dead_letter(failed)
        else:
            await store.complete(record)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "notifier.yaml"
        config.write_text(CONFIG.format(url=f"sqlite:///{folder}/bench.db"))
        started = time.perf_counter()
        filler = Runtime(config, {})
        await filler.store.open()
        try:
            await fill(filler, args.deliveries, args.dead_letters)
            stats = await filler.store.stats(time.time())
        finally:
            await filler.store.close()
        print(
            f"sqlite store: {args.deliveries} deliveries, {stats.dead_letters} dead letters,"
            f" filled in {time.perf_counter() - started:.1f}s"
        )
        runtime = Runtime(config, {})
        runner = web.AppRunner(create_app(runtime), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            print(f"{'page':45} {'median ms':>10} {'worst ms':>10} {'bytes':>8}")
            async with aiohttp.ClientSession() as session:
                for page in PAGES:
                    times, size = [], 0
                    for _ in range(args.rounds):
                        start = time.perf_counter()
                        async with session.get(base + page) as response:
                            body = await response.read()
                            assert response.status == 200, (page, response.status)
                        times.append((time.perf_counter() - start) * 1000)
                        size = len(body)
                    print(f"{page:45} {statistics.median(times):10.1f} {max(times):10.1f} {size:8}")
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--dead-letters", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
