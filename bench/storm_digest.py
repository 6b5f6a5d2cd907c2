"""Storm digests (DESIGN §10): how long a 1,000-group storm takes to be fully visible in Slack.

A fresh ``notifier serve`` (SQLite) delivers to the Slack stand-in of the tests
(``tests/fakes/slack_api.py``), which answers 429 to more than one message a second on
``#alerts``, as Slack does. The storm is posted as fast as 16 connections allow, one
single-alert group per payload. Measured, per run: the time from the first post until
every group is visible in the channel (in the digest's count, or as its own message),
the time the posting took, and what the channel ended up holding. Goal: within 30 s.

    .venv/bin/python bench/storm_digest.py [--groups 1000] [--runs 3] [--keep]

Without storm mode the same storm would take ``groups`` seconds (one message a second).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from procs import ROOT, free_port, running, wait_ready

sys.path.insert(0, str(ROOT))

from notifier.sample import build_payload
from tests.fakes.slack_api import FakeSlack

TOKEN = "bench-token"
GOAL_S = 30.0
BUDGET_S = 300.0  # a run that has not become visible by then is reported as failed
CONNECTIONS = 16
DIGEST = re.compile(r"Alert storm on \S+: (\d+) groups? firing, (\d+) resolved")


def visible(slack: FakeSlack) -> tuple[int, int, int]:
    """(groups visible, messages sent alone, digest messages) in ``#alerts``."""
    alone, digests, digested = 0, 0, 0
    for message in slack.messages.values():
        counts = DIGEST.search(message.text)
        if counts is not None:
            digests += 1
            digested = max(digested, int(counts[1]) + int(counts[2]))
        elif not message.thread_ts:
            alone += 1
    return alone + digested, alone, digests


def write_config(folder: Path, slack_url: str) -> Path:
    config = {
        "server": {"auth": {"bearer_token": TOKEN}},
        "storage": {"url": "sqlite:///notifier.db"},
        "channels": {
            "alerts-slack": {
                "type": "slack",
                "token": "xoxb-fake-token",
                "channel": "#alerts",
                "api_url": f"{slack_url}/api/",
            }
        },
        "routes": [{"name": "all", "channels": ["alerts-slack"]}],
    }
    path = folder / "notifier.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def post_storm(url: str, groups: int, run: int) -> None:
    bodies = [
        build_payload(alertname=f"Storm{run}x{i}", severity="warning").to_alertmanager_json()
        for i in range(groups)
    ]
    pending = iter(bodies)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def poster(session: aiohttp.ClientSession) -> None:
        for body in pending:
            async with session.post(f"{url}/api/v1/alerts", json=body, headers=headers) as answer:
                if answer.status != 202:
                    raise RuntimeError(f"POST answered {answer.status}: {await answer.text()}")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(poster(session) for _ in range(CONNECTIONS)))


async def one_run(groups: int, run: int, keep: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="notifier-storm-digest-"))
    slack = FakeSlack(rate_limit=1.0)
    runner = web.AppRunner(slack.app(), access_log=None)
    await runner.setup()
    slack_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", slack_port).start()
    port = free_port()
    config = write_config(folder, f"http://127.0.0.1:{slack_port}")
    argv = [sys.executable, "-m", "notifier", "serve", "--config", str(config)]
    argv += ["--listen", f"127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    try:
        with running(argv, core=None, log=folder / "notifier.log") as proc:
            await wait_ready(f"{url}/-/ready", proc, folder / "notifier.log")
            started = time.monotonic()
            poster = asyncio.create_task(post_storm(url, groups, run))
            posted_in = None
            while time.monotonic() - started < BUDGET_S:
                if posted_in is None and poster.done():
                    poster.result()
                    posted_in = time.monotonic() - started
                if visible(slack)[0] >= groups:
                    break
                await asyncio.sleep(0.05)
            seen_in = time.monotonic() - started
            await poster
            shown, alone, digests = visible(slack)
    finally:
        await runner.cleanup()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    return {
        "visible_s": seen_in if shown >= groups else None,
        "posted_s": posted_in,
        "alone": alone,
        "digests": digests,
        "updates": len(slack.calls("chat.update")),
        "rate_limited": slack.rate_limited,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep each run's temp folder")
    args = parser.parse_args()
    times = []
    for run in range(args.runs):
        result = await one_run(args.groups, run, args.keep)
        seen = result["visible_s"]
        shown = "NOT VISIBLE" if seen is None else f"{seen:6.2f} s"
        print(
            f"run {run + 1}: {args.groups} groups fully visible in {shown}"
            f" (posted in {result['posted_s'] or 0:.2f} s; {result['alone']} sent alone,"
            f" {result['digests']} digest message(s), {result['updates']} update(s),"
            f" {result['rate_limited']} answered 429)"
        )
        if seen is not None:
            times.append(seen)
    if len(times) < args.runs:
        print("FAIL: a storm never became fully visible")
        return 1
    worst = max(times)
    verdict = "PASS" if worst <= GOAL_S else "FAIL"
    print(
        f"{verdict}: median {statistics.median(times):.2f} s, worst {worst:.2f} s"
        f" (goal: within {GOAL_S:.0f} s)"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
