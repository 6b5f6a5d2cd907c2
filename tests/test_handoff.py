"""Hand-off at enqueue: a fresh job the dispatcher has room for skips the claim.

Real parts (``Dispatcher``, ``MemoryStore``, ``RecordingChannel``s, a manual clock) as in
``tests/test_dispatcher.py``; the store only counts its claims and says when the claim
loop naps. The idle timer is pushed out of reach, so a claim happens only when something
wakes the loop: a hand-off must need none. The stores' side (a job stored leased, claimable
once its lease runs out) is in ``tests/store_contract.py``; a SIGKILL during a handed-off
send, in ``tests/test_crash_safety.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import pytest

from notifier.channels.base import FailureReason, RetryableError
from notifier.dedup import PlannedJob
from notifier.store.base import EnqueueResult, HandOff, StoreUnavailable
from notifier.testing import RecordingChannel, config_for_tests, make_payload
from tests.processes import wait_until
from tests.test_dispatcher import CountingClaims, Harness, SaysWhenIdle, everything_to


class _Watched(CountingClaims, SaysWhenIdle):
    """A store that counts claims and sets ``waiting`` when the claim loop naps."""


@pytest.fixture(autouse=True)
def _no_idle_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("notifier.dispatcher._IDLE_CAP", 3600.0)


async def started(channel: RecordingChannel, store: _Watched, **settings: Any) -> Harness:
    """A running dispatcher for ``channel`` whose first claim found the queue empty."""
    config = config_for_tests({channel.name: settings}, everything_to(channel.name))
    h = Harness(config, [channel], store=store)
    await h.dispatcher.start()
    await asyncio.wait_for(store.waiting.wait(), 5.0)
    return h


async def test_a_fresh_job_in_an_idle_queue_is_delivered_without_a_claim() -> None:
    channel = RecordingChannel("hook")
    store = _Watched()
    h = await started(channel, store)
    claims = store.claims
    try:
        result = await h.ingest(make_payload())
        assert result.leased == result.enqueued and len(result.leased) == 1
        await channel.wait_for_deliveries(1)
        await asyncio.sleep(0.05)  # for a claim the end of the send might wake (none may)
    finally:
        await h.dispatcher.stop(grace=1.0)
    assert store.claims == claims
    assert await h.outcomes("hook") == ["delivered"]
    stats = await store.stats(h.clock())
    assert (stats.queued, stats.in_flight) == (0, 0)


async def test_a_lane_at_its_cap_queues_and_the_backlog_keeps_its_order() -> None:
    channel = RecordingChannel("hook", delay=0.05)
    store = _Watched()
    h = await started(channel, store, max_in_flight=1)
    try:
        first, second, third = [
            await h.ingest(make_payload(alertname=f"Alert{i}")) for i in range(3)
        ]
        # The first fills the lane; the others wait in the queue, claimed oldest first.
        assert (len(first.leased), second.leased, third.leased) == (1, (), ())
        await channel.wait_for_deliveries(3)
    finally:
        await h.dispatcher.stop(grace=1.0)
    assert [n.alerts[0].labels["alertname"] for n in channel.sent] == [
        "Alert0",
        "Alert1",
        "Alert2",
    ]


async def test_jobs_another_enqueuer_queued_go_before_a_fresh_one() -> None:
    """An escalation page, a heartbeat, a replay... enqueued beside the receiver wakes the
    dispatcher: until a claim took them, no fresh job of any channel skips the queue."""
    channel = RecordingChannel("hook")
    store = _Watched()
    h = await started(channel, store)
    try:
        await h.post(make_payload(alertname="Page"))
        h.dispatcher.wake()
        fresh = await h.ingest(make_payload(alertname="Fresh"))
        assert fresh.leased == ()
        await channel.wait_for_deliveries(2)
    finally:
        await h.dispatcher.stop(grace=1.0)
    assert [n.alerts[0].labels["alertname"] for n in channel.sent] == ["Page", "Fresh"]


async def retried(h: Harness) -> bool:
    return await h.outcomes("hook") == ["retry"]


async def test_a_channel_that_holds_jobs_back_takes_no_hand_offs() -> None:
    """Its jobs go through the queue, where a backlog forms (and a storm folds) as before."""
    unavailable = RetryableError(FailureReason.SERVER_ERROR, "503 Service Unavailable")
    channel = RecordingChannel("hook", outcomes=[unavailable])
    store = _Watched()
    h = await started(channel, store, circuit_breaker_failures=1)
    try:
        failing = await h.ingest(make_payload(alertname="First"))
        assert len(failing.leased) == 1
        await channel.wait_for_calls(1)
        await wait_until(lambda: retried(h), "the first send's retry recorded")
        # The retry is due later and the circuit is open: the next jobs queue behind it,
        # however often the claim loop finds nothing due meanwhile.
        for index in range(3):
            store.waiting.clear()
            queued = await h.ingest(make_payload(alertname=f"Later{index}"))
            assert (len(queued.enqueued), queued.leased) == (1, ())
            await asyncio.wait_for(store.waiting.wait(), 5.0)
    finally:
        await h.dispatcher.stop(grace=1.0)
    assert len(channel.calls) == 1  # the others were held back by the open circuit
    stats = await store.stats(h.clock())
    assert (stats.queued, stats.in_flight) == (4, 0)


async def test_stop_hands_a_handed_off_job_back() -> None:
    hung = RecordingChannel("hook", delay=math.inf)
    store = _Watched()
    h = await started(hung, store)
    [job_id] = (await h.ingest(make_payload())).leased
    await hung.wait_for_calls(1)

    await h.dispatcher.stop(grace=0.05)

    [again] = await store.claim(10, lease=60, now=h.clock())
    assert (again.id, again.attempts) == (job_id, 0)
    assert await store.deliveries() == []


async def test_stop_hands_back_a_job_handed_off_but_not_started_yet() -> None:
    channel = RecordingChannel("hook")
    store = _Watched()
    h = await started(channel, store)
    [job_id] = (await h.ingest(make_payload())).leased  # starts at the end of this loop turn

    await h.dispatcher.stop(grace=1.0)  # asked within the same turn

    assert channel.calls == []
    [again] = await store.claim(10, lease=60, now=h.clock())
    assert (again.id, again.attempts) == (job_id, 0)


class _GatedEnqueue(_Watched):
    """A ``_Watched`` store whose enqueues with a hand-off wait for ``gate`` once stored."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.enqueuing = asyncio.Event()

    async def enqueue(
        self, jobs: Sequence[PlannedJob], now: float, handoff: HandOff | None = None
    ) -> EnqueueResult:
        result = await super().enqueue(jobs, now, handoff)
        if handoff is not None:
            self.enqueuing.set()
            await self.gate.wait()
        return result


