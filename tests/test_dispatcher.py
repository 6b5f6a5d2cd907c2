"""The dispatcher with real parts: MemoryStore, RecordingChannels, a manual clock, real metrics.

Store time is the manual clock, so retries and rate limits are exact; ``drain()`` runs
the pool until nothing is due now, then the test moves the clock. Only send timeouts
(``asyncio.timeout``) run on real time, kept to a fraction of a second.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from notifier.channels.base import FailureReason, PermanentError, Receipt, RetryableError
from notifier.config import LoadedConfig
from notifier.dedup import PlannedJob, plan_notifications
from notifier.dispatcher import Dispatcher
from notifier.metrics import Metrics
from notifier.payload import WebhookPayload
from notifier.store.base import DeliveryRecord, EnqueueResult, StoreUnavailable
from notifier.store.memory import MemoryStore
from notifier.testing import ManualClock, RecordingChannel, config_for_tests, make_payload


def everything_to(*channels: str) -> list[dict[str, Any]]:
    return [{"name": "all", "channels": list(channels)}]


class Harness:
    """One dispatcher over a MemoryStore, driven by a manual clock."""

    def __init__(
        self,
        config: LoadedConfig,
        channels: Iterable[RecordingChannel],
        *,
        workers: int = 4,
        store: MemoryStore | None = None,
        slot_wait: float = 0.0,
    ) -> None:
        """``slot_wait``: real seconds a send waiting for its rate-limit slot takes."""
        self.config = config
        self.slot_wait = slot_wait
        self.clock = ManualClock()
        self.store = store or MemoryStore()
        self.metrics = Metrics()
        self.channels = {c.name: c for c in channels}
        self.pauses: list[float] = []  # between tries of a failed claim or store write
        self.dispatcher = Dispatcher(
            self.store,
            self.channels,
            config,
            self.metrics,
            clock=self.clock,
            workers=workers,
            rng=random.Random(1),
            retry_sleep=self._pause,
            slot_sleep=self._wait_for_slot,
        )
        self._ids = itertools.count(1)

    async def _pause(self, seconds: float) -> None:
        """Note the pause and let the loop run, without waiting it out."""
        self.pauses.append(seconds)
        await asyncio.sleep(0)

    async def _wait_for_slot(self, seconds: float) -> None:
        """A send waiting for its rate-limit slot: the clock moves to the slot."""
        self.clock.advance(seconds)
        await asyncio.sleep(self.slot_wait)

    async def post(self, payload: WebhookPayload) -> tuple[str, ...]:
        """Put the payload's jobs in the queue (the store's enqueue alone)."""
        result = await self.store.enqueue(self._plan(payload), self.clock())
        return result.enqueued

    async def ingest(self, payload: WebhookPayload) -> EnqueueResult:
        """As the receiver does: through the dispatcher, which takes the jobs it has room
        for straight away (``Dispatcher.enqueue``)."""
        return await self.dispatcher.enqueue(self._plan(payload), self.clock())

    def _plan(self, payload: WebhookPayload) -> list[PlannedJob]:
        return plan_notifications(
            payload, self.config, self.clock(), lambda: f"job-{next(self._ids)}"
        )

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def outcomes(self, channel: str) -> list[str]:
        """The channel's attempts, oldest first."""
        records = await self.store.deliveries(limit=1000)
        return [r.outcome for r in reversed(records) if r.channel == channel]

    async def run_until(self, done: Any, step: float, limit: int = 50) -> None:
        """Drain, then move the clock by ``step``, until ``done()`` (at most ``limit`` times)."""
        for _ in range(limit):
            await self.dispatcher.drain()
            if done():
                return
            self.clock.advance(step)
        raise AssertionError(f"not done after {limit} steps of {step}s")


