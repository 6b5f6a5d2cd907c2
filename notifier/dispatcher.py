"""The worker pool: claims due jobs from the store and delivers each, at most ``workers`` at once.

Owns concurrency and lifecycle: one claim loop, woken at once by ``wake()`` after an
enqueue and otherwise asleep until the store has work or the next job falls due;
burst-mode ``drain()`` for tests; graceful ``stop()``; hot config reload; and one ``Lane``
per channel (its circuit breaker, rate limiter and sends in flight). What happens to a
single job is ``notifier.delivery``'s business: this module never sends, renders or
decides retries.

No channel has more than its ``max_in_flight`` sends running, so a peer that hangs cannot
hold every worker: a claim gives each channel its own share, the room its lane has left
(none for a lane at its cap), and takes up to the free workers in all. A channel near its
cap limits only its own jobs, never the size of a claim for the others.

A claim is a lease: a job whose worker dies, or whose outcome cannot be written, is
claimed again when the lease expires. Delivery is at-least-once.

Hand-off: a fresh job need not wait for a claim. ``enqueue`` picks the channels whose
lanes have room, a free worker, and no job known to wait in the store
(``delivery.Backlog``); the store keeps their jobs already leased to this process
(``store.base.HandOff``) and the dispatcher runs them as if just claimed. Everything else
goes through the queue as before: a backlog is claimed oldest first, a lane at its cap or
holding jobs back (rate limit, open circuit) lets its backlog form in the store, where
the storm watch can fold it. This saves each job of a calm channel a claim transaction
and the claim loop's wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from functools import partial
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from notifier.channels.base import Channel
from notifier.config import LoadedConfig
from notifier.dedup import PlannedJob
from notifier.delivery import Clock, Deliverer, Lane, LaneSettings
from notifier.metrics import Metrics
from notifier.protection import CircuitState
from notifier.retrying import Sleep, first_then_retrying
from notifier.store.base import ClaimedJob, EnqueueResult, HandOff, Store, StoreUnavailable

log = logging.getLogger(__name__)

_IDLE_CAP = 1.0  # longest sleep between claims when nothing is known to fall due
# When the store says "due now" yet hands out nothing. Also: after a claim came back short
# with some lanes full, the claims for this long count only those lanes' room, since the
# others had nothing due: a claim that counted them would walk the full lanes' backlog
# past their shares (wake() comes with every enqueue, so it cannot be the signal).
_NOTHING_DUE_FLOOR = 0.05
# Between failed claims (store down, or a bug): 0.5 s, then twice as long each time, at most 5 s.
_CLAIM_WAIT = wait_exponential(multiplier=0.5, max=5.0)
_CANCEL_GRACE = 5.0  # for cancelled sends to hand their jobs back


class Dispatcher:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        config: LoadedConfig,
        metrics: Metrics,
        *,
        clock: Clock = time.time,
        workers: int | None = None,
        lease: float | None = None,
        rng: random.Random | None = None,
        retry_sleep: Sleep = asyncio.sleep,
        slot_sleep: Sleep = asyncio.sleep,
    ) -> None:
        """``retry_sleep`` pauses between tries of a failed claim or store write (tests
        pass one that returns at once); ``slot_sleep`` waits for a send's rate-limit slot
        (tests with a manual ``clock`` pass one that moves it)."""
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._workers = workers if workers is not None else config.config.storage.workers
        self._lease = lease if lease is not None else config.config.storage.lease.total_seconds()
        if self._workers < 1 or self._lease <= 0:
            raise ValueError("workers must be at least 1 and lease positive")
        self._deliverer = Deliverer(
            store, metrics, clock, rng or random.Random(), sleep=retry_sleep, slot_sleep=slot_sleep
        )
        self._retry_sleep = retry_sleep
        self._lanes: dict[str, Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Room held for jobs being enqueued to be handed off (``_reserve``), per channel.
        self._reserved: dict[str, int] = {}
        self._reserved_total = 0
        # Jobs handed off and not yet started (``_start_handed``), their room still reserved.
        self._handed: list[ClaimedJob] = []
        self._wakeup = asyncio.Event()
        # The claim loop waits for a send to end (a lane or worker to free up), not for work.
        self._awaiting_room = False
        # The full lanes the last short claim skipped, and until when (loop time) its
        # finding holds: no other lane had a job due.
        self._short_claim_skipped: frozenset[str] = frozenset()
        self._nothing_else_due_until = 0.0
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self.replace_config(config, channels)

    def replace_config(self, config: LoadedConfig, channels: Mapping[str, Channel]) -> None:
        """Adopt a reloaded config and its channels; a kept channel keeps its protection state.

        All or nothing: every lane is built before any is swapped in, so a setting that
        cannot be built (``ValueError``) leaves the running lanes and their gauges as they
        were. Jobs already running finish with the channel object they started with;
        closing replaced channel objects is the caller's business.
        """
        unknown = sorted(set(channels) - set(config.config.channels))
        if unknown:
            raise ValueError(f"channels not in the config: {', '.join(unknown)}")
        lanes = {}
        for name, channel in channels.items():
            old = self._lanes.get(name)
            previous = old if old is not None and old.channel.type == channel.type else None
            settings = LaneSettings.from_config(config, name, self._workers)
            try:
                lanes[name] = Lane(
                    channel, settings, self._metrics, self._clock, previous, store=self._store
                )
            except ValueError as exc:
                raise ValueError(f"channels.{name}: {exc}") from None
        for name, old in self._lanes.items():
            if name not in lanes or lanes[name].channel.type != old.channel.type:
                self._drop_gauges(old)
        for lane in lanes.values():
            lane.export_gauges(self._metrics)
        self._lanes = lanes

    def circuit_states(self) -> dict[str, CircuitState]:
        return {name: lane.breaker.state for name, lane in self._lanes.items()}

    def rate_limit_use(self, now: float) -> dict[str, float | None]:
        """Each channel's share of its rate limit used lately (None: no limit), for the console."""
        return {
            name: None if lane.limiter is None else lane.limiter.utilisation(now)
            for name, lane in self._lanes.items()
        }

    def wake(self) -> None:
        """New work was enqueued: claim now instead of at the next timer.

        The work is not said to be whose, so no channel is known to be drained any more:
        none takes hand-offs until a claim finds it drained again."""
        for lane in self._lanes.values():
            lane.backlog.queued()
        self._wakeup.set()

    async def enqueue(self, jobs: Sequence[PlannedJob], now: float) -> EnqueueResult:
        """``Store.enqueue``, handing the fresh jobs this dispatcher has room for straight
        to it: they are stored leased to this process and run as if just claimed.

        A channel takes a hand-off while the dispatcher runs, its lane has room under its
        ``max_in_flight`` and a worker is free (counting the room held for enqueues under
        way), and a claim found it drained since a job of it last went into the queue
        (``Backlog``). Else its job goes into the queue and wakes the claim loop, as
        before: a backlog keeps its order, a storm still forms one. Raises as the store.
        """
        reserved = self._reserve(jobs)
        handoff = HandOff(frozenset(reserved), self._clock() + self._lease) if reserved else None
        try:
            result = await self._store.enqueue(jobs, now, handoff)
        except BaseException:
            self._unreserve(reserved)
            raise
        leased = set(result.leased)
        handed = [
            ClaimedJob(job.notification, 0, now)
            for job in jobs
            if job.notification is not None and job.notification.job_id in leased
        ]
        if handed and self._loop_task is not None and not self._stopping:
            # Their room stays held until they start; the rest is given back now.
            for job in handed:
                reserved.remove(job.notification.channel)
            if not self._handed:
                asyncio.get_running_loop().call_soon(self._start_handed)
            self._handed += handed
            handed = []
        self._unreserve(reserved)
        if handed:  # stop() came during the enqueue
            await self._hand_back(handed)
        if len(result.enqueued) > len(result.leased):
            self._wakeup.set()
        return result

    def _start_handed(self) -> None:
        """Start the jobs handed off during one loop turn, together, at its end.

        Started one by one inside each enqueue, the same jobs cost the event loop several
        µs more each in a storm (``bench/run.py --only storm``). Until then their room
        stays reserved; once ``stop()`` was asked, it hands them back instead.
        """
        if self._stopping:
            return
        handed, self._handed = self._handed, []
        self._unreserve([job.notification.channel for job in handed])
        self._spawn(handed)

    def _reserve(self, jobs: Sequence[PlannedJob]) -> list[str]:
        """Hold room for each job of ``jobs`` that may take a hand-off; the channels held.

        The lane of every other job with something to send learns now, before the write,
        that its job goes into the queue: a claim that begins after this may find it.
        """
        running = self._loop_task is not None and not self._stopping
        free = self._workers - len(self._tasks) - self._reserved_total
        reserved = []
        for job in jobs:
            lane = self._lanes.get(job.channel)
            if job.notification is None or lane is None:
                continue
            held = self._reserved.get(job.channel, 0)
            if (
                running
                and free > 0
                and job.not_before is None
                and lane.backlog.drained
                and len(lane.sends) + held < lane.settings.max_in_flight
            ):
                self._reserved[job.channel] = held + 1
                free -= 1
                reserved.append(job.channel)
            else:
                lane.backlog.queued()
        self._reserved_total += len(reserved)
        return reserved

    def _unreserve(self, channels: Sequence[str]) -> None:
        for name in channels:
            held = self._reserved.pop(name) - 1
            if held:
                self._reserved[name] = held
        self._reserved_total -= len(channels)
        if channels and self._awaiting_room:
            self._wakeup.set()

    async def start(self) -> None:
        if self._loop_task is None:
            self._stopping = False
            self._loop_task = asyncio.create_task(self._run(), name="notifier-dispatcher")

    async def stop(self, grace: float) -> None:
        """Stop claiming; give running sends ``grace`` seconds, then cancel them.

        A cancelled send hands its job back (due now) so a restart or another replica
        takes it; a job cancelled while its outcome was being written keeps its lease.
        """
        if self._loop_task is not None:
            # Ask the loop to stop rather than cancel it mid-claim: jobs it had just
            # claimed would stay leased until the lease expires instead of being handed back.
            self._stopping = True
            self._wakeup.set()
            done, _ = await asyncio.wait({self._loop_task}, timeout=_CANCEL_GRACE)
            if not done:
                self._loop_task.cancel()
                await asyncio.wait({self._loop_task})
            self._loop_task = None
        if self._handed:
            handed, self._handed = self._handed, []
            self._unreserve([job.notification.channel for job in handed])
            await self._hand_back(handed)
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_CANCEL_GRACE)

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (burst mode has a deadline)
        """Burst mode: deliver until no job is due now and none is running, then return.

        Jobs scheduled for later (retries, held back by protection) are left alone.
        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                limit, rooms = self._room()
                jobs = await self._claim(limit, rooms) if limit > 0 else []
                self._spawn(jobs)
                if jobs and len(jobs) == limit:
                    continue  # there may be more for the lanes that still have room
                if not self._tasks:
                    return
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wakeup.clear()
            narrowed = loop.time() < self._nothing_else_due_until
            limit, rooms = self._room(self._short_claim_skipped if narrowed else None)
            if limit <= 0:
                self._awaiting_room = True
                try:
                    within = self._nothing_else_due_until - loop.time() if narrowed else None
                    await self._woken(within)
                finally:
                    self._awaiting_room = False
                continue
            try:
                jobs = await self._claim_until_it_works(limit, rooms)
            except Exception as exc:  # the claims failed until stop() was asked
                log.warning("claiming jobs failed as the dispatcher stopped: %r", exc)
                return
            if self._stopping:
                await self._hand_back(jobs)
                return
            self._spawn(jobs)
            if len(jobs) < limit:
                # Every lane with room left got all its due jobs; the full ones may have more.
                # Only a claim that counted every lane may say so, so none is left out long.
                full = self._full_lanes()
                if full and not narrowed:
                    self._short_claim_skipped = full
                    self._nothing_else_due_until = loop.time() + _NOTHING_DUE_FLOOR
                await self._idle(nothing_claimed=not jobs)

    async def _woken(self, within: float | None) -> None:
        """Wait until a job finishes or ``wake()`` is called, at most ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._wakeup.wait()

    def _room(self, among: frozenset[str] | None = None) -> tuple[int, dict[str, int]]:
        """How many jobs the next claim may take in all, and each channel's room.

        A lane's room is what is left under its ``max_in_flight`` (0 at its cap), so one
        claim cannot overfill a lane. The limit is the free workers, and no more than the
        room of the lanes together (of those ``among``, when given): 0 when they are all
        full. Both leave out the room reserved for hand-offs.
        """
        rooms = {
            name: max(
                0, lane.settings.max_in_flight - len(lane.sends) - self._reserved.get(name, 0)
            )
            for name, lane in self._lanes.items()
        }
        limit = self._workers - len(self._tasks) - self._reserved_total
        if rooms:
            counted = rooms.values() if among is None else (rooms.get(n, 0) for n in among)
            limit = min(limit, sum(counted))
        return limit, rooms

    def _full_lanes(self) -> frozenset[str]:
        return frozenset(
            name
            for name, lane in self._lanes.items()
            if len(lane.sends) >= lane.settings.max_in_flight
        )

    async def _hand_back(self, jobs: Sequence[ClaimedJob]) -> None:
        """Jobs claimed as the dispatcher stopped: due again now, for a restart or a replica."""
        now = self._clock()
        for job in jobs:
            try:
                await self._store.release(job.id, not_before=now)
            except StoreUnavailable as exc:
                log.warning("could not hand back job %s (%s); its lease will expire", job.id, exc)
            except Exception:
                log.exception("handing back job %s failed; its lease will expire", job.id)

    async def _claim_until_it_works(self, limit: int, rooms: Mapping[str, int]) -> list[ClaimedJob]:
        """Claim, trying again after any failure until a claim works or stop() is asked.

        Whatever went wrong, the loop must outlive it: a dead claim loop would leave the
        receiver answering 202 for jobs that nothing ever delivers. The room counted
        before the first try only grows while it pauses (sends finish), so it still holds.
        """
        retrying = AsyncRetrying(
            stop=lambda _: self._stopping,
            wait=_CLAIM_WAIT,
            sleep=self._retry_sleep,
            before_sleep=_log_failed_claim,
            reraise=True,
        )
        return await first_then_retrying(partial(self._claim, limit, rooms), retrying)

    async def _claim(self, limit: int, rooms: Mapping[str, int]) -> list[ClaimedJob]:
        """Claim up to ``limit`` jobs, each channel's share the room its lane has; note the
        lanes it drained.

        Only the shares below the limit are passed: the others cannot bind.
        """
        shares = {name: room for name, room in rooms.items() if room < limit}
        now = self._clock()
        jobs = await self._store.claim(limit, self._lease, now, channel_limits=shares)
        self._note_drained(jobs, limit, rooms, now)
        return jobs

    def _note_drained(
        self,
        jobs: Sequence[ClaimedJob],
        limit: int,
        rooms: Mapping[str, int],
        now: float,
    ) -> None:
        """A claim that came back short took every due job of each channel it gave fewer
        than its room: those lanes are drained. One that filled a channel's room (or the
        limit) may have left more of its jobs.

        A job enqueued while the claim ran may have come too late for it; the wake-up its
        enqueue gave makes the next claim take it, so it waits one more claim at most.
        """
        got = Counter(job.notification.channel for job in jobs)
        for name, lane in self._lanes.items():
            if name not in rooms:
                continue  # a lane a reload added during the claim
            if len(jobs) < limit and got[name] < rooms[name]:
                lane.backlog.claimed_all(now)
            elif got[name]:
                lane.backlog.queued()

    async def _idle(self, *, nothing_claimed: bool) -> None:
        """Sleep until woken, until the store signals work, or until the next job falls due."""
        try:
            due = await self._store.next_due_at()
        except StoreUnavailable:
            due = None
        except Exception:
            log.exception("asking the store for the next due job failed unexpectedly")
            due = None
        delay = _IDLE_CAP if due is None else min(max(0.0, due - self._clock()), _IDLE_CAP)
        if nothing_claimed:
            delay = max(delay, _NOTHING_DUE_FLOOR)
        if delay <= 0:
            return
        waiters = {
            asyncio.ensure_future(self._wakeup.wait()),
            asyncio.ensure_future(self._store_signal(delay)),
        }
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _store_signal(self, seconds: float) -> None:
        with contextlib.suppress(StoreUnavailable):  # the claim that follows reports it
            await self._store.wait_for_work(seconds)

    def _spawn(self, jobs: Sequence[ClaimedJob]) -> None:
        for job in jobs:
            lane = self._lanes.get(job.notification.channel)
            if lane is None:
                self._start(self._deliverer.run(job, None), None)
            elif len(lane.sends) < lane.settings.max_in_flight:
                lane.sends.add(job.id)
                task = self._start(self._deliverer.run(job, lane), lane)
                # Out at the latest now: a task cancelled before it ran never sent.
                task.add_done_callback(partial(_remove_from_sends, lane.sends, job.id))
            else:
                # The room was counted before the claim; only a reload can shrink it since.
                self._start(self._deliverer.put_back(job, lane), lane)

    def _start(self, work: Coroutine[Any, Any, None], lane: Lane | None) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(partial(self._finished, lane))
        return task

    def _finished(self, lane: Lane | None, task: asyncio.Task[None]) -> None:
        """A job's task ended: claim again if that may now take more.

        Its lane has room again; only a lane not drained may have jobs waiting for it, or
        any lane when the loop waited for a free worker. A drained lane's end (the common
        case once jobs are handed off) wakes nothing: no claim would find work.
        """
        self._tasks.discard(task)
        if lane is None or not lane.backlog.drained or self._awaiting_room:
            self._wakeup.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("delivery task failed unexpectedly", exc_info=exc)

    def _drop_gauges(self, lane: Lane) -> None:
        """Forget the scrape-time gauges of a channel that is gone (or changed type)."""
        labels = (lane.channel.name, lane.channel.type)
        for gauge in (self._metrics.circuit_state, self._metrics.rate_limit_utilisation):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)


def _log_failed_claim(state: RetryCallState) -> None:
    error = None if state.outcome is None else state.outcome.exception()
    pause = 0.0 if state.next_action is None else state.next_action.sleep
    if isinstance(error, StoreUnavailable):
        log.warning("store unavailable while claiming (%s); again in %.1fs", error, pause)
    else:
        log.error("claiming jobs failed unexpectedly; again in %.1fs", pause, exc_info=error)


def _remove_from_sends(sends: set[str], job_id: str, _task: asyncio.Task[None]) -> None:
    sends.discard(job_id)
