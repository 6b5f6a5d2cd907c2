"""One claimed job's journey: its channel's protection gates, one send, the outcome recorded.

For a single attempt this module decides delivered / rescheduled with backoff /
dead-lettered / handed back unattempted, writes that outcome to the store as a
``DeliveryRecord`` and counts it in the metrics. It does not claim jobs, choose what runs
next or bound concurrency (the dispatcher does), and it never retries a send in a loop: a
retry is a job rescheduled in the store (only the write of an outcome is tried again, with
tenacity, while the store is briefly down). Error texts are ``str()`` of our ``DeliveryError``s,
which never hold a secret; an unexpected exception from a channel is logged here with its
traceback and recorded only by its type name.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from notifier.backoff import backoff_delay
from notifier.channels.base import (
    Channel,
    DeliveryError,
    FailureReason,
    Receipt,
    RetryableError,
)
from notifier.config import LoadedConfig
from notifier.durations import format_duration
from notifier.metrics import CIRCUIT_STATES, Metrics
from notifier.protection import CircuitBreaker
from notifier.rate_limits import TokenBucket, bucket_for
from notifier.retrying import Sleep, first_then_retrying
from notifier.store.base import ClaimedJob, DeliveryRecord, Outcome, Store, StoreUnavailable

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# Writing an outcome while the store is unreachable: this many tries, pausing 0.5 s, then
# twice as long each time, at most 2 s. After the last one the job stays leased and is
# delivered again when its lease expires.
_STORE_TRIES = 4
_STORE_WAIT = wait_exponential(multiplier=0.5, max=2.0)
_PUT_BACK_DELAY = 0.05  # a job its lane had no room for is due again after this


@dataclass(frozen=True, slots=True)
class LaneSettings:
    """What the config says about driving one channel, in seconds."""

    timeout: float
    initial_backoff: float
    max_backoff: float
    max_age: float
    rate_limit: float | None
    max_in_flight: int  # sends of this channel at once, so a hung peer cannot hold every worker
    failure_threshold: int
    reset_after: float

    @classmethod
    def from_config(cls, config: LoadedConfig, name: str, workers: int) -> LaneSettings:
        """The channel's settings; ``max_in_flight`` defaults to half of the ``workers``."""
        channel = config.config.channels[name]
        retry, cap = config.config.defaults.retry, channel.max_in_flight
        return cls(
            timeout=config.timeout(name).total_seconds(),
            initial_backoff=retry.initial_backoff.total_seconds(),
            max_backoff=retry.max_backoff.total_seconds(),
            max_age=retry.max_age.total_seconds(),
            rate_limit=channel.rate_limit,
            max_in_flight=max(1, workers // 2) if cap is None else cap,
            failure_threshold=channel.circuit_breaker_failures,
            reset_after=channel.circuit_breaker_reset.total_seconds(),
        )


@dataclass(slots=True)
class Backlog:
    """Whether this process knows a channel to have no job due in the store, for hand-offs.

    ``drained``: a claim took fewer of the channel's jobs than it had room for, so none
    was due then, and no job of the channel went (back) into the queue since. Only then
    may a fresh job of the channel skip the queue (``Dispatcher.enqueue``): else an older
    one may wait there, and it goes first. ``quiet_from``: when the last job this process
    held back (rate limit, open circuit, retry, no room) falls due; a claim before then
    cannot find the channel drained, so a channel holding jobs back takes no hand-offs.
    """

    drained: bool = False
    quiet_from: float = float("-inf")

    def queued(self, due_at: float | None = None) -> None:
        """A job of the channel went into the queue, due at ``due_at`` (None: a claim from
        now on finds it once due, as for a job due now or deferred by a time window)."""
        self.drained = False
        if due_at is not None:
            self.quiet_from = max(self.quiet_from, due_at)

    def claimed_all(self, now: float) -> None:
        """A claim at ``now`` took every due job of the channel."""
        if now >= self.quiet_from:
            self.drained = True


class Lane:
    """One configured channel as the dispatcher drives it: protection, settings, metric series.

    Built anew on every config load; the breaker and limiter of a channel whose
    protection settings did not change are carried over from ``previous``, and its sends
    in flight and ``Backlog`` always are (a send started before the reload still counts
    and still tells what it puts back in the queue). Building one
    changes nothing outside it (a bad setting raises ``ValueError``); ``export_gauges``
    points the scrape-time gauges at it once the whole new set of lanes is built.
    """

    def __init__(
        self,
        channel: Channel,
        settings: LaneSettings,
        metrics: Metrics,
        clock: Clock,
        previous: Lane | None = None,
        store: object = None,
    ) -> None:
        """``store`` gives the rate limit its bucket when it shares them across replicas."""
        self.channel = channel
        self.settings = settings
        # Ids of the jobs handed to this lane whose send has not returned yet (some may be
        # waiting for their rate-limit slot): the
        # dispatcher adds each one it starts; ``Deliverer`` takes it out once the send is
        # over (the outcome write that follows does not count), the dispatcher at the latest
        # when the job's task ends.
        self.sends: set[str] = set() if previous is None else previous.sends
        self.backlog: Backlog = Backlog() if previous is None else previous.backlog
        self.breaker: CircuitBreaker
        self.limiter: TokenBucket | None
        self.last_reason: FailureReason  # of the channel's last retryable failure
        if previous is not None and _same_protection(previous.settings, settings):
            self.breaker, self.limiter = previous.breaker, previous.limiter
            self.last_reason = previous.last_reason
        else:
            self.breaker = CircuitBreaker(settings.failure_threshold, settings.reset_after)
            rate = settings.rate_limit
            self.limiter = None if rate is None else bucket_for(store, channel.name, rate)
            self.last_reason = FailureReason.OTHER
        self._clock = clock
        # A channel whose sends never outlast the lane's timeout by themselves (its HTTP
        # client enforces it) needs no timer of ours around each send: one per send
        # showed in the storm profile.
        own: float | None = getattr(channel, "send_timeout", None)
        self.self_timed = own is not None and own <= settings.timeout
        name, kind = channel.name, channel.type
        self.delivered = metrics.notifications.labels(name, kind)
        self.latency = metrics.notification_latency.labels(name, kind)
        self.attempt_duration = metrics.attempt_duration.labels(name, kind)
        self.attempts = metrics.attempts.labels(name, kind)
        self.retries = metrics.retries.labels(name, kind)
        self.failed = {
            r: metrics.notifications_failed.labels(name, kind, r.value) for r in FailureReason
        }
        self.dead = {r: metrics.dead_lettered.labels(name, kind, r.value) for r in FailureReason}

    def export_gauges(self, metrics: Metrics) -> None:
        """Have the circuit and rate-limit gauges read this lane's protection at scrape time,
        so they are current without per-job work."""
        name, kind, clock = self.channel.name, self.channel.type, self._clock
        breaker, limiter = self.breaker, self.limiter

        def utilisation() -> float:
            return 0.0 if limiter is None else limiter.utilisation(clock())

        metrics.circuit_state.labels(name, kind).set_function(lambda: CIRCUIT_STATES[breaker.state])
        metrics.rate_limit_utilisation.labels(name, kind).set_function(utilisation)


def _same_protection(a: LaneSettings, b: LaneSettings) -> bool:
    return (a.rate_limit, a.failure_threshold, a.reset_after) == (
        b.rate_limit,
        b.failure_threshold,
        b.reset_after,
    )


def _log_attempt(level: int, record: DeliveryRecord, attempt: int, **more: float) -> None:
    """One JSON line per delivery attempt (DESIGN §6): ids, channel, outcome, reason, latency."""
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "delivery attempt",
        extra={
            "job_id": record.job_id,
            "channel": record.channel,
            "type": record.channel_type,
            "outcome": record.outcome,
            "reason": record.reason,
            "attempt": attempt,
            "latency_ms": round(record.latency * 1000, 3),
            "error": record.error if record.outcome != "delivered" else None,
            **more,
        },
    )


