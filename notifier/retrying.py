"""In-process retries (a store write, a claim) run by tenacity, with a bare first try.

Only retries that may die with the process belong here: a delivery retry must survive a
restart, so it is a job rescheduled in the store (``notifier.backoff``), never a loop.
This module holds no policy: each caller builds its ``AsyncRetrying`` (what to retry,
how long to wait, when to stop, what to log).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


async def first_then_retrying(
    call: Callable[[], Awaitable[T]], retrying: AsyncRetrying | Callable[[], AsyncRetrying]
) -> T:
    """``await call()``; if it raises, ``retrying`` takes over with that failure as its first try.

    ``retrying`` may be a function that builds it, called only after a failure: building
    an ``AsyncRetrying`` costs microseconds that a call on every job's path need not pay.

    The first try runs without tenacity because its loop costs tens of microseconds a
    call and these calls are on every delivered job's path, while a retry is rare. Its
    failure is raised again inside tenacity's first attempt, so tenacity alone decides
    whether to retry it, how long to wait and when to stop (``retrying`` must have
    ``reraise=True``: the last failure is raised as itself).
    """
    try:
        return await call()
    except Exception as exc:
        failure: Exception | None = exc
    if not isinstance(retrying, AsyncRetrying):
        retrying = retrying()
    async for attempt in retrying:
        with attempt:
            if failure is not None:
                first, failure = failure, None
                raise first
            return await call()
    raise AssertionError("unreachable: with reraise=True the loop ends by returning or raising")
