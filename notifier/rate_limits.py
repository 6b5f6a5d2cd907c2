"""Where a channel's token bucket lives: in this process, or shared by every replica.

A lane asks its ``TokenBucket`` before each send. With the memory and SQLite stores (one
process) the bucket is ``notifier.protection.RateLimiter``; a store that replicas share
offers buckets of its own (``SharedBuckets``: the Redis store keeps each channel's bucket
in Redis), so that a channel's ``rate_limit`` holds for the whole deployment, not per
replica. ``bucket_for`` picks one; the dispatcher does not care which it gets.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from notifier.protection import RateLimiter, Reservation


class TokenBucket(Protocol):
    """A channel's rate limit: ``acquire`` before each send, ``utilisation`` for the gauge."""

    async def acquire(self, now: float) -> Reservation:
        """This send's slot, held for it, when one is free soon; else when to ask again."""
        ...

    def utilisation(self, now: float) -> float:
        """Share of the limit used over the last 60 s (0 to 1), as this process saw it."""
        ...


@runtime_checkable
class SharedBuckets(Protocol):
    """A store whose replicas share each channel's bucket."""

    def token_bucket(self, channel: str, rate: float, burst: int) -> TokenBucket: ...


def bucket_for(store: object, channel: str, rate: float, burst: int = 1) -> TokenBucket:
    """The store's shared bucket for ``channel`` when it has them, else an in-process one."""
    if isinstance(store, SharedBuckets):
        return store.token_bucket(channel, rate, burst)
    return RateLimiter(rate, burst)