def _age(seconds: float) -> str:
    return format_duration(timedelta(seconds=max(0.0, seconds)))


class Deliverer:
    """Runs one attempt of one claimed job and records its outcome; never raises but on cancel."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        rng: random.Random,
        *,
        sleep: Sleep = asyncio.sleep,
        slot_sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._rng = rng
        self._sleep = sleep  # between tries of a store write
        self._slot_sleep = slot_sleep  # until a reserved rate-limit slot, on ``clock``'s time

    async def run(self, job: ClaimedJob, lane: Lane | None) -> None:
        if lane is None:
            await self._orphan(job)
            return
        now = self._clock()
        wait, reason = lane.breaker.allow(now), lane.last_reason
        if not wait and lane.limiter is not None:
            trial = lane.breaker.state == "half_open"  # this job is the circuit's trial
            turn = await lane.limiter.acquire(now)
            if not turn.reserved:
                lane.breaker.abandon_trial()
                wait, reason = turn.wait, FailureReason.RATE_LIMITED
            elif turn.wait:
                now, wait = await self._wait_for_slot(job, lane, turn.wait, trial=trial)
        if wait:
            await self._hold_back(job, lane, now, wait, reason)
            return
        await self._attempt(job, lane)

    async def _wait_for_slot(
        self, job: ClaimedJob, lane: Lane, wait: float, *, trial: bool
    ) -> tuple[float, float]:
        """Wait in place for the send slot the rate limit reserved (at most its reach away).

        Handed back to the store instead, the job would come back a little late and the
        slot would go unused. Returns the time after the wait, and how long the circuit
        now says to stay away: one that opened meanwhile holds the job back all the same.
        """
        try:
            await self._slot_sleep(wait)
        except asyncio.CancelledError:
            await self._hand_back(job, lane)
            raise
        now = self._clock()
        if trial or lane.breaker.state == "closed":
            return now, 0.0
        return now, lane.breaker.allow(now)

    async def put_back(self, job: ClaimedJob, lane: Lane) -> None:
        """Hand a job back unattempted, due again in a moment: its lane had no room for it."""
        not_before = self._clock() + _PUT_BACK_DELAY
        lane.backlog.queued(not_before)
        await self._write(job.id, lambda: self._store.release(job.id, not_before=not_before))

    async def _attempt(self, job: ClaimedJob, lane: Lane) -> None:
        channel, timeout = lane.channel, lane.settings.timeout
        started = time.perf_counter()
        try:
            receipt = await self._send(job, lane)
        except DeliveryError as exc:
            error: DeliveryError = exc
        except TimeoutError:
            error = RetryableError(FailureReason.TIMEOUT, f"no answer within {_age(timeout)}")
        except asyncio.CancelledError:
            await self._hand_back(job, lane)
            raise
        except Exception as exc:
            log.exception(
                "channel %s raised %s: a bug in the channel", channel.name, type(exc).__name__
            )
            error = RetryableError(FailureReason.OTHER, f"channel raised {type(exc).__name__}")
        else:
            await self._delivered(job, lane, receipt, time.perf_counter() - started)
            return
        await self._failed(job, lane, error, time.perf_counter() - started)

    @staticmethod
    async def _send(job: ClaimedJob, lane: Lane) -> Receipt:
        """The send itself, within the channel's timeout; it leaves the lane's count when over."""
        try:
            if lane.self_timed:
                return await lane.channel.send(job.notification)
            async with asyncio.timeout(lane.settings.timeout):
                return await lane.channel.send(job.notification)
        finally:
            lane.sends.discard(job.id)

    async def _delivered(self, job: ClaimedJob, lane: Lane, receipt: Receipt, took: float) -> None:
        record = self._record(job, lane.channel.type, "delivered", None, receipt.log_text, took)
        lane.breaker.record_success()
        lane.attempts.inc()
        lane.attempt_duration.observe(took)
        lane.delivered.inc()
        lane.latency.observe(record.at - record.received_at)
        _log_attempt(logging.DEBUG, record, job.attempts + 1)
        await self._write(job.id, lambda: self._store.complete(record))

    async def _failed(self, job: ClaimedJob, lane: Lane, error: DeliveryError, took: float) -> None:
        lane.attempts.inc()
        lane.attempt_duration.observe(took)
        lane.failed[error.reason].inc()
        if not error.retryable:
            # The peer answered, so it is up: a half-open circuit's trial that gets a
            # refusal closes it, instead of leaving the trial out until ``reset_after``.
            lane.breaker.record_success()
            await self._dead(job, lane, error.reason, str(error), took)
            return
        now = self._clock()
        lane.breaker.record_failure(now)
        lane.last_reason = error.reason
        attempts, settings = job.attempts + 1, lane.settings
        delay = backoff_delay(
            attempts, settings.initial_backoff, settings.max_backoff, error.retry_after, self._rng
        )
        if now + delay - job.enqueued_at > settings.max_age:
            text = (
                f"{error}; gave up after {attempts} attempt(s) over {_age(now - job.enqueued_at)}"
                f" (retry.max_age {_age(settings.max_age)})"
            )
            await self._dead(job, lane, error.reason, text, took)
            return
        lane.retries.inc()
        record = self._record(job, lane.channel.type, "retry", error.reason, str(error), took)
        _log_attempt(logging.INFO, record, attempts, retry_in_s=round(delay, 3))
        lane.backlog.queued(now + delay)
        await self._write(job.id, lambda: self._store.reschedule(record, not_before=now + delay))

    async def _hold_back(
        self, job: ClaimedJob, lane: Lane, now: float, wait: float, reason: FailureReason
    ) -> None:
        """Hand the job back unattempted (circuit open, rate limit), unless it would get too old."""
        if now + wait - job.enqueued_at <= lane.settings.max_age:
            lane.backlog.queued(now + wait)
            await self._write(job.id, lambda: self._store.release(job.id, not_before=now + wait))
            return
        why = "rate limit" if reason is FailureReason.RATE_LIMITED else "open circuit"
        text = (
            f"{reason.value}: held back by the channel's {why}; gave up after {job.attempts}"
            f" attempt(s) over {_age(now - job.enqueued_at)}"
            f" (retry.max_age {_age(lane.settings.max_age)})"
        )
        await self._dead(job, lane, reason, text, 0.0)

    async def _dead(
        self, job: ClaimedJob, lane: Lane, reason: FailureReason, text: str, took: float
    ) -> None:
        lane.dead[reason].inc()
        record = self._record(job, lane.channel.type, "dead", reason, text, took)
        _log_attempt(logging.WARNING, record, job.attempts + 1)
        await self._write(job.id, lambda: self._store.dead_letter(record))

    async def _hand_back(self, job: ClaimedJob, lane: Lane) -> None:
        """The send was cancelled (shutdown): the job is due again now, no attempt counted."""
        now = self._clock()
        lane.backlog.queued(now)
        try:
            await self._store.release(job.id, not_before=now)
        except StoreUnavailable as exc:
            log.warning("could not hand back job %s (%s); its lease will expire", job.id, exc)

    async def _orphan(self, job: ClaimedJob) -> None:
        """A job for a channel the current config no longer has: dead-letter it for replay."""
        name = job.notification.channel
        text = f"other: channel {name!r} is not configured (removed by a config reload?)"
        self._metrics.dead_lettered.labels(name, "unknown", FailureReason.OTHER.value).inc()
        record = self._record(job, "unknown", "dead", FailureReason.OTHER, text, 0.0)
        _log_attempt(logging.WARNING, record, job.attempts)
        await self._write(job.id, lambda: self._store.dead_letter(record))

    def _record(
        self,
        job: ClaimedJob,
        channel_type: str,
        outcome: Outcome,
        reason: FailureReason | None,
        text: str,
        took: float,
    ) -> DeliveryRecord:
        n = job.notification
        return DeliveryRecord(
            job_id=n.job_id,
            channel=n.channel,
            channel_type=channel_type,
            outcome=outcome,
            reason=None if reason is None else reason.value,
            error=text,
            latency=took,
            at=self._clock(),
            received_at=n.received_at,
            severity=n.severity,
            status=n.status,
            alerts=len(n.alerts),
        )

    async def _write(self, job_id: str, write: Callable[[], Awaitable[None]]) -> None:
        """One store write, retried while the store is briefly unreachable."""
        retrying = partial(
            AsyncRetrying,
            retry=retry_if_exception_type(StoreUnavailable),
            stop=stop_after_attempt(_STORE_TRIES),
            wait=_STORE_WAIT,
            sleep=self._sleep,
            before_sleep=partial(_log_store_retry, job_id),
            reraise=True,
        )
        try:
            await first_then_retrying(write, retrying)
        except StoreUnavailable as exc:
            log.error(
                "store unavailable, outcome of job %s not recorded (%s); it stays leased"
                " and will be tried again when the lease expires",
                job_id,
                exc,
            )


def _log_store_retry(job_id: str, state: RetryCallState) -> None:
    error = None if state.outcome is None else state.outcome.exception()
    pause = 0.0 if state.next_action is None else state.next_action.sleep
    log.warning("store unavailable recording job %s (%s); again in %.1fs", job_id, error, pause)
