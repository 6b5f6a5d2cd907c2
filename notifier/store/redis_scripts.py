"""The Lua scripts that make each ``RedisStore`` write atomic (Redis runs a script alone).

Each ``Lua`` names the fixed keys its script expects, in ``KEYS`` order (``RedisStore``
prefixes them and registers the scripts). Every key a script touches arrives in
``KEYS``, so a prefix with a hash tag keeps them in one Cluster slot. Times and
payloads arrive in ``ARGV`` as strings and are stored as given: Lua's own number
formatting keeps only 14 digits, so no script turns a float back into a string.

A job is in exactly one of ``due`` (zset, score = when it may be claimed), ``leased``
(zset, score = lease end) or ``dead`` (zset, score = when it died); its fields live in
the hashes ``payload``, ``channel``, ``attempts``, ``enqueued``, ``first``, ``last`` (and
``reason``/``error`` once dead). ``channel`` lets a claim count a channel's jobs without
decoding their JSON. A write on a job that is not where the script expects
(already completed, or dead-lettered by a worker that took over an expired lease)
changes nothing but the delivery log.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lua:
    keys: tuple[str, ...]  # names of the fixed keys, in KEYS order, before the prefix
    source: str


# Appends one record to the delivery log (a zset by time, members prefixed with a
# counter so equal times keep their order) and keeps the newest ``size`` records.
_LOG = """
local function log(deliveries, counter, at, record, size)
    local n = redis.call('INCR', counter)
    redis.call('ZADD', deliveries, at, string.format('%015d', n) .. record)
    redis.call('ZREMRANGEBYRANK', deliveries, 0, -(tonumber(size) + 1))
end
"""

# ``notifier.dedup.needs_update``, rule by rule: keep the two alike (``tests/dedup_rules.py``
# runs one table of cases against both). An entry is JSON: firing and resolved
# fingerprints (arrays), ``at``, ``expires_at``; its Redis TTL only collects it.
_NEEDS_UPDATE = """
local function within(items, list)
    if #items == 0 then
        return true
    end
    local set = {}
    for _, item in ipairs(list) do
        set[item] = true
    end
    for _, item in ipairs(items) do
        if not set[item] then
            return false
        end
    end
    return true
end

local function needs_update(old, new, send_resolved, repeat_interval, now)
    if not old then
        return #new.firing > 0
    end
    if not within(new.firing, old.firing) then
        return true
    end
    if #new.firing == 0 then
        return #old.firing > 0
    end
    if send_resolved and not within(new.resolved, old.resolved) then
        return true
    end
    return old.at < now - repeat_interval
end
"""

# KEYS: these, then the log entry key of each job.
# ARGV: now, wake channel, then per job: id ('' when there is nothing to send), channel,
# payload, the entry it would write (JSON), send_resolved ('1' or '0'), repeat_interval,
# the entry's ttl_ms.
# Returns the ids enqueued.
ENQUEUE = Lua(
    ("due", "payload", "attempts", "enqueued", "channel"),
    _NEEDS_UPDATE
    + """
local now = tonumber(ARGV[1])
local enqueued = {}
for i = 6, #KEYS do
    local arg = 3 + (i - 6) * 7
    local id, entry = ARGV[arg], ARGV[arg + 3]
    local old = redis.call('GET', KEYS[i])
    old = old and cjson.decode(old)
    if old and old.expires_at <= now then
        old = nil
    end
    local send_resolved, repeat_interval = ARGV[arg + 4] == '1', tonumber(ARGV[arg + 5])
    if needs_update(old, cjson.decode(entry), send_resolved, repeat_interval, now) then
        redis.call('SET', KEYS[i], entry, 'PX', ARGV[arg + 6])
        if id ~= '' and redis.call('HSETNX', KEYS[2], id, ARGV[arg + 2]) == 1 then
            redis.call('HSET', KEYS[3], id, 0)
            redis.call('HSET', KEYS[4], id, ARGV[1])
            redis.call('HSET', KEYS[5], id, ARGV[arg + 1])
            redis.call('ZADD', KEYS[1], ARGV[1], id)
            enqueued[#enqueued + 1] = id
        end
    end
end
if #enqueued > 0 then
    redis.call('PUBLISH', ARGV[2], '1')
end
return enqueued
""",
)

# ARGV: now, lease_until, limit, then (when some channels have a share) how many due jobs
# to look at and a channel and its share for each.
# Expired leases go back to ``due`` (scored by their lease end), then the oldest due
# jobs (among the first ``ARGV[4]``, passing over a channel's once its share is taken)
# move to ``leased``. Returns id, payload, attempts, enqueued_at per job.
CLAIM = Lua(
    ("due", "leased", "payload", "attempts", "enqueued", "channel"),
    """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'WITHSCORES')
