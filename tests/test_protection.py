"""Tables for the pure protection parts: token bucket, circuit breaker, backoff with full jitter."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from notifier.backoff import backoff_delay
from notifier.protection import CircuitBreaker, RateLimiter, Reservation

# --- rate limiter -----------------------------------------------------------------------

# (rate, burst, reach, [(now, expected seconds to wait, whether the slot is reserved)])
RESERVE_TABLE = [
    pytest.param(1.0, 1, 1.0, [(0, 0, True), (0.5, 0.5, True), (2, 0, True)], id="one-a-second"),
    # Slots within reach are reserved one interval apart; beyond it, callers are told
    # when theirs comes in reach, spaced one interval apart.
    pytest.param(
        2.0,
        1,
        1.0,
        [(0, 0, True), (0, 0.5, True), (0, 1.0, True), (0, 0.5, False), (0, 1.0, False)],
        id="reserve-within-reach",
    ),
    # A caller that comes back late still gets the next slot: the rate does not slip.
    pytest.param(
        1.0, 1, 0.5, [(0, 0, True), (0, 0.5, False), (0.6, 0.4, True), (1, 0.5, False)], id="late"
    ),
    # With no reach, a plain token bucket: callers turned away at once are spread.
    pytest.param(1.0, 1, 0.0, [(0, 0, True), (0, 1, False), (0, 2, False)], id="spread"),
    pytest.param(
        2.0,
        3,
        0.0,
        [(0, 0, True), (0, 0, True), (0, 0, True), (0, 0.5, False), (0.5, 0, True)],
        id="burst",
    ),
    # No more than ``burst`` at once, however long it was idle.
    pytest.param(
        1.0,
        2,
        0.0,
        [(0, 0, True), (0, 0, True), (100, 0, True), (100, 0, True), (100, 1, False)],
        id="burst-cap",
    ),
    # Slots 1/3 s apart at 3/s add up to 0.999... in floats: still due on time.
    pytest.param(
        3.0, 1, 0.0, [(0, 0, True), (1 / 3, 0, True), (2 / 3, 0, True), (1.0, 0, True)], id="drift"
    ),
    # A clock that steps back does not move the schedule back.
    pytest.param(1.0, 1, 0.0, [(10, 0, True), (9, 2, False)], id="clock-backwards"),
]


@pytest.mark.parametrize(("rate", "burst", "reach", "steps"), RESERVE_TABLE)
def test_reserve(
    rate: float, burst: int, reach: float, steps: list[tuple[float, float, bool]]
) -> None:
    limiter = RateLimiter(rate, burst, reach)
    got = [limiter.reserve(now) for now, _, _ in steps]
    assert [turn.wait for turn in got] == pytest.approx([wait for _, wait, _ in steps])
    assert [turn.reserved for turn in got] == [reserved for _, _, reserved in steps]


# (rate, burst, grant times, now, expected utilisation)
UTILISATION_TABLE = [
    pytest.param(1.0, 1, [], 0.0, 0.0, id="unused"),
    pytest.param(1.0, 1, range(30), 29.5, 0.5, id="half-the-minute"),
    pytest.param(1.0, 1, range(60), 59.0, 1.0, id="full"),
    pytest.param(1.0, 1, range(60), 89.0, 0.5, id="window-slides"),
    pytest.param(1.0, 1, range(60), 200.0, 0.0, id="all-old"),
    pytest.param(10.0, 10, [0.0] * 10, 0.0, 10 / 600, id="burst-counts-grants"),
    pytest.param(0.01, 5, [0.0] * 5, 1.0, 1.0, id="capped-at-one"),
]


@pytest.mark.parametrize(("rate", "burst", "grants", "now", "expected"), UTILISATION_TABLE)
def test_utilisation(
    rate: float, burst: int, grants: list[float], now: float, expected: float
) -> None:
    limiter = RateLimiter(rate, burst)
    for at in grants:
        assert limiter.reserve(at) == Reservation(0.0, reserved=True)
    assert limiter.utilisation(now) == pytest.approx(expected)


def test_reserved_slots_count_as_used_and_turned_away_callers_do_not() -> None:
    limiter = RateLimiter(1.0, reach=1.0)
    assert limiter.reserve(0).reserved and limiter.reserve(0).reserved
    assert not limiter.reserve(0).reserved
    assert limiter.utilisation(0) == pytest.approx(2 / 60)


@pytest.mark.parametrize(
    ("rate", "burst", "reach"),
    [(0, 1, 1), (-1, 1, 1), (math.inf, 1, 1), (math.nan, 1, 1), (1, 0, 1), (1, 1, -1)],
)
def test_rate_limiter_rejects_bad_settings(rate: float, burst: int, reach: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst, reach)


# --- circuit breaker --------------------------------------------------------------------

# Steps: (operation, now, expected wait from ``allow``, state afterwards).
Step = tuple[str, float | None, float | None, str]
BREAKER_TABLE = [
    pytest.param(
        3,
        10,
        [
            ("fail", 0, None, "closed"),
            ("fail", 1, None, "closed"),
            ("allow", 1.5, 0, "closed"),
            ("fail", 2, None, "open"),
            ("allow", 5, 7, "open"),
            ("allow", 12, 0, "half_open"),  # the one trial
            ("allow", 12.5, 1, "half_open"),  # others: come back in `recheck`
            ("ok", None, None, "closed"),
            ("allow", 13, 0, "closed"),
        ],
        id="opens-at-threshold-trial-closes",
    ),
    pytest.param(
        1,
        10,
        [
            ("fail", 0, None, "open"),
            ("allow", 10, 0, "half_open"),
            ("fail", 10.5, None, "open"),  # a failed trial re-opens for a full reset_after
            ("allow", 11, 9.5, "open"),
            ("allow", 20.5, 0, "half_open"),
        ],
        id="failed-trial-reopens",
    ),
    pytest.param(
        3,
        10,
        [
            ("fail", 0, None, "closed"),
            ("fail", 1, None, "closed"),
            ("ok", None, None, "closed"),
            ("fail", 2, None, "closed"),
            ("fail", 3, None, "closed"),
            ("fail", 4, None, "open"),
        ],
        id="success-resets-the-count",
    ),
    pytest.param(
        1,
        10,
        [
            ("fail", 0, None, "open"),
            ("allow", 10, 0, "half_open"),
            ("allow", 15, 1, "half_open"),
            ("allow", 19.5, 0.5, "half_open"),
            ("allow", 20, 0, "half_open"),  # the first trial never reported: a new one
        ],
        id="lost-trial-expires",
    ),
    pytest.param(
        1,
        10,
        [
            ("fail", 0, None, "open"),
            ("fail", 5, None, "open"),  # a late failure does not push the reopening back
            ("allow", 10, 0, "half_open"),
        ],
        id="late-failure-while-open",
    ),
]


@pytest.mark.parametrize(("threshold", "reset_after", "steps"), BREAKER_TABLE)
def test_circuit_breaker(threshold: int, reset_after: float, steps: list[Step]) -> None:
    breaker = CircuitBreaker(threshold, reset_after, recheck=1.0)
    for index, (operation, now, wait, state) in enumerate(steps):
        if operation == "allow":
            assert now is not None
            assert breaker.allow(now) == pytest.approx(wait), f"step {index}"
        elif operation == "fail":
            assert now is not None
            breaker.record_failure(now)
        else:
            breaker.record_success()
        assert breaker.state == state, f"step {index}"


@pytest.mark.parametrize(
    ("threshold", "reset_after", "recheck"), [(0, 10, 1), (1, 0, 1), (1, 10, 0)]
)
def test_circuit_breaker_rejects_bad_settings(
    threshold: int, reset_after: float, recheck: float
) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, reset_after, recheck)


# --- backoff ----------------------------------------------------------------------------


class _Top(random.Random):
    """Always draws the top of the range: shows the exponential ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


