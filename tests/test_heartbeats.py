"""Heartbeats (DESIGN §11) on the memory store with a manual clock: renewal, miss, return.

The timer loop runs in burst mode (``run_due``), so each step is one call and no test
sleeps. The compare-and-set itself is pinned down for every store in
``tests/heartbeat_contract.py``.
"""

from __future__ import annotations

import pytest

from notifier.config import ConfigError
from notifier.heartbeats.state import ALERTNAME, renewed
from notifier.heartbeats.status import heartbeats_json
from notifier.heartbeats.watch import HeartbeatWatch, timer_key
from notifier.notification import Notification
from notifier.store.memory import MemoryStore
from notifier.testing import ManualClock, config_for_tests, make_payload
from notifier.timers import TimerLoop

TIMEOUT = 600.0
CHANNELS = {"ops-slack": {}, "pager": {}, "other": {}}
HEARTBEATS = [
    {
        "name": "watchdog",
        "matchers": ['alertname="Watchdog"'],
        "timeout": "10m",
        "channels": ["ops-slack", "pager"],
    }
]
ROUTES = [{"name": "all", "matchers": [], "channels": ["other"]}]


class Replica:
    """One notifier's heartbeat parts over a shared store."""

    def __init__(self, store: MemoryStore, clock: ManualClock) -> None:
        loaded = config_for_tests(CHANNELS, ROUTES, heartbeats=HEARTBEATS)
        self.woken = 0
        self.watch = HeartbeatWatch(store, loaded.heartbeats, clock=clock, on_enqueued=self._woken)
        self.timers = TimerLoop(store, {"heartbeat": self.watch.on_timer}, lease=30, clock=clock)

    def _woken(self) -> None:
        self.woken += 1


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def replica(store: MemoryStore, clock: ManualClock) -> Replica:
    replica = Replica(store, clock)
    await replica.watch.arm(clock())
    return replica


async def sent(store: MemoryStore, clock: ManualClock) -> list[Notification]:
    """Claim what is due, for good: the notifications the channels would get now."""
    return [job.notification for job in await store.claim(100, 1e9, clock())]


async def renew(replica: Replica, clock: ManualClock) -> None:
    taken = replica.watch.take(make_payload(alertname="Watchdog", severity="none"))
    assert taken.rest is None
    await replica.watch.renew(taken.renewals, clock())


async def test_matching_alerts_are_taken_out_of_routing() -> None:
    watch = HeartbeatWatch(
        MemoryStore(), config_for_tests(CHANNELS, ROUTES, heartbeats=HEARTBEATS).heartbeats
    )
    payload = make_payload(
        alerts=[
            {"labels": {"alertname": "Watchdog"}, **_times()},
            {"labels": {"alertname": "DiskFull"}, **_times()},
        ]
    )
    taken = watch.take(payload)
    assert [h.name for h in taken.renewals] == ["watchdog"]
    assert taken.rest is not None
    assert [a.labels["alertname"] for a in taken.rest.alerts] == ["DiskFull"]
    unrelated = make_payload(alertname="DiskFull")
    assert watch.take(unrelated).rest is unrelated
    # A resolved Watchdog is not routed either, but it renews nothing.
    resolved = watch.take(make_payload(alertname="Watchdog", status="resolved"))
    assert resolved == type(resolved)(None, ())