async def test_delivery_is_recorded_and_counted() -> None:
    channel = RecordingChannel("hook")
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel])
    await h.post(make_payload(n=3))
    h.clock.advance(0.25)

    await h.dispatcher.drain()

    assert [len(n.alerts) for n in channel.sent] == [3]
    [record] = await h.store.deliveries()
    assert (record.channel, record.channel_type, record.outcome) == ("hook", "webhook", "delivered")
    assert record.reason is None
    assert record.at - record.received_at == pytest.approx(0.25)
    assert (record.severity, record.status, record.alerts) == ("critical", "firing", 3)
    labels = {"channel": "hook", "type": "webhook"}
    assert h.metric("notifier_notifications_total", **labels) == 1
    assert h.metric("notifier_notification_attempts_total", **labels) == 1
    assert h.metric("notifier_notification_latency_seconds_count", **labels) == 1
    assert h.metric("notifier_notification_latency_seconds_sum", **labels) == pytest.approx(0.25)
    assert h.metric("notifier_notification_attempt_duration_seconds_count", **labels) == 1
    stats = await h.store.stats(h.clock())
    assert (stats.queued, stats.in_flight, stats.dead_letters) == (0, 0, 0)


async def test_the_delivery_log_keeps_the_peer_ids_of_a_receipt() -> None:
    channel = RecordingChannel(
        "hook", outcomes=[Receipt("hook", "accepted", peer_ids=("SM1", "SM2"))]
    )
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel])
    await h.post(make_payload())

    await h.dispatcher.drain()

    [record] = await h.store.deliveries()
    assert record.error == "accepted (ids SM1, SM2)"


async def test_rate_limited_twice_then_delivered_after_retry_after() -> None:
    limited = RetryableError(FailureReason.RATE_LIMITED, "429 Too Many Requests", retry_after=1.0)
    channel = RecordingChannel("hook", outcomes=[limited, limited])
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel])
    await h.post(make_payload())
    start = h.clock()

    await h.run_until(lambda: channel.sent, step=0.25)

    assert len(channel.calls) == 3
    assert len(channel.sent) == 1
    records = list(reversed(await h.store.deliveries()))
    assert [r.outcome for r in records] == ["retry", "retry", "delivered"]
    assert all(b.at - a.at >= 1.0 for a, b in itertools.pairwise(records))
    assert records[-1].at - start >= 2.0
    assert h.metric("notifier_notification_retries_total", channel="hook", type="webhook") == 2
    failed = h.metric(
        "notifier_notifications_failed_total", channel="hook", type="webhook", reason="rate_limited"
    )
    assert failed == 2


async def test_server_error_then_delivered() -> None:
    channel = RecordingChannel(
        "hook", outcomes=[RetryableError(FailureReason.SERVER_ERROR, "503 Service Unavailable")]
    )
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel])
    await h.post(make_payload())

    await h.dispatcher.drain()
    assert await h.outcomes("hook") == ["retry"]
    assert channel.sent == []

    # initial_backoff is 1s and jitter is full: the retry is due within a second.
    h.clock.advance(1.0)
    await h.dispatcher.drain()

    assert await h.outcomes("hook") == ["retry", "delivered"]
    assert len(channel.sent) == 1
    [first, _] = reversed(await h.store.deliveries())
    assert (first.reason, first.error) == ("server_error", "server_error: 503 Service Unavailable")


async def test_permanent_error_dead_letters_at_once_and_other_channels_deliver() -> None:
    refused = PermanentError(FailureReason.CLIENT_ERROR, "400 Bad Request: unknown field")
    bad = RecordingChannel("bad", outcomes=[refused])
    good = RecordingChannel("good", "slack")
    config = config_for_tests(
        {"bad": {"circuit_breaker_failures": 1}, "good": {}}, everything_to("bad", "good")
    )
    h = Harness(config, [bad, good])
    await h.post(make_payload(n=2))

    await h.dispatcher.drain()

    assert len(good.sent) == 1
    assert bad.sent == []
    [dead] = await h.store.dead_letters()
    assert (dead.channel, dead.reason, dead.attempts) == ("bad", "client_error", 1)
    assert dead.error == "client_error: 400 Bad Request: unknown field"
    assert await h.outcomes("bad") == ["dead"]
    labels = {"channel": "bad", "type": "webhook", "reason": "client_error"}
    assert h.metric("notifier_dead_letters_total", **labels) == 1
    assert h.metric("notifier_notifications_failed_total", **labels) == 1
    # A refusal says the peer is up: even at threshold 1 the circuit stays closed.
    assert h.dispatcher.circuit_states() == {"bad": "closed", "good": "closed"}


