"""A storm of 1,000 groups to a Slack channel limited to 1 message/s (DESIGN §10), end to end.

The real ``notifier serve`` (SQLite) delivers to the local Slack stand-in, which answers
429 to more than one message a second on ``#alerts``, and to a webhook sink that stands
for the on-call pager. While the storm is folded into digests on Slack:

- every group becomes visible in the channel (in the digest's count, or as its own
  message) and the delivery log accounts for all 1,000 (delivered, or digested);
- a critical page posted mid-storm to the other channel arrives while the storm lasts.

Nothing here is timed: the bounds are for a hang. How fast the storm becomes visible is
measured by ``bench/storm_digest.py``.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp

from notifier.sample import build_payload
from tests.fakes.slack_api import FakeSlack
from tests.processes import TOKEN, WebhookSink, running_notifier, scrape, serve_app, wait_until
from tests.stand_ins import SLACK, WEBHOOK, write_config

GROUPS = 1000
DIGEST = re.compile(r"Alert storm on \S+: (\d+) groups? firing, (\d+) resolved")


def visible_groups(slack: FakeSlack) -> int:
    """Groups the channel shows: the latest digest's count plus the messages sent alone."""
    alone, digested = 0, 0
    for message in slack.messages.values():
        if message.thread_ts:
            continue
        counts = DIGEST.search(message.text)
        if counts is not None:
            digested = max(digested, int(counts[1]) + int(counts[2]))
        elif message.text.startswith("FIRING: Storm"):
            alone += 1
    return alone + digested


async def post_all(url: str, payloads: list[dict[str, Any]], concurrency: int = 16) -> list[int]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses: list[int] = []
    pending = iter(payloads)

    async def poster(session: aiohttp.ClientSession) -> None:
        for payload in pending:
            async with session.post(f"{url}/api/v1/alerts", json=payload, headers=headers) as r:
                await r.read()
                statuses.append(r.status)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(poster(session) for _ in range(concurrency)))
    return statuses


async def test_a_storm_of_1000_groups_is_folded_into_digests_and_a_page_still_arrives(
    tmp_path: Path,
) -> None:
    slack, pager = FakeSlack(rate_limit=1.0), WebhookSink()
    async with serve_app(slack.app()) as slack_url, serve_app(pager.app()) as pager_url:
        config = write_config(
            tmp_path / "notifier.yaml",
            {
                SLACK: {
                    "type": "slack",
                    "token": slack.token,
                    "channel": "#alerts",
                    "api_url": f"{slack_url}/api/",
                },
                WEBHOOK: {"type": "webhook", "url": f"{pager_url}/page"},
            },
            [
                {"name": "page", "matchers": ['team="pager"'], "channels": [WEBHOOK]},
                {"name": "storm", "channels": [SLACK]},
            ],
            server={"public_url": "https://notifier.example.com"},
        )
        storm = [
            build_payload(alertname=f"Storm{i}", severity="warning").to_alertmanager_json()
            for i in range(GROUPS)
        ]
        page = build_payload(
            alertname="DatabaseDown", severity="critical", labels={"team": "pager"}
        ).to_alertmanager_json()
        async with running_notifier(config, tmp_path) as notifier:

            async def storming() -> bool:
                metrics = await scrape(f"{notifier.url}/metrics")
                return metrics.total("notifier_storm_mode", channel=SLACK) == 1

            first, rest = storm[: GROUPS // 2], storm[GROUPS // 2 :]
            assert set(await post_all(notifier.url, first)) == {202}
            await wait_until(storming, "the Slack channel to enter storm mode", timeout=60)
            assert await notifier.post_alerts(page) == 202
            assert set(await post_all(notifier.url, rest)) == {202}

            await wait_until(lambda: len(pager.requests) == 1, "the page", timeout=60)
            paged_in_storm = await storming()
            status = await notifier.get_json("/api/v1/status")
            await wait_until(
                lambda: visible_groups(slack) >= GROUPS, "every group in #alerts", timeout=240
            )
            await wait_until(notifier.idle, "the queue to empty", timeout=120)
            deliveries = (await notifier.get_json("/api/v1/deliveries?limit=5000"))["deliveries"]
            metrics = await scrape(f"{notifier.url}/metrics")

    assert paged_in_storm
    assert status["storms"] == {SLACK: True}  # the webhook channel has no storm mode
    assert pager.requests[0].json()["alerts"][0]["labels"]["alertname"] == "DatabaseDown"
    assert visible_groups(slack) == GROUPS
    alone = {
        d["job_id"] for d in deliveries if d["channel"] == SLACK and d["outcome"] == "delivered"
    }
    digested = {d["job_id"] for d in deliveries if d["outcome"] == "digested"}
    digests = {j for j in alone if j.startswith("digest-")}
    assert len((alone - digests) | digested) == GROUPS
    assert not (alone & digested)
    assert digests, "at least one digest was delivered"
    assert metrics.total("notifier_notifications_folded_total", channel=SLACK) == len(digested)
    assert not [d for d in deliveries if d["outcome"] == "dead"]
