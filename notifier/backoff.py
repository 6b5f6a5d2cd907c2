"""How long to wait before the next delivery attempt: exponential backoff, full jitter, Retry-After.

The exponential ceiling comes from tenacity's ``wait_exponential`` (the same ceiling its
``wait_random_exponential`` draws under); the full jitter is drawn here from an injected
``random.Random`` because tenacity's random strategies use the module-global generator,
which a test cannot seed without touching global state. Pure: no sleeping, no clock;
the dispatcher adds the result to its own ``now``.
"""

from __future__ import annotations

import random

from tenacity import RetryCallState, Retrying, wait_exponential


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
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    ceiling = wait_exponential(multiplier=initial, max=maximum)(state)
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