class _Bottom(random.Random):
    """Always draws the bottom of the range: shows the jitter reaches zero."""

    def uniform(self, a: float, b: float) -> float:
        return a


# (attempt, initial, maximum, retry_after, rng, expected)
BACKOFF_TABLE = [
    pytest.param(1, 1.0, 300.0, None, _Top(), 1.0, id="first-retry-ceiling-is-initial"),
    pytest.param(2, 1.0, 300.0, None, _Top(), 2.0, id="doubles"),
    pytest.param(5, 1.0, 300.0, None, _Top(), 16.0, id="exponential"),
    pytest.param(5, 0.5, 300.0, None, _Top(), 8.0, id="scaled-by-initial"),
    pytest.param(12, 1.0, 300.0, None, _Top(), 300.0, id="capped-at-maximum"),
    pytest.param(10_000, 1.0, 300.0, None, _Top(), 300.0, id="huge-attempt-no-overflow"),
    pytest.param(5, 1.0, 300.0, None, _Bottom(), 0.0, id="full-jitter-reaches-zero"),
    pytest.param(1, 1.0, 300.0, 30.0, _Top(), 30.0, id="retry-after-longer"),
    pytest.param(3, 1.0, 300.0, 0.5, _Top(), 4.0, id="retry-after-shorter"),
    pytest.param(3, 1.0, 300.0, 2.0, _Bottom(), 2.0, id="never-before-retry-after"),
    pytest.param(1, 1.0, 300.0, 600.0, _Top(), 600.0, id="retry-after-beyond-maximum"),
]


@pytest.mark.parametrize(
    ("attempt", "initial", "maximum", "retry_after", "rng", "expected"), BACKOFF_TABLE
)
def test_backoff_delay(
    attempt: int,
    initial: float,
    maximum: float,
    retry_after: float | None,
    rng: random.Random,
    expected: float,
) -> None:
    assert backoff_delay(attempt, initial, maximum, retry_after, rng) == pytest.approx(expected)


def test_backoff_is_full_jitter() -> None:
    """Uniform over [0, ceiling]: not "equal jitter" (which never goes below half)."""
    rng = random.Random(7)
    delays = [backoff_delay(3, 1.0, 300.0, None, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert min(delays) < 0.1
    assert max(delays) > 3.9
    assert statistics.mean(delays) == pytest.approx(2.0, abs=0.15)


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    first = [backoff_delay(n, 1.0, 60.0, None, random.Random(1)) for n in range(1, 8)]
    again = [backoff_delay(n, 1.0, 60.0, None, random.Random(1)) for n in range(1, 8)]
    assert first == again


def test_backoff_counts_attempts_from_one() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, 1.0, 60.0, None, random.Random(1))


def test_an_abandoned_trial_lets_the_next_job_try() -> None:
    """A half-open trial held back by the rate limiter must not block the circuit."""
    breaker = CircuitBreaker(failure_threshold=1, reset_after=30.0)
    breaker.record_failure(0.0)
    assert breaker.allow(31.0) == 0.0  # the trial
    assert breaker.allow(31.5) > 0  # one trial at a time
    breaker.abandon_trial()
    assert breaker.allow(31.5) == 0.0
    assert breaker.state == "half_open"
