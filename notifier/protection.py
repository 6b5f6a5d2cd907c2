"""Per-channel protection: a rate limiter (GCRA) and a circuit breaker (DESIGN §4).

Both are pure state machines: every method takes the current time (unix seconds) as an
argument, so they are driven by the dispatcher's injected clock and tested with tables.
They decide *whether and when* a channel may be tried; they never sleep, send, touch
the store or export metrics (the dispatcher reads ``state`` and ``utilisation``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]

# Token arithmetic in floats drifts (3 tokens/s refilled over 1/3 s is 0.9999...).
_EPSILON = 1e-9
_WINDOW = 60  # seconds of history behind ``utilisation``
# How far ahead a rate limiter hands out send slots, and so the longest a send waits in
# place for its slot: more than a late come-back costs, little for a worker to sit out.
RESERVE_AHEAD = 1.0


@dataclass(frozen=True, slots=True)
class Reservation:
    """A rate limiter's answer to one caller.

    ``reserved``: a send slot is held for this caller, ``wait`` seconds from now (0: at
    once); it should wait for it and send, without asking again. Otherwise nothing is
    held and the caller should ask again after ``wait`` seconds.
    """

    wait: float
    reserved: bool


class RateLimiter:
    """GCRA, the token bucket as a schedule: ``rate_per_second`` sends a second, at most
    ``burst`` of them at once after an idle spell.

    Each send reserves the next free slot, one interval after the last one handed out, so
    a caller that waits for its slot in place keeps the rate exact however late it asked.
    (A caller sent away until a token is due, as a plain bucket does, comes back a little
    late, finds the next token not quite there, and the backlog drains below the rate.)
    Slots are handed out only up to ``reach`` seconds ahead, so a caller never waits long
    in place. Callers beyond it are told when their slot will be in reach, spaced one
    interval apart, so a backlog comes back one by one rather than all at once.
    """

    def __init__(
        self, rate_per_second: float, burst: int = 1, reach: float = RESERVE_AHEAD
    ) -> None:
        if not rate_per_second > 0 or not math.isfinite(rate_per_second):
            raise ValueError(f"rate_per_second must be a positive number, got {rate_per_second!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        if not reach >= 0:
            raise ValueError(f"reach must not be negative, got {reach!r}")
        self.rate = rate_per_second
        self.burst = burst
        self.reach = reach
        self._interval = 1.0 / rate_per_second
        self._tolerance = (burst - 1) * self._interval  # how far a burst runs ahead
        self._next_slot = -math.inf  # theoretical arrival time: the next slot at the rate
        self._next_deferred = -math.inf  # when the next caller out of reach may come back
        self._grants = GrantHistory(rate_per_second)

    async def acquire(self, now: float) -> Reservation:
        """``reserve`` as a ``notifier.rate_limits.TokenBucket`` (the in-process one)."""
        return self.reserve(now)

    def reserve(self, now: float) -> Reservation:
        """A slot for this caller when one is free within ``reach``; else when to ask again."""
        next_slot = max(self._next_slot, now)
        slot = max(now, next_slot - self._tolerance)
        if slot - now <= self.reach + _EPSILON:
            self._next_slot = next_slot + self._interval
            self._grants.count(now)
            return Reservation(max(0.0, slot - now), reserved=True)
        come_back = max(slot - self.reach, self._next_deferred)
        self._next_deferred = come_back + self._interval
        return Reservation(come_back - now, reserved=False)

    def utilisation(self, now: float) -> float:
        """Share of the limit used over the last 60 s (0 to 1)."""
        return self._grants.utilisation(now)


class GrantHistory:
    """Tokens granted per second over the last 60 s, as a share of what ``rate`` allows."""

    def __init__(self, rate_per_second: float) -> None:
        self.rate = rate_per_second
        self._granted_at_second = [-1] * _WINDOW  # ring of per-second grant counts
        self._granted = [0] * _WINDOW

    def count(self, now: float) -> None:
        second = math.floor(now)
        slot = second % _WINDOW
        if self._granted_at_second[slot] != second:
            self._granted_at_second[slot] = second
            self._granted[slot] = 0
        self._granted[slot] += 1

    def utilisation(self, now: float) -> float:
        """Share of the limit used over the last 60 s (0 to 1)."""
        second = math.floor(now)
        used = sum(
            count
            for stamp, count in zip(self._granted_at_second, self._granted, strict=True)
            if second - _WINDOW < stamp <= second
        )
        return min(1.0, used / (self.rate * _WINDOW))


class CircuitBreaker:
    """Closed, then open after ``failure_threshold`` consecutive failures, then half-open.

    Open rejects every caller until ``reset_after`` has passed; then half-open lets
    exactly one trial through: its success closes the circuit, its failure opens it
    again for another ``reset_after``. A trial that never reports back (its
    worker was cancelled) is given up after ``reset_after`` and another one is allowed.
    While a trial is out, other callers are told to come back in ``recheck`` seconds, so
    they follow soon after a successful trial. Only retryable failures should be
    recorded: a permanent error says the peer is up and refused this one message (the
    dispatcher records it as a success).
    """

    def __init__(self, failure_threshold: int, reset_after: float, recheck: float = 1.0) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold!r}")
        if reset_after <= 0 or recheck <= 0:
            raise ValueError("reset_after and recheck must be positive")
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.recheck = recheck
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_started: float | None = None

    @property
    def state(self) -> CircuitState:
        return self._state

    def allow(self, now: float) -> float:
        """0 when the caller may try now; else seconds until it may try again."""
        if self._state == "closed":
            return 0.0
        if self._state == "open":
            reopen = self._opened_at + self.reset_after
            if now < reopen:
                return reopen - now
            self._state = "half_open"
        trial_expires = (
            None if self._trial_started is None else self._trial_started + self.reset_after
        )
        if trial_expires is not None and now < trial_expires:
            return min(self.recheck, trial_expires - now)
        self._trial_started = now
        return 0.0

    def abandon_trial(self) -> None:
        """The trial ``allow`` handed out was not attempted (rate limit): let the next job try."""
        if self._state == "half_open":
            self._trial_started = None

    def record_success(self) -> None:
        """The peer answered (took a message, or refused it for good): close the circuit
        and forget past failures."""
        self._state = "closed"
        self._failures = 0
        self._trial_started = None

    def record_failure(self, now: float) -> None:
        """Count a retryable failure; open at the threshold, or at once after a failed trial."""
        if self._state == "open":
            return  # a send that started before the circuit opened; it is open already
        self._failures += 1
        if self._state == "half_open" or self._failures >= self.failure_threshold:
            self._state = "open"
            self._opened_at = now
            self._trial_started = None
