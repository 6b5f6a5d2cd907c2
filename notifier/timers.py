"""One loop for every durable timer (DESIGN §8–§11): claims due ones, hands each to its owner.

The store's ``claim_timers`` hands out timers of every kind, so one process must run one
loop, and each feature registers a handler for its kinds: ``"heartbeat"`` here, the
incident engine's ``"incident"`` (which takes ``incident.step``, ``incident.ack_timeout``,
...). A handler is looked up by the kind, then by its prefixes up to each dot.

A claimed timer is finished once its handler returns. A handler that raises, or a
process that dies mid-way, leaves it leased: it is due again when the lease runs out,
so a timer fires at least once and a handler must be safe to run twice (the heartbeat
and incident writes are compare-and-set for that reason). A timer whose kind has no
handler here is left leased too, for a process (or version) that has one.

This module knows no timer's meaning; it never writes a timer itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from notifier.store.base import StoreUnavailable, Timer, Timers

log = logging.getLogger(__name__)

TimerHandler = Callable[[Timer, float], Awaitable[None]]
"""Handles one due timer at the given time (the loop's clock)."""

_LEASE = 30.0  # seconds a claimed timer is ours; handlers are a few store writes
_BATCH = 100  # timers per claim
# The longest sleep: another replica may schedule a timer sooner than the one we know of.
_IDLE_CAP = 1.0
_RETRY_PAUSE = 1.0  # after a failed claim (the store is down)


class TimerLoop:
    """Claims due timers and runs the handler registered for each one's kind."""

    def __init__(
        self,
        store: Timers,
        handlers: Mapping[str, TimerHandler],
        *,
        clock: Callable[[], float] = time.time,
        lease: float = _LEASE,
    ) -> None:
        self._store = store
        self._handlers = dict(handlers)
        self._clock = clock
        self._lease = lease
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def handler_for(self, kind: str) -> TimerHandler | None:
        """The handler of ``kind`` (``incident.step``), else of a prefix (``incident``)."""
        while True:
            handler = self._handlers.get(kind)
            if handler is not None or "." not in kind:
                return handler
            kind = kind.rpartition(".")[0]

    @property
    def running(self) -> bool:
        return self._task is not None

    def wake(self) -> None:
        """A timer was scheduled sooner than the loop may know: look again now."""
        self._wakeup.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notifier-timers")

    async def stop(self) -> None:
        """Stop at once: a handler cut short leaves its timer leased, to run again later."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_due(self) -> int:
        """Burst mode (tests): handle every timer due now; how many were handled."""
        handled = 0
        while True:
            timers = await self._store.claim_timers(_BATCH, self._lease, self._clock())
            for timer in timers:
                handled += await self._handle(timer)
            if len(timers) < _BATCH:
                return handled

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                await self.run_due()
                due = await self._store.next_timer_at()
            except StoreUnavailable as exc:
                log.warning("store unavailable while claiming timers (%s)", exc)
                due = self._clock() + _RETRY_PAUSE
            except Exception:
                # The loop must outlive any failure: a dead one would miss every heartbeat.
                log.exception("claiming timers failed unexpectedly")
                due = self._clock() + _RETRY_PAUSE
            delay = _IDLE_CAP if due is None else min(max(0.0, due - self._clock()), _IDLE_CAP)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()

    async def _handle(self, timer: Timer) -> int:
        handler = self.handler_for(timer.kind)
        if handler is None:
            log.warning("no handler for timer kind %r here; it stays for one that has", timer.kind)
            return 0
        try:
            await handler(timer, self._clock())
        except StoreUnavailable as exc:
            log.warning("store unavailable handling timer %s (%s); it runs again", timer.key, exc)
            return 0
        except Exception:
            log.exception("timer %s failed; it runs again when its lease runs out", timer.key)
            return 0
        await self._store.finish_timer(timer.id)
        return 1