async def test_a_refused_trial_closes_a_half_open_circuit() -> None:
    unavailable = RetryableError(FailureReason.SERVER_ERROR, "503 Service Unavailable")
    refused = PermanentError(FailureReason.CLIENT_ERROR, "400 Bad Request")
    channel = RecordingChannel("hook", outcomes=[unavailable, refused])
    config = config_for_tests(
        {"hook": {"circuit_breaker_failures": 1, "circuit_breaker_reset": "30s"}},
        everything_to("hook"),
    )
    h = Harness(config, [channel])
    await h.post(make_payload())
    await h.dispatcher.drain()
    assert h.dispatcher.circuit_states() == {"hook": "open"}

    h.clock.advance(31)  # past the reset: the retry is the half-open circuit's trial
    await h.dispatcher.drain()

    assert await h.outcomes("hook") == ["retry", "dead"]
    # The peer answered: it is up, so the next job need not wait out another trial.
    assert h.dispatcher.circuit_states() == {"hook": "closed"}


async def test_replayed_dead_letter_is_delivered() -> None:
    channel = RecordingChannel(
        "hook", outcomes=[PermanentError(FailureReason.AUTH, "401 Unauthorized")]
    )
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel])
    [job_id] = await h.post(make_payload())
    await h.dispatcher.drain()
    assert [d.id for d in await h.store.dead_letters()] == [job_id]

    assert await h.store.replay(job_id, h.clock())
    await h.dispatcher.drain()

    assert [n.job_id for n in channel.sent] == [job_id]
    assert await h.store.dead_letters() == []


async def test_gives_up_after_max_age() -> None:
    failing = [RetryableError(FailureReason.CONNECTION, "connection refused")] * 100
    channel = RecordingChannel("hook", outcomes=failing)
    retry = {"initial_backoff": "1s", "max_backoff": "4s", "max_age": "20s"}
    config = config_for_tests(
        {"hook": {"circuit_breaker_failures": 1000}},
        everything_to("hook"),
        defaults={"retry": retry},
    )
    h = Harness(config, [channel])
    await h.post(make_payload())
    start = h.clock()

    async def dead_letters() -> int:
        return len(await h.store.dead_letters())

    for _ in range(100):
        await h.dispatcher.drain()
        if await dead_letters():
            break
        h.clock.advance(0.5)

    [dead] = await h.store.dead_letters()
    assert dead.reason == "connection"
    assert "gave up after" in dead.error and "retry.max_age 20s" in dead.error
    assert dead.attempts == len(channel.calls) > 1
    outcomes = await h.outcomes("hook")
    assert outcomes == ["retry"] * (len(outcomes) - 1) + ["dead"]
    # It gave up when the next retry would have fallen past max_age, not later.
    assert h.clock() - start <= 20.0


async def test_hung_channel_opens_its_circuit_and_does_not_hold_up_others() -> None:
    dead = RecordingChannel("dead", delay=float("inf"))
    ok = RecordingChannel("ok")
    config = config_for_tests(
        {"dead": {"timeout": "200ms", "circuit_breaker_failures": 2}, "ok": {}},
        [
            {"name": "probe", "matchers": ['alertname="Probe"'], "channels": ["dead"]},
            {"name": "all", "channels": ["dead", "ok"]},
        ],
    )
    h = Harness(config, [dead, ok], workers=4)

    # Two sends time out: the circuit opens.
    await h.post(make_payload(alertname="Probe", n=1))
    await h.post(make_payload(alertname="Probe", n=1, severity="warning"))
    await h.dispatcher.drain()
    assert len(dead.calls) == 2
    assert await h.outcomes("dead") == ["retry", "retry"]
    assert h.dispatcher.circuit_states()["dead"] == "open"
    assert h.metric("notifier_circuit_breaker_state", channel="dead", type="webhook") == 2
    timeouts = h.metric(
        "notifier_notifications_failed_total", channel="dead", type="webhook", reason="timeout"
    )
    assert timeouts == 2

    # While it is open, a storm for both channels reaches the healthy one at once.
    for index in range(20):
        await h.post(make_payload(alertname=f"Storm{index}"))
    await h.dispatcher.drain()

    assert len(ok.sent) == 20
    # Its jobs were handed back, not sent: no healthy delivery waited on a dead send.
    assert len(dead.calls) == 2
    assert await h.outcomes("dead") == ["retry", "retry"]
    stats = await h.store.stats(h.clock())
    assert stats.queued == 22 and stats.dead_letters == 0


