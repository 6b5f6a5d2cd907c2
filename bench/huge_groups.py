"""Huge alert groups against a real ``notifier serve``: how long ``/-/healthy`` waits and
how much memory stays behind.

Each burst posts ``--groups`` payloads of ``--alerts`` alerts each at once to a service
whose only channel is the Slack stand-in (tests/fakes/slack_api.py), probes
``/-/healthy`` every 50 ms until every group is posted to Slack, and prints the slowest
probes and the service's resident memory. A kubelet's liveness probe gives up after 1 s
by default::

    .venv/bin/python bench/huge_groups.py --bursts 6

Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from notifier.testing import make_payload
from tests.processes import TOKEN, running_notifier, wait_until
from tests.stand_ins import SLACK, StandIns, stand_ins, write_config


def rss_mib(pid: int) -> float:
    """Anonymous resident memory (heap, not mapped files) of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def burst(
    url: str, peers: StandIns, bodies: list[bytes], expected_posts: int
) -> tuple[float, float, list[float]]:
    """Post ``bodies`` at once; (seconds to take them in, to post them all, probe latencies)."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        done = False

        async def probe() -> None:
            while not done:
                started = time.perf_counter()
                async with session.get(f"{url}/-/healthy") as answer:
                    await answer.read()
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)

        async def post(body: bytes) -> None:
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            async with session.post(f"{url}/api/v1/alerts", data=body, headers=headers) as answer:
                assert answer.status == 202, await answer.text()

        prober = asyncio.create_task(probe())
        started = time.perf_counter()
        await asyncio.gather(*(post(body) for body in bodies))
        taken_in = time.perf_counter() - started
        await wait_until(lambda: len(peers.slack_posts()) >= expected_posts, "every post", 300)
        posted = time.perf_counter() - started
        done = True
        await prober
    return taken_in, posted, latencies


async def main(groups: int, alerts: int, bursts: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with stand_ins() as peers:
            config = write_config(
                Path(folder) / "notifier.yaml",
                {SLACK: peers.channels()[SLACK]},
                default_channels=[SLACK],
                server={"max_body_bytes": 64 * 2**20},
            )
            async with running_notifier(config, Path(folder)) as notifier:
                print(f"resident memory before: {rss_mib(notifier.pid):.0f} MiB")
                for number in range(bursts):
                    bodies = [
                        json.dumps(
                            make_payload(
                                n=alerts, alertname=f"Huge{number}x{i}", group_key=f"{number}-{i}"
                            ).to_alertmanager_json()
                        ).encode()
                        for i in range(groups)
                    ]
                    taken_in, posted, latencies = await burst(
                        notifier.url, peers, bodies, groups * (number + 1)
                    )
                    slowest = sorted(latencies, reverse=True)[:3]
                    print(
                        f"burst {number + 1}: {groups} x {alerts} alerts"
                        f" ({len(bodies[0]) / 2**20:.1f} MiB each) taken in {taken_in:.1f} s,"
                        f" posted in {posted:.1f} s; {len(latencies)} probes, slowest"
                        f" {', '.join(f'{s:.2f}' for s in slowest)} s;"
                        f" resident {rss_mib(notifier.pid):.0f} MiB"
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--bursts", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.groups, args.alerts, args.bursts))
