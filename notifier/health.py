"""The store check behind ``/-/ready`` and ``/metrics``, cached briefly.

The check is a write (``Store.ping``): a store that still reads but cannot write makes
the receiver answer 503, so it counts as down. Both endpoints are open and scraped
often, by several scrapers at once; each scrape must not write to the store, so a
result is reused for ``ttl`` seconds and concurrent callers share one check. This module
only runs the check; it does not decide what an endpoint answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from notifier.store.base import Store, StoreUnavailable

STORE_CHECK_TTL = 1.0  # seconds a check result is reused


class StoreCheck:
    """``await check()``: None when the store took a write lately, else why it did not."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = STORE_CHECK_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._lock = asyncio.Lock()
        self._checked_at: float | None = None
        self._problem: StoreUnavailable | None = None

    def failed(self, problem: StoreUnavailable) -> None:
        """The store failed a request just now: report that until the next check is due,
        so readiness never says ready right after a 503."""
        self._problem = problem
        self._checked_at = self._clock()

    async def check(self) -> StoreUnavailable | None:
        async with self._lock:  # callers arriving during a check take its result
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= self._ttl:
                try:
                    await self._store.ping()
                    self._problem = None
                except StoreUnavailable as exc:
                    self._problem = exc
                self._checked_at = self._clock()
            return self._problem
