"""A channel's token bucket in Redis, so that every replica draws from the same one.

One Lua script call per ``acquire`` (Redis runs it alone, so two replicas never both
take the last token; it shares the round trip of the store's other calls of the same
event-loop turn): the same bucket as ``notifier.protection.RateLimiter`` (``rate``
tokens a second, at most ``burst`` saved up, turned-away callers spaced one token apart),
its state in one hash per channel. The script reads Redis's own clock (``TIME``), so the
replicas' clocks need not agree; the caller's ``now`` only feeds the local utilisation
gauge. The key expires once the bucket would be full again and no deferral is pending.

When Redis cannot serve the call the bucket falls back to an in-process ``RateLimiter`` of
the same rate (each replica then holds the rate on its own) rather than fail the send's
task: a store outage already stops claims, and the sends in flight should finish.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from notifier.protection import GrantHistory, RateLimiter
from notifier.store.redis_batch import ScriptBatcher

log = logging.getLogger(__name__)

# KEYS[1] the bucket's hash; ARGV: rate (tokens/s), burst. Returns the wait in seconds as
# a string (a Lua number returned to Redis would be truncated to an integer).
ACQUIRE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated', 'deferred')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2])
local deferred = tonumber(state[3]) or 0
if updated and now > updated then
    tokens = math.min(burst, tokens + (now - updated) * rate)
end
if not updated or now > updated then
    updated = now
end
local interval = 1 / rate
local wait = 0
if tokens >= 1 - 1e-9 then
    tokens = math.max(0, tokens - 1)
else
    local come_back = math.max(now + (1 - tokens) * interval, deferred)
    deferred = come_back + interval
    wait = come_back - now
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
    'updated', string.format('%.17g', updated), 'deferred', string.format('%.17g', deferred))
local keep = math.max(deferred - now, 0) + burst * interval + 60
redis.call('PEXPIRE', KEYS[1], math.ceil(keep * 1000))
return string.format('%.17g', wait)
"""


class RedisTokenBucket:
    """``notifier.rate_limits.TokenBucket`` for one channel, its state in Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        batch: ScriptBatcher,
        key: str,
        rate: float,
        burst: int,
        unavailable: tuple[type[BaseException], ...],
    ) -> None:
        """``unavailable``: the errors that mean Redis cannot serve us now (the store's)."""
        # The same checks as the in-process bucket, which is also the fallback.
        self._fallback = RateLimiter(rate, burst)
        self._batch = batch
        self._script = client.register_script(ACQUIRE)
        self._unavailable = unavailable
        self._key = key
        self._args = [repr(float(rate)), str(burst)]
        self._grants = GrantHistory(rate)
        self._falling_back = False

    async def acquire(self, now: float) -> float:
        try:
            wait = float(await self._batch.call(self._script, [self._key], self._args))
        except self._unavailable as exc:
            if not self._falling_back:
                log.warning(
                    "rate limit %s: Redis unavailable (%s); holding the rate in this process",
                    self._key,
                    type(exc).__name__,
                )
                self._falling_back = True
            wait = self._fallback.reserve(now)
        else:
            if self._falling_back:
                log.info("rate limit %s: back on the bucket in Redis", self._key)
                self._falling_back = False
        if not wait:
            self._grants.count(now)
        return wait

    def utilisation(self, now: float) -> float:
        """This replica's share of the limit over the last 60 s (the others' not counted)."""
        return self._grants.utilisation(now)
