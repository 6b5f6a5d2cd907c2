"""Nothing answered 202 is lost when the process dies: SIGKILL mid-delivery, restart, count.

The real ``notifier serve`` runs on a SQLite store in tmp_path with one webhook channel
pointing at a slow sink (each request held ~200 ms). Fifty distinct payloads are
accepted, the process is SIGKILLed while the sink holds requests, and a new process on
the same store must deliver every one of them: at-least-once, so a job whose send was
under way may arrive twice (counted and bounded by the worker count), none may be missing.
A job an idle notifier handed to its dispatcher at enqueue (leased, never claimed) is
killed mid-send too: the restart sends it once its lease runs out.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.processes import (
    WebhookSink,
    running_notifier,
    serve_app,
    wait_until,
    webhook_payload,
)
from tests.stand_ins import write_config

PAYLOADS = 50
WORKERS = 4
SINK_DELAY = 0.2


def _alertnames(sink: WebhookSink) -> set[str]:
    return {a["labels"]["alertname"] for r in sink.requests for a in r.json()["alerts"]}


def _config(tmp_path: Path, sink_url: str) -> Path:
    """One webhook channel to the sink, short leases, a few workers."""
    return write_config(
        tmp_path / "notifier.yaml",
        {"sink": {"type": "webhook", "url": f"{sink_url}/hook"}},
        default_channels=["sink"],
        storage={"lease": "2s", "workers": WORKERS},
        defaults={"timeout": "1s"},
    )


async def test_sigkill_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    sink = WebhookSink(delay=SINK_DELAY)
    async with serve_app(sink.app()) as sink_url:
        config = _config(tmp_path, sink_url)
        names = {f"Crash{i:02d}" for i in range(PAYLOADS)}
        async with running_notifier(config, tmp_path, name="first") as first:
            statuses = await asyncio.gather(
                *(first.post_alerts(webhook_payload(name)) for name in sorted(names))
            )
            assert statuses == [202] * PAYLOADS

            def mid_delivery() -> bool:
                in_flight = len(sink.requests) - len(sink.answered)
                return len(sink.requests) >= 2 * WORKERS and in_flight > 0

            await wait_until(mid_delivery, "deliveries under way", timeout=10)
            first.kill()  # SIGKILL, no await since the check: the sink holds requests now
            at_kill = len(sink.answered)
            assert at_kill < PAYLOADS, "everything was delivered before the kill"

        async with running_notifier(config, tmp_path, name="restarted") as restarted:
            await wait_until(
                lambda: _alertnames(sink) == names, "every accepted payload at the sink", 20
            )
            await wait_until(restarted.idle, "the restarted queue to empty", 10)

    keys = sink.keys()
    duplicates = sink.duplicates()
    print(
        f"{len(keys)} requests, {len(set(keys))} distinct jobs, {duplicates} duplicates;"
        f" {at_kill} answered before the kill"
    )
    assert len(set(keys)) == PAYLOADS
    assert all(keys)
    # Only a send under way at the kill may be repeated: at most one per worker.
    assert duplicates <= WORKERS


async def test_sigkill_during_a_handed_off_send_delivers_after_the_lease(tmp_path: Path) -> None:
    """An idle notifier hands a fresh job straight to its dispatcher, leased at enqueue
    (no claim): killed mid-send, its restart delivers the job once the lease runs out."""
    hold = asyncio.Event()
    sink = WebhookSink(hold=hold)
    async with serve_app(sink.app()) as sink_url:
        config = _config(tmp_path, sink_url)
        async with running_notifier(config, tmp_path, name="first") as first:
            assert await first.post_alerts(webhook_payload("HandedOff")) == 202
            await wait_until(lambda: len(sink.requests) == 1, "the send under way")
            first.kill()
        hold.set()  # the sink answers from now on

        async with running_notifier(config, tmp_path, name="restarted") as restarted:
            await wait_until(lambda: len(sink.requests) == 2, "the job sent again", 20)
            await wait_until(restarted.idle, "the restarted queue to empty", 10)

    assert _alertnames(sink) == {"HandedOff"}
    assert len(set(sink.keys())) == 1  # one job, sent twice: at least once