def hung_and_ok(hung: dict[str, Any]) -> LoadedConfig:
    """Alerts of team db go to ``hung``, the others to ``ok``."""
    return config_for_tests(
        {"hung": hung, "ok": {}},
        [
            {"name": "db", "matchers": ['team="db"'], "channels": ["hung"]},
            {"name": "rest", "channels": ["ok"]},
        ],
    )


async def test_a_hanging_channel_holds_at_most_its_share_of_the_workers() -> None:
    hung = RecordingChannel("hung", delay=math.inf)
    ok = RecordingChannel("ok")
    h = Harness(hung_and_ok({}), [hung, ok], workers=4)
    for index in range(8):  # oldest first: these are claimed before the healthy ones
        await h.post(make_payload(alertname=f"Db{index}", labels={"team": "db"}))
    for index in range(4):
        await h.post(make_payload(alertname=f"Web{index}"))

    await h.dispatcher.start()
    try:
        await ok.wait_for_deliveries(4)
        # Delivered while the hung sends still hang (they time out after 10s).
        assert await h.outcomes("hung") == []
        await asyncio.sleep(0.05)
        assert len(hung.calls) == 2  # max_in_flight: half of the 4 workers
    finally:
        await h.dispatcher.stop(grace=0.05)
    assert await h.outcomes("hung") == []
    assert (await h.store.stats(h.clock())).queued == 8  # all handed back on stop


class CountingClaims(MemoryStore):
    """A MemoryStore that counts its claims."""

    def __init__(self) -> None:
        super().__init__()
        self.claims = 0

    async def claim(
        self,
        limit: int,
        lease: float,
        now: float,
        channel_limits: Mapping[str, int] | None = None,
    ) -> list[Any]:
        self.claims += 1
        return await super().claim(limit, lease, now, channel_limits)


@pytest.mark.parametrize(
    ("hung", "trickle"),
    [
        pytest.param(1, {}, id="a-channel-one-send-below-its-cap"),
        pytest.param(0, {"max_in_flight": 1}, id="an-idle-channel-with-a-cap-of-one"),
    ],
)
async def test_a_channel_with_little_room_does_not_shrink_the_others_claims(
    hung: int, trickle: dict[str, Any]
) -> None:
    """Each channel has its own share of a claim: 500 jobs for a healthy channel take a
    few claims of up to its ``max_in_flight``, not one claim per job."""
    slow = RecordingChannel("slow", delay=math.inf)
    ok = RecordingChannel("ok")
    config = config_for_tests(
        {"slow": {"max_in_flight": 2, **trickle}, "ok": {}},
        [
            {"name": "db", "matchers": ['team="db"'], "channels": ["slow"]},
            {"name": "rest", "channels": ["ok"]},
        ],
    )
    store = CountingClaims()
    h = Harness(config, [slow, ok], workers=256, store=store)  # ok: up to 128 at once
    for index in range(hung):
        await h.post(make_payload(alertname=f"Db{index}", labels={"team": "db"}))
    for index in range(500):
        await h.post(make_payload(alertname=f"Web{index}"))

    await h.dispatcher.start()
    try:
        await ok.wait_for_deliveries(500, timeout=10.0)
    finally:
        await h.dispatcher.stop(grace=0.05)
    assert len(slow.calls) == hung
    assert store.claims <= 10, store.claims  # 500 / 128 rounded up, and a few that find none


class _IgnoresShares(MemoryStore):
    """Hands out every due job whatever the shares, as Redis does for jobs stored before it
    kept their channel."""

    async def claim(
        self,
        limit: int,
        lease: float,
        now: float,
        channel_limits: Mapping[str, int] | None = None,
    ) -> list[Any]:
        return await super().claim(limit, lease, now)


