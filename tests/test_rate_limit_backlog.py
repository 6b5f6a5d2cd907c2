"""A backlog drains at the channel's rate_limit, not slower.

A job the limiter holds back must not lose its turn to the time it takes to come back:
a real ``notifier serve`` (one process, memory and SQLite stores) is sent a burst at
once, and the arrival times the sink recorded are read off as a rate.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from tests.processes import WebhookSink, serve_app, wait_until, webhook_payload
from tests.stand_ins import write_config
from tests.test_replicas import post, running_replicas

RATE = 2.0  # the channel's rate_limit, messages per second
MESSAGES = 16
TURN = 1 / RATE


@pytest.mark.parametrize("store", ["memory://", "sqlite"])
async def test_a_backlog_drains_at_the_configured_rate(tmp_path: Path, store: str) -> None:
    url = f"sqlite:///{tmp_path / 'notifier.db'}" if store == "sqlite" else store
    sink = WebhookSink()
    async with serve_app(sink.app()) as sink_url:
        config = write_config(
            tmp_path / "notifier.yaml",
            {"hook": {"type": "webhook", "url": f"{sink_url}/hook", "rate_limit": RATE}},
            default_channels=["hook"],
            storage={"url": url, "workers": 4},
        )
        async with running_replicas([config], tmp_path) as [replica]:
            answers = await asyncio.gather(
                *(post(replica, webhook_payload(f"Backlog{i:02d}")) for i in range(MESSAGES))
            )
            assert [status for status, _ in answers] == [202] * MESSAGES
            await wait_until(lambda: len(sink.requests) >= MESSAGES, "every message", 90)

    arrivals = sorted(request.at for request in sink.requests)
    assert len(arrivals) == MESSAGES
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(arrivals)]
    # Never faster than the rate: half a turn allowed for jitter between grant and arrival.
    assert min(gaps) >= TURN / 2, gaps
    # And not much slower: at the rate the span is (MESSAGES - 1) turns; a job that loses
    # its turn costs at least one more, so the span stays under a little more than that.
    span = arrivals[-1] - arrivals[0]
    assert span < (MESSAGES - 1) * TURN + 1.5, (span, gaps)
