"""A channel's token bucket in Redis, so that every replica draws from the same one.

One Lua script call per ``acquire`` (Redis runs it alone, so two replicas never both
reserve the same slot; it shares the round trip of the store's other calls of the same
event-loop turn): the same GCRA schedule as ``notifier.protection.RateLimiter`` (``rate``
slots a second, at most ``burst`` at once, slots reserved up to ``reach`` ahead, callers
beyond it spaced one interval apart), its state in one hash per channel. The script reads
Redis's own clock (``TIME``), so the replicas' clocks need not agree; the caller's ``now``
only feeds the local utilisation gauge. The key expires a minute after its last reserved
slot or deferral.

When Redis cannot serve the call the bucket falls back to an in-process ``RateLimiter`` of
the same rate (each replica then holds the rate on its own) rather than fail the send's
task: a store outage already stops claims, and the sends in flight should finish.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from notifier.protection import RESERVE_AHEAD, GrantHistory, RateLimiter, Reservation
from notifier.store.redis_batch import ScriptBatcher

log = logging.getLogger(__name__)

# KEYS[1] the bucket's hash; ARGV: rate (sends/s), burst, reach (s). Returns the wait in
# seconds as a string (a Lua number returned to Redis would be truncated to an integer) and
# 1 when the slot is reserved for the caller, 0 when it should ask again after the wait.
ACQUIRE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local reach = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'next_slot', 'deferred')
local interval = 1 / rate
local next_slot = math.max(tonumber(state[1]) or now, now)
local deferred = tonumber(state[2]) or 0
local slot = math.max(now, next_slot - (burst - 1) * interval)
local wait, reserved
if slot - now <= reach + 1e-9 then
    next_slot = next_slot + interval
    wait, reserved = slot - now, 1
else
    local come_back = math.max(slot - reach, deferred)
    deferred = come_back + interval
    wait, reserved = come_back - now, 0
end
redis.call('HSET', KEYS[1], 'next_slot', string.format('%.17g', next_slot),
    'deferred', string.format('%.17g', deferred))
local keep = math.max(next_slot - now, deferred - now, 0) + 60
redis.call('PEXPIRE', KEYS[1], math.ceil(keep * 1000))
return {string.format('%.17g', wait), reserved}
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
        reach: float = RESERVE_AHEAD,
    ) -> None:
        """``unavailable``: the errors that mean Redis cannot serve us now (the store's)."""
        # The same checks as the in-process bucket, which is also the fallback.
        self._fallback = RateLimiter(rate, burst, reach)
        self._batch = batch
        self._script = client.register_script(ACQUIRE)
        self._unavailable = unavailable
        self._key = key
        self._args = [repr(float(rate)), str(burst), repr(float(reach))]
        self._grants = GrantHistory(rate)
        self._falling_back = False

    async def acquire(self, now: float) -> Reservation:
        try:
            wait, reserved = await self._batch.call(self._script, [self._key], self._args)
            turn = Reservation(float(wait), reserved=bool(reserved))
        except self._unavailable as exc:
            if not self._falling_back:
                log.warning(
                    "rate limit %s: Redis unavailable (%s); holding the rate in this process",
                    self._key,
                    type(exc).__name__,
                )
                self._falling_back = True
            turn = self._fallback.reserve(now)
        else:
            if self._falling_back:
                log.info("rate limit %s: back on the bucket in Redis", self._key)
                self._falling_back = False
        if turn.reserved:
            self._grants.count(now)
        return turn

    def utilisation(self, now: float) -> float:
        """This replica's share of the limit over the last 60 s (the others' not counted)."""
        return self._grants.utilisation(now)