async def test_a_job_for_a_full_lane_is_handed_back_unattempted() -> None:
    hung = RecordingChannel("hung", delay=math.inf)
    ok = RecordingChannel("ok")
    store = _IgnoresShares()
    h = Harness(hung_and_ok({"max_in_flight": 1}), [hung, ok], workers=4, store=store)
    for index in range(3):
        await h.post(make_payload(alertname=f"Db{index}", labels={"team": "db"}))
    await h.post(make_payload(alertname="Web"))

    await h.dispatcher.start()
    try:
        await ok.wait_for_deliveries(1)
        await asyncio.sleep(0.05)
        assert len(hung.calls) == 1
        # The two others went back due 50ms later (the manual clock stands still): not sent,
        # no attempt counted, nothing logged.
        assert await store.next_due_at() == h.clock() + 0.05
        assert await h.outcomes("hung") == []
    finally:
        await h.dispatcher.stop(grace=0.05)
    claimed = await store.claim(10, lease=60, now=h.clock() + 0.05)
    assert [job.attempts for job in claimed] == [0, 0, 0]


async def test_rate_limited_channel_is_paced_and_others_are_not() -> None:
    slow = RecordingChannel("slow", "slack")
    fast = RecordingChannel("fast")
    config = config_for_tests(
        {"slow": {"rate_limit": 1.0}, "fast": {}}, everything_to("slow", "fast")
    )
    h = Harness(config, [slow, fast])
    for index in range(3):
        await h.post(make_payload(alertname=f"Alert{index}"))
    start = h.clock()

    await h.dispatcher.drain()
    assert len(fast.sent) == 3
    # The slow ones wait for their slots (the harness moves the clock to each slot) or are
    # held back until their slot is in reach.
    await h.run_until(lambda: len(slow.sent) == 3, step=0.25)

    assert h.clock() - start >= 2.0
    times = [r.at for r in reversed(await h.store.deliveries(limit=100)) if r.channel == "slow"]
    assert len(times) == 3 and all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    assert await h.outcomes("slow") == ["delivered"] * 3  # held back, never failed
    utilisation = h.metric("notifier_rate_limit_utilisation_ratio", channel="slow", type="slack")
    assert utilisation == pytest.approx(3 / 60)


async def test_a_circuit_that_opens_while_a_send_waits_for_its_slot_holds_it_back() -> None:
    unavailable = RetryableError(FailureReason.SERVER_ERROR, "503 Service Unavailable")
    channel = RecordingChannel("hook", outcomes=[unavailable], delay=0.05)
    config = config_for_tests(
        {"hook": {"rate_limit": 1.0, "circuit_breaker_failures": 1}}, everything_to("hook")
    )
    h = Harness(config, [channel], slot_wait=0.2)  # the first send fails during the wait
    await h.post(make_payload(alertname="First"))
    await h.post(make_payload(alertname="Second"))

    await h.dispatcher.drain()

    assert len(channel.calls) == 1  # the second one reserved a slot, then the circuit opened
    assert await h.outcomes("hook") == ["retry"]
    assert h.dispatcher.circuit_states() == {"hook": "open"}
    stats = await h.store.stats(h.clock())
    assert (stats.queued, stats.in_flight) == (2, 0)  # both held back, nothing lost


async def test_stop_hands_back_a_job_waiting_for_its_slot() -> None:
    channel = RecordingChannel("hook")
    config = config_for_tests({"hook": {"rate_limit": 1.0}}, everything_to("hook"))
    h = Harness(config, [channel], slot_wait=60)
    await h.dispatcher.start()
    await h.post(make_payload(alertname="First"))
    [waiting] = await h.post(make_payload(alertname="Second"))
    h.dispatcher.wake()
    await channel.wait_for_calls(1)
    await asyncio.sleep(0.1)  # the second one is waiting for its slot

    await h.dispatcher.stop(grace=0.05)

    assert len(channel.calls) == 1
    [again] = await h.store.claim(10, lease=60, now=h.clock())
    assert (again.id, again.attempts) == (waiting, 0)


async def test_stop_hands_in_flight_jobs_back() -> None:
    hung = RecordingChannel("hook", delay=float("inf"))
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [hung])
    await h.dispatcher.start()
    [job_id] = await h.post(make_payload())
    h.dispatcher.wake()
    await hung.wait_for_calls(1)

    await h.dispatcher.stop(grace=0.05)

    [again] = await h.store.claim(10, lease=60, now=h.clock())
    assert (again.id, again.attempts) == (job_id, 0)
    assert await h.store.deliveries() == []


