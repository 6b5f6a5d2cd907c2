"""SIGTERM to ``notifier serve``: exit 0 after ``server.shutdown_grace`` at the latest, and
every job in flight is either finished (recorded, never sent again) or handed back (due
at once for a restart, not leased until its lease would have expired).

The real service runs as a child on a SQLite store, with one webhook channel pointing at
a local sink that either answers after a short delay or holds every request.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from notifier.store.sqlite import SQLiteStore
from tests.channel_support import free_port
from tests.processes import (
    Process,
    WebhookSink,
    child_env,
    notifier_argv,
    running_notifier,
    serve_app,
    wait_until,
    webhook_payload,
)
from tests.stand_ins import write_config

WORKERS = 2
# A bound on the wait for the exit, generous for a loaded machine: the tests show what
# happened to each job, not how fast (the held sends below would never end by themselves).
EXIT_BOUND = 30.0


def _config(tmp_path: Path, sink_url: str, *, grace: str, lease: str, timeout: str) -> Path:
    return write_config(
        tmp_path / "notifier.yaml",
        # The only channel: it may hold every worker (by default it gets half of them).
        {"sink": {"type": "webhook", "url": f"{sink_url}/hook", "max_in_flight": WORKERS}},
        default_channels=["sink"],
        storage={"lease": lease, "workers": WORKERS},
        defaults={"timeout": timeout},
        server={"shutdown_grace": grace},
    )


async def test_sigterm_lets_short_sends_finish_and_exits_zero(tmp_path: Path) -> None:
    grace = 5.0
    sink = WebhookSink(delay=0.3)
    names = {f"Finish{i}" for i in range(6)}
    async with serve_app(sink.app()) as sink_url:
        config = _config(tmp_path, sink_url, grace=f"{grace:g}s", lease="10s", timeout="2s")
        async with running_notifier(config, tmp_path, name="first") as first:
            for name in sorted(names):
                assert await first.post_alerts(webhook_payload(name)) == 202
            await wait_until(lambda: len(sink.requests) >= 1, "a send under way")
            first.send(signal.SIGTERM)
            assert await first.wait_exit(EXIT_BOUND) == 0
            received_before_exit = len(sink.requests)
        # Sends under way at SIGTERM were answered: the sink had answered all it received.
        await wait_until(lambda: len(sink.answered) == received_before_exit, "the sink's answers")

        async with running_notifier(config, tmp_path, name="restarted") as restarted:
            await wait_until(
                lambda: (
                    {r.json()["alerts"][0]["labels"]["alertname"] for r in sink.requests} == names
                ),
                "every payload delivered after the restart",
                timeout=15,
            )
            await wait_until(restarted.idle, "the restarted queue to empty")
    # Finished sends were recorded before the exit, so none was sent again.
    assert sink.duplicates() == 0, sink.keys()
    assert len(sink.requests) == len(names)


async def test_sigterm_hands_back_sends_that_outlast_the_grace(tmp_path: Path) -> None:
    grace, lease = 1.0, 30.0
    hold = asyncio.Event()
    sink = WebhookSink(hold=hold)
    names = {f"Release{i}" for i in range(5)}
    async with serve_app(sink.app()) as sink_url:
        config = _config(
            tmp_path, sink_url, grace=f"{grace:g}s", lease=f"{lease:g}s", timeout="20s"
        )
        try:
            async with running_notifier(config, tmp_path, name="first") as first:
                for name in sorted(names):
                    assert await first.post_alerts(webhook_payload(name)) == 202
                await wait_until(lambda: len(sink.requests) == WORKERS, "the sink holding sends")
                first.send(signal.SIGTERM)
                # It exits although the held sends never end: it did not wait for them.
                assert await first.wait_exit(EXIT_BOUND) == 0
        finally:
            hold.set()  # the held requests end (their client is gone)
        held = set(sink.keys())
        assert len(held) == WORKERS
        # Handed back: every job is due at once, none leased until its lease would end,
        # and the cut-off sends were not counted as attempts.
        store = SQLiteStore(tmp_path / "data" / "notifier.db")
        await store.open()
        try:
            stats = await store.stats(time.time())
            assert (stats.queued, stats.in_flight, stats.due) == (len(names), 0, len(names))
            assert await store.deliveries() == []
        finally:
            await store.close()

        async with running_notifier(config, tmp_path, name="restarted") as restarted:
            await wait_until(
                lambda: (
                    {r.json()["alerts"][0]["labels"]["alertname"] for r in sink.requests} == names
                ),
                "every payload delivered after the restart",
                timeout=EXIT_BOUND,
            )
            await wait_until(restarted.idle, "the restarted queue to empty")
    # The held sends were cut off, so each was sent again once: at-least-once.
    assert sink.duplicates() == WORKERS
    assert len(set(sink.keys())) == len(names)


async def test_a_channel_that_cannot_open_at_start_still_closes_the_store(tmp_path: Path) -> None:
    # Passes config load; building the webhook channel fails (its URL's port is out of range).
    config = write_config(
        tmp_path / "notifier.yaml",
        {"bad": {"type": "webhook", "url": "http://127.0.0.1:99999/hook"}},
        default_channels=["bad"],
    )
    argv = notifier_argv("serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}")
    serve = Process("notifier", argv, tmp_path / "serve.log", child_env())
    try:
        assert await serve.wait_exit(20) == 1
    finally:
        serve.kill()
        serve.dump_log()
    assert "channels.bad: cannot open it: ValueError: Port out of range" in serve.log()
    assert "Traceback" not in serve.log()
    # The store was opened, then closed: SQLite removes its write-ahead log on a clean close.
    database = tmp_path / "data/notifier.db"
    assert database.exists()
    assert not database.with_name("notifier.db-wal").exists()
