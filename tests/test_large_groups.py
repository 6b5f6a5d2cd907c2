"""Huge alert groups: large payloads take turns, and a real ``notifier serve`` keeps answering
``/-/healthy`` while eight 10,000-alert groups are taken in and posted to Slack.

Latency is a benchmark figure (``bench/huge_groups.py``); here only outcomes are checked.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from aiohttp import web

from notifier.server import LARGE_BODY_BYTES, LARGE_INGEST, one_large_at_a_time
from notifier.testing import make_payload
from tests.processes import TOKEN, running_notifier, wait_until
from tests.stand_ins import SLACK, stand_ins, write_config

GROUPS, ALERTS = 8, 10_000


async def test_large_bodies_take_turns_and_small_ones_do_not_wait() -> None:
    app = web.Application()
    app[LARGE_INGEST] = asyncio.Semaphore(1)
    inside: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, size: int) -> None:
        async with one_large_at_a_time(app, size):
            inside.append(name)
            await release.wait()

    first = asyncio.create_task(hold("large 1", LARGE_BODY_BYTES))
    second = asyncio.create_task(hold("large 2", LARGE_BODY_BYTES * 4))
    small = asyncio.create_task(hold("small", LARGE_BODY_BYTES - 1))
    await wait_until(lambda: len(inside) == 2, "the first large body and the small one")

    assert sorted(inside) == ["large 1", "small"]
    release.set()
    await asyncio.gather(first, second, small)
    assert inside[-1] == "large 2"


async def test_health_answers_while_huge_groups_are_taken_in_and_sent(tmp_path: Path) -> None:
    bodies = [
        json.dumps(
            make_payload(
                n=ALERTS, alertname=f"Huge{i}", group_key=f"huge-{i}"
            ).to_alertmanager_json()
        ).encode()
        for i in range(GROUPS)
    ]
    assert min(len(body) for body in bodies) >= LARGE_BODY_BYTES
    async with stand_ins() as peers:
        slack = {**peers.channels()[SLACK], "rate_limit": 100.0}
        config = write_config(
            tmp_path / "notifier.yaml",
            {SLACK: slack},
            default_channels=[SLACK],
            server={"max_body_bytes": 8 * 2**20},
        )
        async with (
            running_notifier(config, tmp_path) as notifier,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        ):
            probes: list[int] = []
            posting = True

            async def probe() -> None:
                while posting or len(peers.slack_posts()) < GROUPS:
                    async with session.get(f"{notifier.url}/-/healthy") as answer:
                        probes.append(answer.status)
                    await asyncio.sleep(0.05)

            async def post(body: bytes) -> int:
                headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
                async with session.post(
                    f"{notifier.url}/api/v1/alerts", data=body, headers=headers
                ) as answer:
                    return answer.status

            prober = asyncio.create_task(probe())
            statuses = await asyncio.gather(*(post(body) for body in bodies))
            answered_while_posting = len(probes)
            posting = False
            await wait_until(lambda: len(peers.slack_posts()) == GROUPS, "every group", 120)
            await prober

    assert statuses == [202] * GROUPS
    assert answered_while_posting >= 1
    assert probes and set(probes) == {200}
    for post_ in peers.slack_posts():
        assert post_.body["text"].endswith(f"({ALERTS} alerts)")
        assert post_.body["blocks"][-1]["elements"][0]["text"].endswith("more alerts")