async def test_stop_lets_sends_finish_within_grace() -> None:
    slowish = RecordingChannel("hook", delay=0.05)
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [slowish])
    await h.dispatcher.start()
    await h.post(make_payload())
    h.dispatcher.wake()
    await slowish.wait_for_calls(1)

    await h.dispatcher.stop(grace=5.0)

    assert len(slowish.sent) == 1
    assert await h.outcomes("hook") == ["delivered"]
    assert await h.store.claim(10, lease=60, now=h.clock()) == []


class SaysWhenIdle(MemoryStore):
    """A MemoryStore that says when the dispatcher waits for work, and never signals any:
    only ``wake()`` (or the idle timer) can end that wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109 (the protocol's)
        self.waiting.set()
        await asyncio.sleep(timeout)


async def test_wake_delivers_without_waiting_for_the_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An idle nap longer than the wait below: only wake() can deliver in time.
    monkeypatch.setattr("notifier.dispatcher._IDLE_CAP", 3600.0)
    channel = RecordingChannel("hook")
    store = SaysWhenIdle()
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel], store=store)
    await h.dispatcher.start()
    try:
        await asyncio.wait_for(store.waiting.wait(), 5.0)  # the queue was empty: it naps
        await h.post(make_payload())
        h.dispatcher.wake()
        await channel.wait_for_deliveries(1)
    finally:
        await h.dispatcher.stop(grace=1.0)
    assert len(channel.sent) == 1


async def test_job_for_a_channel_removed_by_reload_is_dead_lettered() -> None:
    kept = RecordingChannel("kept", outcomes=[RetryableError(FailureReason.SERVER_ERROR, "502")])
    gone = RecordingChannel("gone")
    routes = everything_to("kept", "gone")
    settings = {"kept": {"circuit_breaker_failures": 1}, "gone": {}}
    h = Harness(config_for_tests(settings, routes), [kept, gone])
    await h.post(make_payload(alertname="First"))
    await h.dispatcher.drain()
    assert h.dispatcher.circuit_states()["kept"] == "open"
    await h.post(make_payload(alertname="Second"))

    reloaded = config_for_tests({"kept": {"circuit_breaker_failures": 1}}, everything_to("kept"))
    h.dispatcher.replace_config(reloaded, {"kept": kept})
    await h.dispatcher.drain()

    [dead] = await h.store.dead_letters()
    assert (dead.channel, dead.reason) == ("gone", "other")
    assert "'gone' is not configured" in dead.error
    assert len(gone.calls) == 1  # only the first payload, before the reload
    # The kept channel's protection survived the reload: its circuit is still open.
    assert h.dispatcher.circuit_states() == {"kept": "open"}


async def test_a_reload_that_cannot_build_a_lane_changes_no_lane() -> None:
    kept = RecordingChannel("kept", outcomes=[RetryableError(FailureReason.SERVER_ERROR, "502")])
    other = RecordingChannel("other")
    routes = everything_to("kept", "other")
    settings: dict[str, Any] = {"kept": {"circuit_breaker_failures": 1}, "other": {}}
    h = Harness(config_for_tests(settings, routes), [kept, other])
    await h.post(make_payload())
    await h.dispatcher.drain()
    assert h.dispatcher.circuit_states() == {"kept": "open", "other": "closed"}

    # "kept" gets a new breaker (its settings changed) before "other" fails to build.
    broken = {"kept": {"circuit_breaker_failures": 3}, "other": {"rate_limit": math.inf}}
    with pytest.raises(ValueError, match=r"channels\.other: rate_per_second"):
        h.dispatcher.replace_config(
            config_for_tests(broken, routes), {"kept": kept, "other": other}
        )

    assert h.dispatcher.circuit_states() == {"kept": "open", "other": "closed"}
    # The scrape-time gauge still reads the running breaker (open is 2).
    assert h.metric("notifier_circuit_breaker_state", channel="kept", type="webhook") == 2


async def test_a_bug_in_a_channel_is_retried_and_logged_without_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buggy = RecordingChannel("hook", outcomes=[KeyError("token=xoxb-secret")])
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [buggy])
    await h.post(make_payload())

    with caplog.at_level(logging.ERROR, logger="notifier.delivery"):
        await h.dispatcher.drain()

    [record] = await h.store.deliveries()
    assert (record.outcome, record.reason) == ("retry", "other")
    assert record.error == "other: channel raised KeyError"
    assert [r.exc_info is not None for r in caplog.records] == [True]
    h.clock.advance(1.0)
    await h.dispatcher.drain()
    assert len(buggy.sent) == 1


class _FailingClaimsAtFirst(MemoryStore):
    """A MemoryStore whose first ``failures`` claims raise ``error``."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures = failures
        self.error = error

    async def claim(
        self,
        limit: int,
        lease: float,
        now: float,
        channel_limits: Mapping[str, int] | None = None,
    ) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise self.error
        return await super().claim(limit, lease, now, channel_limits)


