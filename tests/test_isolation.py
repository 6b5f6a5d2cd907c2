"""A dead channel does not stall the others: with the SMTP server down, Slack notifications
still arrive while email attempts fail and are retried.

The real ``notifier serve`` runs as a child with a small worker pool (4) routing every
alert to Slack (the local fake) and email. "Down" is tried two ways: nothing listening
on the email port (connection refused at once), and a server that accepts the
connection and never answers (each attempt holds a worker until the channel timeout).
A burst of twice the pool's size while that server hangs shows the per-channel cap:
email holds at most its ``max_in_flight`` (half the pool), so Slack keeps the rest. There
the email sends hang for longer than the test waits, so every Slack message arriving
while no email attempt has ended shows that Slack never waited for a worker email held.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.channel_support import free_port, silent_server
from tests.processes import running_notifier, scrape, wait_until, webhook_payload
from tests.stand_ins import EMAIL, SLACK, stand_ins, write_config

PAYLOADS = 6
REASONS = {"refused": "connection", "silent": "timeout"}  # the failure reason recorded


@asynccontextmanager
async def dead_smtp(kind: str) -> AsyncIterator[int]:
    if kind == "refused":
        yield free_port()
    else:
        async with silent_server() as port:
            yield port


@pytest.mark.parametrize("kind", sorted(REASONS))
async def test_slack_is_delivered_while_smtp_is_down(tmp_path: Path, kind: str) -> None:
    async with stand_ins() as local, dead_smtp(kind) as smtp_port:
        channels = local.channels(smtp_port=smtp_port)
        channels[SLACK]["rate_limit"] = 50  # measure isolation, not Slack's 1/s limiter
        config = write_config(
            tmp_path / "notifier.yaml",
            {SLACK: channels[SLACK], EMAIL: channels[EMAIL]},
            [{"name": "everything", "channels": [SLACK, EMAIL]}],
            storage={"workers": 4, "lease": "5s"},
            defaults={"timeout": "1s"},
        )
        async with running_notifier(config, tmp_path) as notifier:
            for index in range(PAYLOADS):
                assert await notifier.post_alerts(webhook_payload(f"Isolated{index}")) == 202
                await wait_until(
                    partial(lambda n: len(local.slack_posts()) >= n, index + 1),
                    f"Slack message {index + 1}",
                )
                await asyncio.sleep(0.2)

            async def email_retried() -> bool:
                metrics = await scrape(f"{notifier.url}/metrics")
                return metrics.total("notifier_notification_retries_total", channel=EMAIL) >= 2

            await wait_until(email_retried, "email attempts to fail and be retried", timeout=10)
            deliveries = (await notifier.get_json("/api/v1/deliveries?limit=1000"))["deliveries"]
            metrics = await scrape(f"{notifier.url}/metrics")

    email = [d for d in deliveries if d["channel"] == EMAIL]
    assert email and all(d["outcome"] == "retry" for d in email), email
    assert {d["reason"] for d in email} == {REASONS[kind]}
    slack = [d for d in deliveries if d["channel"] == SLACK]
    assert len(slack) == PAYLOADS and all(d["outcome"] == "delivered" for d in slack)
    assert metrics.total("notifier_notifications_total", channel=EMAIL) == 0
    assert metrics.total("notifier_notifications_failed_total", channel=EMAIL) >= 2
    assert metrics.total("notifier_notifications_total", channel=SLACK) == PAYLOADS
    assert local.mailbox.messages == []


async def test_a_hanging_channel_cannot_hold_every_worker(tmp_path: Path) -> None:
    workers = 4
    async with stand_ins() as local, silent_server() as smtp_port:
        channels = local.channels(smtp_port=smtp_port)
        channels[SLACK]["rate_limit"] = 50
        config = write_config(
            tmp_path / "notifier.yaml",
            {SLACK: channels[SLACK], EMAIL: channels[EMAIL]},
            [{"name": "everything", "channels": [SLACK, EMAIL]}],
            # Email sends hang past the wait below: none can end while the test watches.
            storage={"workers": workers, "lease": "300s"},
            defaults={"timeout": "120s"},
        )
        async with running_notifier(config, tmp_path) as notifier:
            burst = [webhook_payload(f"Burst{i}") for i in range(2 * workers)]
            statuses = await asyncio.gather(*(notifier.post_alerts(p) for p in burst))
            assert statuses == [202] * len(burst)
            await wait_until(
                lambda: len(local.slack_posts()) == len(burst),
                f"{len(burst)} Slack messages",
                timeout=60,
            )

            async def slack_outcomes_recorded() -> bool:
                # The stand-in has a post before notifier has written that send's outcome.
                nonlocal deliveries
                page = await notifier.get_json("/api/v1/deliveries?limit=1000")
                deliveries = page["deliveries"]
                return len([d for d in deliveries if d["channel"] == SLACK]) == len(burst)

            deliveries: list[dict[str, Any]] = []
            await wait_until(slack_outcomes_recorded, "the Slack outcomes recorded", timeout=60)
    assert [d for d in deliveries if d["channel"] == EMAIL] == []  # every email send still hangs
    assert sorted(d["outcome"] for d in deliveries) == ["delivered"] * len(burst)
