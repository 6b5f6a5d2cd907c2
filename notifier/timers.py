"""The timer loop: claims due ``Timer``s from the store and hands each to the owner of its kind.

One loop per process serves every feature that schedules durable wake-ups (incident
steps today; deferred sends and heartbeats can register their own kinds). A timer's
``kind`` is ``owner.what`` (``incident.step``); the handler registered for ``owner``
gets it. A timer is finished only after its handler returned: if the process dies
first, the lease runs out and a timer fires again (at least once), so handlers decide
idempotently (an incident's epoch makes a repeated step a no-op).

This module knows nothing about incidents: it claims, dispatches, finishes, sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping

from notifier.store.base import StoreUnavailable, Timer, Timers

log = logging.getLogger(__name__)

TimerHandler = Callable[[Timer], Awaitable[None]]

_IDLE_CAP = 1.0  # longest sleep when no timer is known: another replica may schedule one
_FAILED_CLAIM_PAUSE = 1.0
_CLAIM_LIMIT = 32
_STOP_GRACE = 5.0


class TimerLoop:
    def __init__(
        self,
        store: Timers,
        handlers: Mapping[str, TimerHandler],
        *,
        lease: float,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._handlers = dict(handlers)
        self._lease = lease
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """A timer was scheduled in this process: look again now."""
        self._wakeup.set()

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="notifier-timers")

    async def stop(self) -> None:
        """Stop after the timer being handled (a claimed one left unfinished fires again)."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        done, _ = await asyncio.wait({self._task}, timeout=_STOP_GRACE)
        if not done:
            self._task.cancel()
            await asyncio.wait({self._task})
        self._task = None

    async def run_due(self) -> int:
        """Burst mode (tests): handle every timer due now; how many were handled."""
        handled = 0
        while True:
            timers = await self._store.claim_timers(_CLAIM_LIMIT, self._lease, self._clock())
            if not timers:
                return handled
            for timer in timers:
                handled += await self._handle(timer)

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            try:
                timers = await self._store.claim_timers(_CLAIM_LIMIT, self._lease, self._clock())
            except Exception as exc:
                log.warning("claiming timers failed (%r); again in %gs", exc, _FAILED_CLAIM_PAUSE)
                await self._sleep(_FAILED_CLAIM_PAUSE)
                continue
            for timer in timers:
                if self._stopping:
                    return  # the rest stay leased and fire again when their lease runs out
                await self._handle(timer)
            if len(timers) < _CLAIM_LIMIT:
                await self._sleep(await self._delay())

    async def _handle(self, timer: Timer) -> int:
        owner = timer.kind.partition(".")[0]
        handler = self._handlers.get(owner)
        if handler is None:
            # A kind this version does not know (a newer replica's): leave it to the lease.
            log.warning("no handler for timer kind %s; leaving it", timer.kind)
            return 0
        try:
            await handler(timer)
            await self._store.finish_timer(timer.id)
        except StoreUnavailable as exc:
            log.warning(
                "timer %s not handled, store unavailable (%s); it fires again", timer.kind, exc
            )
            return 0
        except Exception:
            log.exception("timer %s failed; it fires again when its lease runs out", timer.kind)
            return 0
        return 1

    async def _delay(self) -> float:
        try:
            due = await self._store.next_timer_at()
        except Exception:
            due = None
        if due is None or not math.isfinite(due):
            return _IDLE_CAP
        return min(max(0.0, due - self._clock()), _IDLE_CAP)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