async def test_claim_loop_survives_an_unavailable_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = RecordingChannel("hook")
    store = _FailingClaimsAtFirst(3, StoreUnavailable("database is locked"))
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel], store=store)
    await h.post(make_payload())
    await h.dispatcher.start()
    try:
        await channel.wait_for_deliveries(1)
    finally:
        await h.dispatcher.stop(grace=1.0)
    assert store.failures == 0
    assert len(channel.sent) == 1
    assert h.pauses == [0.5, 1.0, 2.0]  # twice as long after each failure in a row
    warnings = [r.getMessage() for r in caplog.records if r.name == "notifier.dispatcher"]
    assert warnings == [
        f"store unavailable while claiming (database is locked); again in {pause:.1f}s"
        for pause in h.pauses
    ]


async def test_claim_pauses_stop_growing_at_five_seconds() -> None:
    channel = RecordingChannel("hook")
    store = _FailingClaimsAtFirst(6, StoreUnavailable("database is locked"))
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel], store=store)
    await h.post(make_payload())
    await h.dispatcher.start()
    try:
        await channel.wait_for_deliveries(1, timeout=3.0)
    finally:
        await h.dispatcher.stop(grace=1.0)
    assert h.pauses == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


async def test_claim_loop_survives_an_unexpected_error(caplog: pytest.LogCaptureFixture) -> None:
    channel = RecordingChannel("hook")
    store = _FailingClaimsAtFirst(1, RuntimeError("a bug in the store"))
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel], store=store)
    await h.post(make_payload())
    await h.dispatcher.start()
    try:
        await channel.wait_for_deliveries(1)
    finally:
        await h.dispatcher.stop(grace=1.0)
    assert store.failures == 0
    assert len(channel.sent) == 1
    [logged] = [r for r in caplog.records if r.name == "notifier.dispatcher"]
    assert "claiming jobs failed unexpectedly" in logged.getMessage()
    assert logged.exc_info is not None  # a bug is logged with its traceback


async def test_stop_ends_a_claim_loop_whose_claims_keep_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = RecordingChannel("hook")
    store = _FailingClaimsAtFirst(10**9, StoreUnavailable("disk I/O error"))
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel], store=store)
    await h.post(make_payload())
    await h.dispatcher.start()
    for _ in range(100):  # bounded: a few loop turns give the first failures
        await asyncio.sleep(0)
    assert h.pauses
    await asyncio.wait_for(h.dispatcher.stop(grace=1.0), 2.0)
    assert channel.calls == []
    last = [r.getMessage() for r in caplog.records if r.name == "notifier.dispatcher"][-1]
    assert last.startswith("claiming jobs failed as the dispatcher stopped")


