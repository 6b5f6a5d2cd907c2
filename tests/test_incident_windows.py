"""An escalation step with ``active_time_intervals`` waits for the config's window to open,
through the runtime that serves (DESIGN §8 with §9)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from notifier.runtime import Runtime
from notifier.testing import ManualClock, make_payload
from tests.channel_support import TEMPLATES

# Wednesday 2026-12-02 20:00 in Seoul: the market (Mon–Fri 09:00–15:30 KST) is closed.
EVENING = datetime.fromisoformat("2026-12-02T20:00+09:00").timestamp()
NEXT_OPEN = datetime.fromisoformat("2026-12-03T09:00+09:00").timestamp()


def config(tmp_path: Path) -> Path:
    document = {
        "storage": {"url": "memory://"},
        "templates_dir": str(TEMPLATES),
        "channels": {"pager": {"type": "log"}, "desk": {"type": "log"}},
        "time_intervals": [
            {
                "name": "krx-market-hours",
                "time_intervals": [
                    {
                        "weekdays": ["monday:friday"],
                        "times": [{"start_time": "09:00", "end_time": "15:30"}],
                        "location": "Asia/Seoul",
                    }
                ],
            }
        ],
        "escalation_policies": {
            "desk": {
                "steps": [
                    {"after": "0s", "channels": ["pager"]},
                    {
                        "after": "5m",
                        "channels": ["desk"],
                        "active_time_intervals": ["krx-market-hours"],
                    },
                ]
            }
        },
        "routes": [{"name": "critical", "channels": [], "escalation": "desk"}],
    }
    path = tmp_path / "notifier.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def run_due_timers(runtime: Runtime, now: float) -> int:
    timers = await runtime.store.claim_timers(10, 60.0, now)
    for timer in timers:
        await runtime.incidents.on_timer(timer)
        await runtime.store.finish_timer(timer.id)
    return len(timers)


async def paged_channels(runtime: Runtime) -> list[str]:
    # A lease that never ends: each page is counted once.
    jobs = await runtime.store.claim(100, 1e9, runtime.clock())
    return sorted(job.notification.channel for job in jobs if job.notification.kind == "page")


async def test_a_step_outside_its_window_is_sent_when_the_window_opens(tmp_path: Path) -> None:
    clock = ManualClock(EVENING)
    runtime = Runtime(config(tmp_path), {}, clock=clock)
    async with runtime.running(dispatch=False):
        await runtime.ingest(make_payload(group_key="g1", severity="critical"))
        assert await run_due_timers(runtime, clock()) == 1
        assert await paged_channels(runtime) == ["pager"]

        clock.advance(300)  # step 2 is due, but the market is closed
        assert await run_due_timers(runtime, clock()) == 1
        assert await paged_channels(runtime) == []
        assert await runtime.store.next_timer_at() == NEXT_OPEN

        clock.now = NEXT_OPEN
        assert await run_due_timers(runtime, clock()) == 1
        assert await paged_channels(runtime) == ["desk"]
        assert datetime.fromtimestamp(clock(), UTC).hour == 0  # 09:00 KST is 00:00 UTC
