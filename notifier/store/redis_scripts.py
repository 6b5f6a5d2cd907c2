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


# The queue's keys and the delivery log's, for scripts that end jobs and log them.
_QUEUE_AND_LOG_KEYS = (
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
)

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

# Stores a new job, insert-if-absent on its payload, the one way every script adds a job
# (the module docstring's hashes); says whether it was new. ``queue`` lists the keys
# ``due`` (``leased`` for a job stored leased, ``due_at`` then its lease end), ``payload``,
# ``attempts``, ``enqueued`` and ``channel``, in that order.
_ADD_JOB = """
local function add_job(queue, id, payload, channel, enqueued_at, due_at)
    local due, payloads, attempts, enqueued, channels = unpack(queue)
    if redis.call('HSETNX', payloads, id, payload) ~= 1 then
        return false
    end
    redis.call('HSET', attempts, id, 0)
    redis.call('HSET', enqueued, id, enqueued_at)
    redis.call('HSET', channels, id, channel)
    redis.call('ZADD', due, due_at, id)
    return true
end
"""

# KEYS: these, then per job the key of its log entry and of its deferral (a hash: the
# deferred job's id and the entry as it was before, ``told``, '' for none).
# ARGV: now, wake channel, then per job: id ('' when there is nothing to send), channel,
# payload, the entry it would write (JSON), send_resolved ('1' or '0'), repeat_interval,
# the entry's ttl_ms, not_before ('' unless deferred), lease_until ('' unless the job is
# handed off: then it is stored in ``leased`` until then, as a claim would leave it).
# A deferral whose job still waits (never attempted, under no live lease) is judged
# against instead of the entry, and its job removed (``notifier.deferral``).
# Returns the ids enqueued, then a '' and the ids of those stored leased. Wakes the
# replicas unless every job stored is leased (they would find nothing to claim).
ENQUEUE = Lua(
    ("due", "payload", "attempts", "enqueued", "channel", "leased"),
    _NEEDS_UPDATE
    + _ADD_JOB
    + """
local now = tonumber(ARGV[1])
local queue = {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]}

local function live(raw)
    local entry = raw and cjson.decode(raw)
    if entry and entry.expires_at > now then
        return entry
    end
    return nil
end

-- Removes the deferred job ``id`` if it still waits; says whether it did.
local function remove_waiting(id)
    if redis.call('HGET', KEYS[3], id) ~= '0' then
        return false
    end
    local lease = redis.call('ZSCORE', KEYS[6], id)
    if lease and tonumber(lease) > now then
        return false
    end
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[6], id)
    for k = 2, 5 do
        redis.call('HDEL', KEYS[k], id)
    end
    return true
end

local leasing = {KEYS[6], KEYS[2], KEYS[3], KEYS[4], KEYS[5]}
local enqueued, leased = {}, {}
for i = 7, #KEYS, 2 do
    local arg = 3 + (i - 7) / 2 * 9
    local id, entry, not_before = ARGV[arg], ARGV[arg + 3], ARGV[arg + 7]
    local lease_until = ARGV[arg + 8]
    local basis_raw = redis.call('GET', KEYS[i])
    local basis = live(basis_raw)
    local waiting = false
    local deferral = redis.call('HMGET', KEYS[i + 1], 'job', 'told')
    if deferral[1] then
        redis.call('DEL', KEYS[i + 1])
        waiting = remove_waiting(deferral[1])
        if waiting then
            basis_raw = deferral[2] ~= '' and deferral[2]
            basis = live(basis_raw)
        end
    end
    if not basis then
        basis_raw = false
    end
    local send_resolved, repeat_interval = ARGV[arg + 4] == '1', tonumber(ARGV[arg + 5])
    if needs_update(basis, cjson.decode(entry), send_resolved, repeat_interval, now) then
        redis.call('SET', KEYS[i], entry, 'PX', ARGV[arg + 6])
        local due = not_before ~= '' and not_before or ARGV[1]
        local payload, channel = ARGV[arg + 2], ARGV[arg + 1]
        if id == '' then
            -- the entry is updated, nothing is sent
        elseif lease_until ~= '' then
            if add_job(leasing, id, payload, channel, due, lease_until) then
                enqueued[#enqueued + 1] = id
                leased[#leased + 1] = id
            end
        elseif add_job(queue, id, payload, channel, due, due) then
            if not_before ~= '' then
                redis.call('HSET', KEYS[i + 1], 'job', id, 'told', basis_raw or '')
                redis.call('PEXPIRE', KEYS[i + 1], ARGV[arg + 6])
            end
            enqueued[#enqueued + 1] = id
        end
    elseif waiting then
        if basis then
            local ttl = math.max(1, math.ceil((basis.expires_at - now) * 1000))
            redis.call('SET', KEYS[i], basis_raw, 'PX', ttl)
        else
            redis.call('DEL', KEYS[i])
        end
    end
end
if #enqueued > #leased then
    redis.call('PUBLISH', ARGV[2], '1')
end
enqueued[#enqueued + 1] = ''
for _, id in ipairs(leased) do
    enqueued[#enqueued + 1] = id
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
    _QUEUE_AND_LOG_KEYS,
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

# Timers: ``timer`` (hash id -> the timer's JSON), ``timer_due`` (zset id -> when it may
# be claimed: its due time, or while leased the end of its lease), ``timer_key`` (hash
# key -> the id scheduled under it) and ``timer_group`` (zset of ``group .. "\0" .. id``,
# all scored 0, so a group's members are one lexical range). Every timer script takes
# these four as KEYS[1..4].
_TIMER_KEYS = ("timer", "timer_due", "timer_key", "timer_group")
_TIMERS = """
local function drop_timer(id)
    local stored = redis.call('HGET', KEYS[1], id)
    if not stored then
        return 0
    end
    local timer = cjson.decode(stored)
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    if redis.call('HGET', KEYS[3], timer.key) == id then
        redis.call('HDEL', KEYS[3], timer.key)
    end
    redis.call('ZREM', KEYS[4], timer.group .. '\\0' .. id)
    return 1
end

-- ARGV[first..last]: id, key, group, due_at, JSON per timer; a key's old timer goes.
local function schedule(first, last)
    for i = first, last, 5 do
        local id, key = ARGV[i], ARGV[i + 1]
        local replaced = redis.call('HGET', KEYS[3], key)
        if replaced then
            drop_timer(replaced)
        end
        drop_timer(id)
        redis.call('HSET', KEYS[1], id, ARGV[i + 4])
        redis.call('ZADD', KEYS[2], ARGV[i + 3], id)
        redis.call('HSET', KEYS[3], key, id)
        redis.call('ZADD', KEYS[4], 0, ARGV[i + 2] .. '\\0' .. id)
    end
end

local function cancel(group)
    local members = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. group .. '\\0', '(' .. group .. '\\1')
    local cancelled = 0
    for _, member in ipairs(members) do
        cancelled = cancelled + drop_timer(string.sub(member, #group + 2))
        redis.call('ZREM', KEYS[4], member)
    end
    return cancelled
end
"""

# ARGV: the timers (5 each, see ``schedule``).
SCHEDULE_TIMERS = Lua(_TIMER_KEYS, _TIMERS + "schedule(1, #ARGV)\n")

# ARGV: group. Returns how many timers were removed.
CANCEL_TIMERS = Lua(_TIMER_KEYS, _TIMERS + "return cancel(ARGV[1])\n")

# ARGV: id.
FINISH_TIMER = Lua(_TIMER_KEYS, _TIMERS + "drop_timer(ARGV[1])\n")

# ARGV: now, lease_until, limit. Returns the JSON of each timer leased, earliest first.
CLAIM_TIMERS = Lua(
    _TIMER_KEYS,
    """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    out[#out + 1] = redis.call('HGET', KEYS[1], id)
end
return out
""",
)

# Incidents: ``incident`` (hash id -> JSON), ``incident_epoch`` (hash id -> epoch, what a
# change compares), ``incident_group`` (hash route .. "\0" .. group -> id) and
# ``incident_code`` (hash ack code -> id), both of open incidents only, and
# ``incidents_open`` / ``incidents_closed`` (zsets id -> opened_at) for listing. The
# incident scripts take them as KEYS[5..10], after the timer keys.
_INCIDENT_KEYS = (
    "incident",
    "incident_epoch",
    "incident_group",
    "incident_code",
    "incidents_open",
    "incidents_closed",
)

# ARGV: id, route .. "\0" .. group, ack code, opened_at, epoch, JSON, then its timers.
# Returns {'opened'}, {'existing', the open incident's JSON} or {'code_taken'}.
OPEN_INCIDENT = Lua(
    _TIMER_KEYS + _INCIDENT_KEYS,
    _TIMERS
    + """
local id = ARGV[1]
local existing = redis.call('HGET', KEYS[7], ARGV[2])
if existing then
    return {'existing', redis.call('HGET', KEYS[5], existing)}
end
if redis.call('HEXISTS', KEYS[8], ARGV[3]) == 1 then
    return {'code_taken'}
end
redis.call('HSET', KEYS[5], id, ARGV[6])
redis.call('HSET', KEYS[6], id, ARGV[5])
redis.call('HSET', KEYS[7], ARGV[2], id)
redis.call('HSET', KEYS[8], ARGV[3], id)
redis.call('ZADD', KEYS[9], ARGV[4], id)
redis.call('ZREM', KEYS[10], id)
schedule(7, #ARGV)
return {'opened'}
""",
)

# KEYS: the timer and incident keys, then the queue's ``due``, ``payload``, ``attempts``,
# ``enqueued``, ``channel`` (as ``ENQUEUE`` stores a job).
# ARGV: id, expected epoch, new epoch, JSON, '1' if open else '0', route .. "\0" .. group,
# ack code, opened_at, the timer group to cancel ('' for none), now, wake channel, how
# many timers, the timers (5 each), then per job: id, channel, payload.
# Returns 1 when written, 0 (changing nothing) when the stored epoch is not the expected.
CHANGE_INCIDENT = Lua(
    (*_TIMER_KEYS, *_INCIDENT_KEYS, "due", "payload", "attempts", "enqueued", "channel"),
    _TIMERS
    + _ADD_JOB
    + """
local id = ARGV[1]
if redis.call('HGET', KEYS[6], id) ~= ARGV[2] then
    return 0
end
redis.call('HSET', KEYS[5], id, ARGV[4])
redis.call('HSET', KEYS[6], id, ARGV[3])
if ARGV[5] == '1' then
    redis.call('HSET', KEYS[7], ARGV[6], id)
    redis.call('HSET', KEYS[8], ARGV[7], id)
    redis.call('ZADD', KEYS[9], ARGV[8], id)
    redis.call('ZREM', KEYS[10], id)
else
    if redis.call('HGET', KEYS[7], ARGV[6]) == id then
        redis.call('HDEL', KEYS[7], ARGV[6])
    end
    if redis.call('HGET', KEYS[8], ARGV[7]) == id then
        redis.call('HDEL', KEYS[8], ARGV[7])
    end
    redis.call('ZREM', KEYS[9], id)
    redis.call('ZADD', KEYS[10], ARGV[8], id)
end
if ARGV[9] ~= '' then
    cancel(ARGV[9])
end
local jobs_at = 13 + tonumber(ARGV[12]) * 5
schedule(13, jobs_at - 1)
local queue = {KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]}
local enqueued = 0
for i = jobs_at, #ARGV, 3 do
    if add_job(queue, ARGV[i], ARGV[i + 2], ARGV[i + 1], ARGV[10], ARGV[10]) then
        enqueued = enqueued + 1
    end
end
if enqueued > 0 then
    redis.call('PUBLISH', ARGV[11], '1')
end
return 1
""",
)

# KEYS: an index (hash -> id), ``incident``. ARGV: the index field.
# Returns the JSON of the incident the index names, or nil.
_INCIDENT_BY_INDEX = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then
    return redis.call('HGET', KEYS[2], id)
end
return false
"""
OPEN_INCIDENT_FOR = Lua(("incident_group", "incident"), _INCIDENT_BY_INDEX)
OPEN_INCIDENT_BY_CODE = Lua(("incident_code", "incident"), _INCIDENT_BY_INDEX)

# ARGV: limit, '1' for open incidents only. Returns their JSON: open ones first, newest
# opened first within each.
LIST_INCIDENTS = Lua(
    ("incident", "incidents_open", "incidents_closed"),
    """
local limit = tonumber(ARGV[1])
if limit <= 0 then
    return {}
end
local ids = redis.call('ZREVRANGE', KEYS[2], 0, limit - 1)
if ARGV[2] ~= '1' and #ids < limit then
    for _, id in ipairs(redis.call('ZREVRANGE', KEYS[3], 0, limit - #ids - 1)) do
        ids[#ids + 1] = id
    end
end
local out = {}
for _, id in ipairs(ids) do
    out[#out + 1] = redis.call('HGET', KEYS[1], id)
end
return out
""",
)

# KEYS: these, then the heartbeat's hash (fields ``version`` and ``state``, its JSON).
# ARGV: now, wake channel, the expected version ('' when none may be stored), the new
# version, the state JSON, then per job: id, channel, payload. Compare-and-set on the
# version, with the jobs; returns 1 when written, 0 when the version had moved on.
PUT_HEARTBEAT = Lua(
    ("due", "payload", "attempts", "enqueued", "channel"),
    _ADD_JOB
    + """
local stored = redis.call('HGET', KEYS[6], 'version') or ''
if stored ~= ARGV[3] then
    return 0
end
redis.call('HSET', KEYS[6], 'version', ARGV[4], 'state', ARGV[5])
local queue = {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]}
local added = false
for arg = 6, #ARGV, 3 do
    if add_job(queue, ARGV[arg], ARGV[arg + 2], ARGV[arg + 1], ARGV[1], ARGV[1]) then
        added = true
    end
end
if added then
    redis.call('PUBLISH', ARGV[2], '1')
end
return 1
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
    _QUEUE_AND_LOG_KEYS,
    _LOG
    + _ADD_JOB
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
local queue = {KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[8]}
if add_job(queue, ARGV[4], ARGV[5], ARGV[7], ARGV[1], ARGV[6]) then
    redis.call('PUBLISH', ARGV[2], '1')
end
return count
""",
)