class _FailingWritesAtFirst(MemoryStore):
    """A MemoryStore whose first ``failures`` completions raise ``StoreUnavailable``."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def complete(self, record: DeliveryRecord) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("disk I/O error")
        await super().complete(record)


async def test_an_outcome_write_is_tried_again_while_the_store_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = RecordingChannel("hook")
    store = _FailingWritesAtFirst(2)
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel], store=store)
    await h.post(make_payload())
    await h.dispatcher.drain()
    assert await h.outcomes("hook") == ["delivered"]
    assert (await store.stats(h.clock())).queued == 0
    assert h.pauses == [0.5, 1.0]
    logged = [r for r in caplog.records if r.name == "notifier.delivery" and "store" in r.message]
    assert [r.levelno for r in logged] == [logging.WARNING] * 2


async def test_an_outcome_write_gives_up_after_four_tries_and_leaves_the_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = RecordingChannel("hook")
    store = _FailingWritesAtFirst(4)
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel], store=store)
    await h.post(make_payload())
    await h.dispatcher.drain()
    assert store.failures == 0 and h.pauses == [0.5, 1.0, 2.0]
    assert await h.outcomes("hook") == []
    assert (await store.stats(h.clock())).in_flight == 1  # delivered again once the lease ends
    [gave_up] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "not recorded" in gave_up.getMessage()


class _ClaimGate(MemoryStore):
    """A MemoryStore whose ``claim`` leases its jobs, then waits at a gate before returning
    them: a claim under way when stop() comes."""

    def __init__(self) -> None:
        super().__init__()
        self.claiming = asyncio.Event()
        self.gate = asyncio.Event()

    async def claim(
        self,
        limit: int,
        lease: float,
        now: float,
        channel_limits: Mapping[str, int] | None = None,
    ) -> list[Any]:
        jobs = await super().claim(limit, lease, now, channel_limits)
        self.claiming.set()
        await self.gate.wait()  # leased, not yet handed to the dispatcher
        return jobs


async def test_stop_during_a_claim_hands_the_claimed_jobs_back() -> None:
    channel = RecordingChannel("hook")
    store = _ClaimGate()
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel], store=store)
    await h.post(make_payload())
    await h.dispatcher.start()
    await asyncio.wait_for(store.claiming.wait(), 2.0)
    stopping = asyncio.create_task(h.dispatcher.stop(grace=1.0))
    await asyncio.sleep(0)  # stop() is now waiting for the loop
    store.gate.set()  # the claim completes after stop() was asked
    await asyncio.wait_for(stopping, 5.0)
    assert channel.calls == []  # nothing was sent
    stats = await store.stats(h.clock())
    assert (stats.in_flight, stats.due) == (0, 1)  # handed back, due now: not left leased


class _ClaimGateReleaseDown(_ClaimGate):
    """A ``_ClaimGate`` whose store cannot be written once the claim is made."""

    async def release(self, job_id: str, not_before: float) -> None:
        raise StoreUnavailable("disk I/O error")


async def test_a_hand_back_that_fails_on_stop_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    channel = RecordingChannel("hook")
    store = _ClaimGateReleaseDown()
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [channel], store=store)
    [job_id] = await h.post(make_payload())
    await h.dispatcher.start()
    await asyncio.wait_for(store.claiming.wait(), 2.0)
    stopping = asyncio.create_task(h.dispatcher.stop(grace=1.0))
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.wait_for(stopping, 5.0)
    assert channel.calls == []
    [logged] = [r for r in caplog.records if r.name == "notifier.dispatcher"]
    assert logged.levelno == logging.WARNING
    assert job_id in logged.getMessage() and "disk I/O error" in logged.getMessage()


def test_channels_must_be_in_the_config() -> None:
    config = config_for_tests({"hook": {}}, everything_to("hook"))
    stray = RecordingChannel("stray")
    with pytest.raises(ValueError, match="stray"):
        Dispatcher(MemoryStore(), {"stray": stray}, config, Metrics())


async def test_a_delivery_is_logged_at_debug_a_retry_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = RecordingChannel("hook", outcomes=[RetryableError(FailureReason.SERVER_ERROR, "502")])
    h = Harness(config_for_tests({"hook": {}}, everything_to("hook")), [flaky])
    await h.post(make_payload())

    with caplog.at_level(logging.DEBUG, logger="notifier.delivery"):
        await h.dispatcher.drain()
        h.clock.advance(60)
        await h.dispatcher.drain()

    attempts = [r for r in caplog.records if r.getMessage() == "delivery attempt"]
    assert [(r.levelno, r.outcome) for r in attempts] == [  # type: ignore[attr-defined]
        (logging.INFO, "retry"),
        (logging.DEBUG, "delivered"),
    ]