async def test_a_job_handed_off_as_the_dispatcher_stops_is_handed_back() -> None:
    channel = RecordingChannel("hook")
    store = _GatedEnqueue()
    h = await started(channel, store)
    ingest = asyncio.create_task(h.ingest(make_payload()))
    await asyncio.wait_for(store.enqueuing.wait(), 5.0)
    await h.dispatcher.stop(grace=1.0)
    store.gate.set()  # the enqueue returns after stop(): its leased job goes back
    result = await asyncio.wait_for(ingest, 5.0)

    assert len(result.leased) == 1
    assert channel.calls == []
    stats = await store.stats(h.clock())
    assert (stats.due, stats.in_flight) == (1, 0)  # due now, not left leased


class _FailsOnce(_Watched):
    """A ``_Watched`` store whose first enqueue cannot be written."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def enqueue(
        self, jobs: Sequence[PlannedJob], now: float, handoff: HandOff | None = None
    ) -> EnqueueResult:
        if not self.failed:
            self.failed = True
            raise StoreUnavailable("disk I/O error")
        return await super().enqueue(jobs, now, handoff)


async def test_a_failed_enqueue_gives_its_room_back() -> None:
    channel = RecordingChannel("hook")
    store = _FailsOnce()
    h = await started(channel, store, max_in_flight=1)
    try:
        with pytest.raises(StoreUnavailable):
            await h.ingest(make_payload(alertname="Lost"))
        # The room the failed enqueue held is free again: a cap of one takes the next.
        result = await h.ingest(make_payload(alertname="Next"))
        assert len(result.leased) == 1
        await channel.wait_for_deliveries(1)
    finally:
        await h.dispatcher.stop(grace=1.0)
