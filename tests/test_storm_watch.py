"""The storm watch (DESIGN §10) on a memory store with a manual clock: when it folds, when
each digest of a storm is due, and what its metrics say."""

from __future__ import annotations

from notifier.config import LoadedConfig
from notifier.metrics import Metrics
from notifier.store.memory import MemoryStore
from notifier.storm_watch import REFRESH, SETTLE, StormWatch
from notifier.testing import ManualClock, config_for_tests
from tests.store_contract import planned, record


def loaded(**slack: object) -> LoadedConfig:
    return config_for_tests(
        {
            "slack": {"type": "slack", "token": "x", "channel": "#a", **slack},
            "hook": {"type": "webhook", "url": "http://127.0.0.1:1/", "rate_limit": 1},
        },
        [{"name": "all", "channels": ["slack"]}],
        server={"public_url": "https://n.example"},
    )


class Watched:
    def __init__(self, **slack: object) -> None:
        self.clock = ManualClock(1000.0)
        self.store = MemoryStore()
        self.metrics = Metrics()
        self.wakes = 0
        self.watch = StormWatch(self.store, self.metrics, self.clock, on_fold=self.wake)
        self.watch.configure(loaded(**slack))
        self.seq = 0

    def wake(self) -> None:
        self.wakes += 1

    async def arrive(self, count: int, channel: str = "slack") -> None:
        jobs = [planned(f"{channel}-{self.seq + i}", channel=channel) for i in range(count)]
        self.seq += count
        await self.store.enqueue(jobs, now=self.clock())

    async def waiting_digests(self, at: float) -> list[tuple[str, int]]:
        """(job id, groups) of the digests claimable at ``at`` (claimed, then handed back)."""
        claimed = await self.store.claim(limit=1000, lease=1.0, now=at)
        for job in claimed:
            await self.store.release(job.id, not_before=at)
        return [
            (job.id, job.notification.digest.groups)
            for job in claimed
            if job.notification.digest is not None
        ]

    def metric(self, name: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"channel": "slack", "type": "slack"})
        return -1.0 if value is None else value


async def test_a_backlog_under_the_threshold_is_left_alone() -> None:
    w = Watched()
    await w.arrive(30)
    await w.watch.look()
    assert w.watch.in_storm() == {"slack": False}  # the webhook channel has no default digest
    assert await w.store.waiting("slack", now=w.clock()) == 30
    assert w.metric("notifier_storm_mode") == 0


async def test_a_storm_folds_into_one_digest_sent_once_the_burst_is_in() -> None:
    w = Watched()
    await w.arrive(400)
    await w.watch.look()
    assert w.watch.in_storm()["slack"]
    assert w.metric("notifier_storm_mode") == 1
    assert await w.store.waiting("slack", now=w.clock()) == 1
    # The first digest waits for the rest of the burst...
    assert await w.waiting_digests(at=w.clock()) == []
    w.clock.advance(1)
    await w.arrive(600)
    await w.watch.look()
    assert await w.waiting_digests(at=w.clock()) == []
    # ...and goes as soon as a look finds nothing new, with every group in it.
    w.clock.advance(1)
    await w.watch.look()
    [(_, groups)] = await w.waiting_digests(at=w.clock())
    assert groups == 1000
    assert w.metric("notifier_notifications_folded_total") == 1000
    log = await w.store.deliveries(limit=2000)
    assert len(log) == 1000
    assert {r.outcome for r in log} == {"digested"}
    assert w.wakes >= 3


async def test_the_first_digest_goes_at_the_latest_after_settle() -> None:
    w = Watched()
    for _ in range(int(SETTLE) + 1):
        await w.arrive(40)
        await w.watch.look()
        if await w.waiting_digests(at=w.clock()):
            break
        w.clock.advance(1)
    [(_, groups)] = await w.waiting_digests(at=w.clock())
    assert groups > 40


async def test_refreshes_come_at_most_once_a_refresh_period_and_carry_the_counts() -> None:
    w = Watched()
    await w.arrive(100)
    await w.watch.look()
    w.clock.advance(1)
    await w.watch.look()  # quiet: the first digest is due now
    [job] = await w.store.claim(limit=10, lease=30.0, now=w.clock())
    assert job.notification.digest is not None
    sent_at = w.clock()
    await w.store.complete(record(job.id, at=sent_at, channel="slack"))
    # The storm goes on: each look folds what arrived into the next digest, due a
    # refresh period after the first.
    for _ in range(5):
        w.clock.advance(1)
        await w.arrive(20)
        await w.watch.look()
        assert w.watch.in_storm()["slack"]
    assert await w.waiting_digests(at=sent_at + REFRESH - 0.001) == []
    [(_, groups)] = await w.waiting_digests(at=sent_at + REFRESH)
    assert groups == 100 + 5 * 20


async def test_the_storm_ends_once_its_backlog_would_have_drained_below_a_quarter() -> None:
    w = Watched()
    await w.arrive(100)
    await w.watch.look()
    # 30 s of backlog (the threshold) would wait: it drains at 1/s, the storm holds
    # while more than 7.5 s of it would be left.
    w.clock.advance(22)
    await w.arrive(5)
    await w.watch.look()
    assert w.watch.in_storm()["slack"]  # 8 + 5 would wait
    w.clock.advance(8)
    await w.arrive(2)
    await w.watch.look()
    assert not w.watch.in_storm()["slack"]  # 5 + 2 would wait: over
    assert w.metric("notifier_storm_mode") == 0
    # What arrived meanwhile was folded into the storm's digest; what comes now goes alone.
    w.clock.advance(1)
    await w.arrive(3)
    await w.watch.look()
    assert await w.store.waiting("slack", now=w.clock()) == 1 + 3


async def test_digest_off_never_storms() -> None:
    w = Watched(digest="off")
    await w.arrive(500)
    await w.watch.look()
    assert w.watch.in_storm() == {}
    assert await w.store.waiting("slack", now=w.clock()) == 500


async def test_a_reload_keeps_a_storm_unless_its_settings_changed() -> None:
    w = Watched()
    await w.arrive(100)
    await w.watch.look()
    w.watch.configure(loaded())
    assert w.watch.in_storm() == {"slack": True}
    assert w.metric("notifier_storm_mode") == 1
    w.watch.configure(loaded(digest="off"))
    assert w.watch.in_storm() == {}
    assert w.metric("notifier_storm_mode") == 0