for i = 1, #expired, 2 do
    redis.call('ZADD', KEYS[1], expired[i + 1], expired[i])
end
if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
end
local limit = tonumber(ARGV[3])
local ids
if #ARGV == 3 then
    ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, limit)
    if #ids > 0 then
        redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ids - 1)
    end
else
    local room = {}
    for i = 5, #ARGV, 2 do
        room[ARGV[i]] = tonumber(ARGV[i + 1])
    end
    ids = {}
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
    for _, id in ipairs(due) do
        -- A job stored before the channel field existed has none: it has no share to fill.
        local channel = redis.call('HGET', KEYS[6], id)
        local left = channel and room[channel]
        if not left or left > 0 then
            if left then
                room[channel] = left - 1
            end
            redis.call('ZREM', KEYS[1], id)
            ids[#ids + 1] = id
            if #ids == limit then
                break
            end
        end
    end
end
local out = {}
for _, id in ipairs(ids) do
    local payload = redis.call('HGET', KEYS[3], id)
    if payload then
        redis.call('ZADD', KEYS[2], ARGV[2], id)
        out[#out + 1] = id
        out[#out + 1] = payload
        out[#out + 1] = redis.call('HGET', KEYS[4], id)
        out[#out + 1] = redis.call('HGET', KEYS[5], id)
    end
end
return out
""",
)

# ARGV: id, at, record, log size.
COMPLETE = Lua(
    (
        "due",
        "leased",
        "payload",
        "attempts",
        "enqueued",
        "first",
        "last",
        "channel",
        "deliveries",
        "delivery_seq",
    ),
    _LOG
    + """
local id = ARGV[1]
if redis.call('ZREM', KEYS[1], id) + redis.call('ZREM', KEYS[2], id) > 0 then
    for i = 3, 8 do
        redis.call('HDEL', KEYS[i], id)
    end
end
log(KEYS[9], KEYS[10], ARGV[2], ARGV[3], ARGV[4])
""",
)

# ARGV: id, at, record, log size, not_before.
RESCHEDULE = Lua(
    ("due", "leased", "attempts", "first", "last", "deliveries", "delivery_seq"),
    _LOG
    + """
local id = ARGV[1]
if redis.call('ZREM', KEYS[1], id) + redis.call('ZREM', KEYS[2], id) > 0 then
    redis.call('ZADD', KEYS[1], ARGV[5], id)
    redis.call('HINCRBY', KEYS[3], id, 1)
    redis.call('HSETNX', KEYS[4], id, ARGV[2])
    redis.call('HSET', KEYS[5], id, ARGV[2])
end
log(KEYS[6], KEYS[7], ARGV[2], ARGV[3], ARGV[4])
""",
)

# ARGV: id, at, record, log size, reason, error.
DEAD_LETTER = Lua(
    (
        "due",
        "leased",
        "attempts",
        "first",
        "last",
        "deliveries",
        "delivery_seq",
        "dead",
        "reason",
        "error",
    ),
    _LOG
    + """
local id = ARGV[1]
if redis.call('ZREM', KEYS[1], id) + redis.call('ZREM', KEYS[2], id) > 0 then
    redis.call('HINCRBY', KEYS[3], id, 1)
    redis.call('HSETNX', KEYS[4], id, ARGV[2])
    redis.call('HSET', KEYS[5], id, ARGV[2])
    redis.call('ZADD', KEYS[8], ARGV[2], id)
    redis.call('HSET', KEYS[9], id, ARGV[5])
    redis.call('HSET', KEYS[10], id, ARGV[6])
end
log(KEYS[6], KEYS[7], ARGV[2], ARGV[3], ARGV[4])
""",
)

# ARGV: id, not_before.
RELEASE = Lua(
    ("due", "leased"),
    """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 or redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
""",
)

# ARGV: now, wake channel, limit, [id]. Replays ``id``, or else the ``limit`` oldest
# dead letters; returns how many were replayed.
REPLAY = Lua(
    ("dead", "reason", "error", "first", "last", "attempts", "enqueued", "due"),
    """
local ids
if ARGV[4] then
    ids = {ARGV[4]}
else
    ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
end
local replayed = 0
for _, id in ipairs(ids) do
    if redis.call('ZREM', KEYS[1], id) == 1 then
        for i = 2, 5 do
            redis.call('HDEL', KEYS[i], id)
        end
        redis.call('HSET', KEYS[6], id, 0)
        redis.call('HSET', KEYS[7], id, ARGV[1])
        redis.call('ZADD', KEYS[8], ARGV[1], id)
        replayed = replayed + 1
    end
end
if replayed > 0 then
    redis.call('PUBLISH', ARGV[2], '1')
end
return replayed
""",
)

# ARGV: limit.
# Deletes the ``limit`` oldest dead letters; returns how many.
PURGE = Lua(
    ("dead", "reason", "error", "first", "last", "attempts", "enqueued", "payload", "channel"),
    """
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[1], id)
    for i = 2, 9 do
        redis.call('HDEL', KEYS[i], id)
    end
end
return #ids
""",
)

# ARGV: limit.
# Newest first: id, reason, error, attempts, first, last, payload per dead letter.
DEAD_LETTERS = Lua(
    ("dead", "reason", "error", "attempts", "first", "last", "payload"),
    """
local ids = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local out = {}
for _, id in ipairs(ids) do
    out[#out + 1] = id
    for i = 2, 7 do
        out[#out + 1] = redis.call('HGET', KEYS[i], id) or ''
    end
end
return out
""",
)

# A channel's waiting jobs: due, or leased with the lease run out (by ``now``).
_WAITING = """
local function waiting(due, leased, channels, channel, now)
    local ids = {}
    for _, id in ipairs(redis.call('ZRANGE', due, 0, -1)) do
        if redis.call('HGET', channels, id) == channel then
            ids[#ids + 1] = id
        end
    end
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', leased, '-inf', now)) do
        if redis.call('HGET', channels, id) == channel then
            ids[#ids + 1] = id
        end
    end
    return ids
end
"""

# ARGV: channel, now. Returns how many of the channel's jobs wait.
WAITING = Lua(
    ("due", "leased", "channel"),
    _WAITING
    + """
return #waiting(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
""",
)

# ARGV: channel, now. Returns id, payload of each waiting job of the channel.
WAITING_JOBS = Lua(
    ("due", "leased", "channel", "payload"),
    _WAITING
    + """
local out = {}
for _, id in ipairs(waiting(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])) do
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', KEYS[4], id) or ''
end
return out
""",
)

# ARGV: now, wake channel, log size, digest id, digest payload, not_before, channel,
# the number of folded ids, the folded ids, then per record: at, record JSON.
# Every folded id must still wait (due, or an expired lease) else nothing changes and -1
# is returned (the caller reads again); otherwise returns how many were folded.
FOLD = Lua(
    (
        "due",
        "leased",
        "payload",
        "attempts",
        "enqueued",
        "first",
        "last",
        "channel",
        "deliveries",
        "delivery_seq",
    ),
    _LOG
    + """
local now = tonumber(ARGV[1])
local count = tonumber(ARGV[8])
for i = 9, 8 + count do
    local id = ARGV[i]
    local lease = redis.call('ZSCORE', KEYS[2], id)
    if not redis.call('ZSCORE', KEYS[1], id) and not (lease and tonumber(lease) <= now) then
        return -1
    end
end
for i = 9, 8 + count do
    local id = ARGV[i]
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    for k = 3, 8 do
        redis.call('HDEL', KEYS[k], id)
    end
end
for i = 9 + count, #ARGV, 2 do
    log(KEYS[9], KEYS[10], ARGV[i], ARGV[i + 1], ARGV[3])
end
local id = ARGV[4]
if redis.call('HSETNX', KEYS[3], id, ARGV[5]) == 1 then
    redis.call('HSET', KEYS[4], id, 0)
    redis.call('HSET', KEYS[5], id, ARGV[1])
    redis.call('HSET', KEYS[8], id, ARGV[7])
    redis.call('ZADD', KEYS[1], ARGV[6], id)
    redis.call('PUBLISH', ARGV[2], '1')
end
return count
""",
)
