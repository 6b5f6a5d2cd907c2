"""How long to wait before the next delivery attempt: exponential backoff, full jitter, Retry-After.

A plain formula, not a tenacity loop: a delivery retry must survive a restart (and may
be taken by another replica), so it is a job rescheduled in the store with a
``not_before``, not a loop held in one process's memory. tenacity runs only the
in-process retries (a store write, a claim: ``notifier.retrying``). The jitter is drawn
from an injected ``random.Random`` so a test can seed it without touching global state.
Pure: no sleeping, no clock; the dispatcher adds the result to its own ``now``.
"""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    initial: float,
    maximum: float,
    retry_after: float | None,
    rng: random.Random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first).

    "Full jitter": uniform in ``[0, min(maximum, initial * 2**(attempt-1))]``, so replicas
    and channels retrying at once spread out. Never less than the peer's ``retry_after``,
    even when that exceeds ``maximum``: the peer said when it will listen again.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt!r}")
    try:
        ceiling = min(maximum, initial * 2.0 ** (attempt - 1))
    except OverflowError:  # an attempt count in the thousands: far past any maximum
        ceiling = maximum
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