def _times() -> dict[str, str]:  # an alert firing, in Alertmanager's shape
    return {
        "status": "firing",
        "startsAt": "2026-01-01T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }


async def test_a_silent_heartbeat_is_told_once_and_its_return_once(
    replica: Replica, store: MemoryStore, clock: ManualClock
) -> None:
    await renew(replica, clock)
    clock.advance(TIMEOUT - 1)
    assert await replica.timers.run_due() == 0
    await renew(replica, clock)  # renewed in time: the deadline moves
    clock.advance(TIMEOUT - 1)
    assert await replica.timers.run_due() == 0
    assert await sent(store, clock) == []

    clock.advance(1)
    silent_since = clock() - TIMEOUT
    assert await replica.timers.run_due() == 1
    missed = await sent(store, clock)
    assert sorted(n.channel for n in missed) == ["ops-slack", "pager"]
    assert {n.status for n in missed} == {"firing"}
    alert = missed[0].alerts[0]
    assert alert.labels == {"alertname": ALERTNAME, "heartbeat": "watchdog", "severity": "critical"}
    assert alert.starts_at.timestamp() == silent_since
    assert "missed" in alert.annotations["summary"]
    assert "2027-01-15 08:09:59 UTC" in alert.annotations["description"]  # silent_since
    assert replica.woken == 1

    clock.advance(10 * TIMEOUT)  # still silent: nothing more is told
    assert await replica.timers.run_due() == 0
    assert await sent(store, clock) == []

    await renew(replica, clock)
    back = await sent(store, clock)
    assert sorted(n.channel for n in back) == ["ops-slack", "pager"]
    assert {n.status for n in back} == {"resolved"}
    assert back[0].alerts[0].ends_at is not None
    assert back[0].group_key == missed[0].group_key  # Slack updates the first message
    await renew(replica, clock)
    assert await sent(store, clock) == []


async def test_a_heartbeat_never_heard_is_missed_one_timeout_after_start(
    replica: Replica, store: MemoryStore, clock: ManualClock
) -> None:
    (status,) = heartbeats_json(await replica.watch.states())
    assert status["state"] == "waiting"
    assert status["due_at"] == clock() + TIMEOUT
    clock.advance(TIMEOUT)
    assert await replica.timers.run_due() == 1
    assert len(await sent(store, clock)) == 2
    (status,) = heartbeats_json(await replica.watch.states())
    assert status["state"] == "missed"
    assert status["missed_since"] == clock() - TIMEOUT
    assert status["due_at"] is None


async def test_a_restart_adds_no_notification(store: MemoryStore, clock: ManualClock) -> None:
    first = Replica(store, clock)
    await first.watch.arm(clock())
    clock.advance(TIMEOUT)
    await first.timers.run_due()
    assert len(await sent(store, clock)) == 2

    clock.advance(60)
    restarted = Replica(store, clock)  # the same store, a new process
    await restarted.watch.arm(clock())
    clock.advance(TIMEOUT)
    assert await restarted.timers.run_due() == 0
    assert await sent(store, clock) == []
    await renew(restarted, clock)
    assert len(await sent(store, clock)) == 2
    again = Replica(store, clock)
    await again.watch.arm(clock())
    assert await again.timers.run_due() == 0
    assert await sent(store, clock) == []


async def test_two_replicas_handling_one_timer_tell_once(
    store: MemoryStore, clock: ManualClock
) -> None:
    one, two = Replica(store, clock), Replica(store, clock)
    await one.watch.arm(clock())
    await two.watch.arm(clock())
    clock.advance(TIMEOUT)
    (timer,) = await store.claim_timers(10, 30.0, clock())
    # The lease ran out on one replica while it handled the timer: both handle it.
    await one.watch.on_timer(timer)
    await two.watch.on_timer(timer)
    assert len(await sent(store, clock)) == 2


async def test_a_stale_timer_arms_the_heartbeat_again_from_its_state(
    replica: Replica, store: MemoryStore, clock: ManualClock
) -> None:
    # A crash between the renewal's state write and its timer write leaves the old timer.
    (timer,) = await store.claim_timers(10, 30.0, clock() + TIMEOUT)
    clock.advance(TIMEOUT / 2)
    state = await store.get_heartbeat("watchdog")
    assert state is not None
    heartbeat = replica.watch.heartbeats[0]
    assert await store.put_heartbeat(renewed(state, heartbeat, clock()), state.version, [], clock())
    clock.advance(TIMEOUT / 2)
    await replica.watch.on_timer(timer)  # the old timer: it re-arms, tells nothing
    assert await sent(store, clock) == []
    assert await store.next_timer_at() == clock() + TIMEOUT / 2
    clock.advance(TIMEOUT / 2)
    assert await replica.timers.run_due() == 1
    assert len(await sent(store, clock)) == 2


async def test_a_heartbeat_no_longer_configured_ends_its_timer(
    store: MemoryStore, clock: ManualClock
) -> None:
    replica = Replica(store, clock)
    await replica.watch.arm(clock())
    replica.watch.replace_config([])
    clock.advance(TIMEOUT)
    assert await replica.timers.run_due() == 1
    assert await store.next_timer_at() is None
    assert await sent(store, clock) == []
    assert timer_key("watchdog") == "heartbeat:watchdog"


def test_heartbeats_load_with_their_matchers() -> None:
    loaded = config_for_tests(CHANNELS, ROUTES, heartbeats=HEARTBEATS)
    (heartbeat,) = loaded.heartbeats
    assert heartbeat.timeout == TIMEOUT
    assert heartbeat.matches({"alertname": "Watchdog"})
    assert not heartbeat.matches({"alertname": "Other"})
    with pytest.raises(ConfigError, match=r"heartbeats\[0\]\.channels\[0\]: undefined channel"):
        config_for_tests(CHANNELS, ROUTES, heartbeats=[{**HEARTBEATS[0], "channels": ["nope"]}])
