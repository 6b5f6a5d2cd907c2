"""``RedisStore``: the ``Store`` for several replicas, on one Redis (``redis://``, ``rediss://``).

Any replica may receive any payload and deliver any job: the queue, the leases, the
notification log, the dead letters, the delivery log, the Slack thread refs and the told
recipients all live in Redis under one key prefix. Jobs are JSON
(``Notification.model_dump_json``), never pickle. Every write is one Lua script
(``redis_scripts``), one command or one MULTI transaction, so it is atomic.

Why two sorted sets for the queue: ``due`` holds waiting jobs scored by the time they
may be claimed, ``leased`` holds claimed jobs scored by the end of their lease. A claim
first moves expired leases back to ``due`` and then moves the oldest due jobs to
``leased``, in one script. A replica that dies mid-delivery therefore loses nothing:
its leases run out and the next claim on any replica takes those jobs. Nothing has to
scan for stale jobs, and "due", "in flight" and "next due" are range counts.
Lease times come from the callers' clocks, so replicas need synchronised clocks (NTP).

Notification log entries (one key per channel and group, named by a digest of both)
hold their expiry time and are compared with the caller's ``now`` (as the other stores
do); their Redis TTL only collects them. The enqueue script decides in Lua, by the same
rule as ``notifier.dedup.needs_update``; beside an entry, a hash (``nfdefer:``) keeps
a deferred job's id and the entry it replaced (``notifier.deferral``). Slack thread refs
rely on the Redis TTL alone, since ``get_thread`` has no clock; so do told recipients (a
set per job). Dedup marks of older versions (``dedup:*``) are no longer read and expire
by their TTL.

Timers and incidents follow the same pattern (their keys are described in
``redis_scripts``): a timer is claimed from a sorted set scored by its due time or lease
end, and ``change_incident`` is one script that compares the epoch and then writes the
incident, cancels and schedules its timers and enqueues its jobs. ``remember_once`` is
``SET NX PX``, so like thread refs it expires by the Redis clock.

``wait_for_work`` listens on a pub/sub channel the enqueue and replay scripts publish
to, so another replica's enqueue wakes this replica's dispatcher at once.

Calls made in one event-loop turn (a claimed batch completing together) share one
pipelined round trip (``redis_batch``), and notifications this replica enqueued are
handed back on claim without parsing (``recent``).

Connection errors (Redis down, restarting, read-only, out of memory) become
``StoreUnavailable``; redis-py reconnects on the next command, so the store recovers
by itself. Error texts name the host, never the password of the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from notifier.dedup import PlannedJob
from notifier.heartbeats.state import HeartbeatState
from notifier.incidents.machine import Incident
from notifier.incidents.records import incident_from_json, incident_to_json
from notifier.notification import Notification
from notifier.store import redis_scripts as lua
from notifier.store.base import (
    ClaimedJob,
    DeadLetter,
    DeliveryRecord,
    EnqueueResult,
    Fold,
    Folder,
    HandOff,
    QueueStats,
    StoreUnavailable,
    ThreadRef,
    Timer,
    incident_timer_group,
)
from notifier.store.recent import RecentNotifications
from notifier.store.redis_batch import ScriptBatcher
from notifier.store.redis_rate_limit import RedisTokenBucket
from notifier.store.timer_records import timer_from_json, timer_to_json

# Errors that mean "Redis cannot serve us now", as opposed to a bug in a command.
_UNAVAILABLE = (
    rex.ConnectionError,  # also authentication and "loading the dataset"
    rex.TimeoutError,
    rex.ReadOnlyError,
    rex.OutOfMemoryError,
    rex.MasterDownError,
    rex.TryAgainError,
    rex.ClusterDownError,
    rex.NoPermissionError,
    OSError,
)
_CHUNK = 500  # dead letters replayed or purged per script call
# A claim with per-channel shares looks past at most this many due jobs of channels whose
# share is full. Each costs Redis one HGET, and those jobs stay oldest, so without
# a bound every claim would walk their whole backlog while Redis serves nothing else.
# Past the bound, a job waits for a later claim: once the full channel has room again, or
# its open circuit has handed its backlog back for later.
_SKIP_SCAN = 512
_FOLD_TRIES = 3  # a storm fold read again when a job it read was claimed meanwhile


def _num(value: float) -> str:
    """A float as a string that parses back to the same float (Redis and Lua read it)."""
    return repr(float(value))


def _entry_digest(job: PlannedJob) -> str:
    """The (channel, group) of a log entry as a short key part free of ``{}`` hash tags."""
    return hashlib.blake2b(f"{job.channel}\x00{job.group}".encode(), digest_size=16).hexdigest()


def _entry_json(job: PlannedJob, now: float) -> str:
    """The log entry ``job`` writes when it notifies at ``now`` (times exact: Lua reads them)."""
    entry = job.entry(now)
    return json.dumps(
        {
            "firing": sorted(entry.firing),
            "resolved": sorted(entry.resolved),
            "at": entry.at,
            "expires_at": job.entry_expires_at(now),
        }
    )


@dataclass(frozen=True, slots=True)
class _Bound:
    """A registered script with its fixed keys, prefixed."""

    script: AsyncScript
    keys: list[str]


class RedisStore:
    """A ``Store`` on Redis; ``prefix`` separates several notifiers (or tests) on one server."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "notifier:",
        delivery_log_size: int = 100_000,
        max_connections: int = 32,
    ) -> None:
        # Many workers share a few connections: a call waits for a free one (up to
        # ``timeout``) instead of failing when all are busy.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=5.0,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=30,
            # One quick retry hides a stale pooled connection after a Redis restart.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
        )
        self._client: aioredis.Redis = aioredis.Redis.from_pool(pool)
        options = self._client.connection_pool.connection_kwargs
        self._where = f"Redis store {options.get('host', 'localhost')}:{options.get('port', 6379)}"
        self._log_size = str(delivery_log_size)
        self.prefix = prefix
        self._wake_channel = f"{prefix}wake"
        self._enqueue = self._bind(lua.ENQUEUE)
        self._claim = self._bind(lua.CLAIM)
        self._complete = self._bind(lua.COMPLETE)
        self._reschedule = self._bind(lua.RESCHEDULE)
        self._dead_letter = self._bind(lua.DEAD_LETTER)
        self._release = self._bind(lua.RELEASE)
        self._replay = self._bind(lua.REPLAY)
        self._purge = self._bind(lua.PURGE)
        self._dead_letters = self._bind(lua.DEAD_LETTERS)
        self._waiting = self._bind(lua.WAITING)
        self._waiting_jobs = self._bind(lua.WAITING_JOBS)
        self._fold = self._bind(lua.FOLD)
        self._put_heartbeat = self._bind(lua.PUT_HEARTBEAT)
        self._schedule_timers = self._bind(lua.SCHEDULE_TIMERS)
        self._cancel_timers = self._bind(lua.CANCEL_TIMERS)
        self._finish_timer = self._bind(lua.FINISH_TIMER)
        self._claim_timers = self._bind(lua.CLAIM_TIMERS)
        self._open_incident = self._bind(lua.OPEN_INCIDENT)
        self._change_incident = self._bind(lua.CHANGE_INCIDENT)
        self._open_incident_for = self._bind(lua.OPEN_INCIDENT_FOR)
        self._open_incident_by_code = self._bind(lua.OPEN_INCIDENT_BY_CODE)
        self._list_incidents = self._bind(lua.LIST_INCIDENTS)
        self._batch = ScriptBatcher(self._client)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._wait_lock = asyncio.Lock()
        self._recent = RecentNotifications()

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _bind(self, script: lua.Lua) -> _Bound:
        keys = [self._key(name) for name in script.keys]
        return _Bound(self._client.register_script(script.source), keys)

    async def _call(self, bound: _Bound, args: list[Any], more_keys: Sequence[str] = ()) -> Any:
        """Run a script (pipelined with the other calls of this loop turn)."""
        with self._unavailable():
            return await self._batch.call(bound.script, [*bound.keys, *more_keys], args)

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"{self._where} unavailable: {type(exc).__name__}: {exc}"
            ) from exc

    async def open(self) -> None:
        """Check Redis answers and subscribe to the wake-up channel."""
        with self._unavailable():
            await self.ping()
            if not self._pubsub.subscribed:
                await self._pubsub.subscribe(self._wake_channel)

    async def close(self) -> None:
        with contextlib.suppress(*_UNAVAILABLE):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            await self._client.aclose()

    def token_bucket(self, channel: str, rate: float, burst: int) -> RedisTokenBucket:
        """``channel``'s rate limit, shared with every replica on this Redis and prefix."""
        key = self._key(f"ratelimit:{channel}")
        return RedisTokenBucket(self._client, self._batch, key, rate, burst, _UNAVAILABLE)

    async def ping(self) -> None:
        with self._unavailable():
            await self._client.set(self._key("ping"), "1")

    async def enqueue(
        self, jobs: Sequence[PlannedJob], now: float, handoff: HandOff | None = None
    ) -> EnqueueResult:
        if not jobs:
            return EnqueueResult((), 0)
        entry_keys = []
        for job in jobs:
            digest = _entry_digest(job)
            entry_keys += [self._key(f"nflog:{digest}"), self._key(f"nfdefer:{digest}")]
        args = [_num(now), self._wake_channel]
        for job in jobs:
            notification = job.notification
            args += [
                "" if notification is None else notification.job_id,
                job.channel,
                "" if notification is None else notification.model_dump_json(),
                _entry_json(job, now),
                "1" if job.send_resolved else "0",
                _num(job.repeat_interval),
                str(max(1, math.ceil((job.entry_expires_at(now) - now) * 1000))),
                "" if job.not_before is None else _num(job.sent_at(now)),
                _num(handoff.lease_until) if handoff is not None and handoff.takes(job) else "",
            ]
        ids: list[str] = await self._call(self._enqueue, args, entry_keys)
        split = ids.index("")
        enqueued, leased = tuple(ids[:split]), tuple(ids[split + 1 :])
        # Jobs stored leased are run by the caller: no claim of ours will want them back.
        claimable = set(enqueued).difference(leased)
        sendable = [job.notification for job in jobs if job.notification is not None]
        self._recent.remember(n for n in sendable if n.job_id in claimable)
        return EnqueueResult(enqueued, len(sendable) - len(enqueued), leased)

    async def claim(
        self,
        limit: int,
        lease: float,
        now: float,
        channel_limits: Mapping[str, int] | None = None,
    ) -> list[ClaimedJob]:
        args: list[Any] = [_num(now), _num(now + lease), limit]
        if channel_limits:
            args.append(limit + _SKIP_SCAN)
            for channel, share in channel_limits.items():
                args += [channel, share]
        flat = await self._call(self._claim, args)
        return [
            ClaimedJob(self._recent.take(job_id, payload), int(attempts), float(enqueued))
            for job_id, payload, attempts, enqueued in _rows(flat, 4)
        ]

    async def complete(self, record: DeliveryRecord) -> None:
        await self._call(self._complete, self._log_args(record))

    async def reschedule(self, record: DeliveryRecord, not_before: float) -> None:
        await self._call(self._reschedule, [*self._log_args(record), _num(not_before)])

    async def dead_letter(self, record: DeliveryRecord) -> None:
        args = [*self._log_args(record), record.reason or "other", record.error]
        await self._call(self._dead_letter, args)

    async def release(self, job_id: str, not_before: float) -> None:
        await self._call(self._release, [job_id, _num(not_before)])

    async def next_due_at(self) -> float | None:
        with self._unavailable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zrange(self._key("due"), 0, 0, withscores=True)
                pipe.zrange(self._key("leased"), 0, 0, withscores=True)
                firsts = await pipe.execute()
        return min((float(first[0][1]) for first in firsts if first), default=None)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        flat = await self._call(self._dead_letters, [limit])
        letters = []
        for job_id, reason, error, attempts, first, last, payload in _rows(flat, 7):
            notification = Notification.model_validate_json(payload)
            letters.append(
                DeadLetter(
                    id=job_id,
                    channel=notification.channel,
                    reason=reason,
                    error=error,
                    attempts=int(attempts),
                    first_attempt_at=float(first) if first else None,
                    last_attempt_at=float(last) if last else None,
                    notification=notification,
                )
            )
        return letters

    async def replay(self, job_id: str, now: float) -> bool:
        replayed = await self._call(self._replay, [_num(now), self._wake_channel, 1, job_id])
        return int(replayed) > 0

    async def replay_all(self, now: float) -> int:
        args = [_num(now), self._wake_channel, _CHUNK]
        total = 0
        while (replayed := int(await self._call(self._replay, args))) > 0:
            total += replayed
        return total

    async def purge_dead_letters(self) -> int:
        total = 0
        while (purged := int(await self._call(self._purge, [_CHUNK]))) > 0:
            total += purged
        return total

    async def deliveries(
        self, limit: int = 100, since: float | None = None
    ) -> list[DeliveryRecord]:
        low = "-inf" if since is None else _num(since)
        with self._unavailable():
            members = await self._client.zrevrangebyscore(
                self._key("deliveries"), "+inf", low, start=0, num=limit
            )
        # Each member is a 15-digit counter followed by the record's JSON.
        return [DeliveryRecord(**json.loads(cast(str, member)[15:])) for member in members]

    async def stats(self, now: float) -> QueueStats:
        due_key, leased_key = self._key("due"), self._key("leased")
        stamp = _num(now)
        with self._unavailable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zcard(due_key)
                pipe.zcount(due_key, "-inf", stamp)
                pipe.zcount(leased_key, "-inf", stamp)
                pipe.zcount(leased_key, f"({stamp}", "+inf")
                pipe.zrange(due_key, 0, 0, withscores=True)
                pipe.zrange(leased_key, 0, 0, withscores=True)
                pipe.zcard(self._key("dead"))
                (
                    waiting,
                    due,
                    expired,
                    in_flight,
                    first_due,
                    first_leased,
                    dead,
                ) = await pipe.execute()
        due_since = [
            float(f[0][1]) for f in (first_due, first_leased) if f and float(f[0][1]) <= now
        ]
        return QueueStats(
            queued=waiting + expired,
            in_flight=in_flight,
            due=due + expired,
            oldest_due_age=now - min(due_since) if due_since else 0.0,
            dead_letters=dead,
        )

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109 (the protocol's)
        """Wait for a publish on the wake-up channel, at most ``timeout`` seconds.

        One waiter listens at a time (a pub/sub connection is not shared); others sleep.
        While Redis is away this sleeps instead; redis-py resubscribes on the first read
        once it is back. It never raises: it is only a hint.
        """
        if self._wait_lock.locked():
            await asyncio.sleep(timeout)
            return
        async with self._wait_lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                if not self._pubsub.subscribed:  # open() could not subscribe
                    await self._pubsub.subscribe(self._wake_channel)
                # The dispatcher cancels this wait when woken in-process; redis-py's
                # pub/sub read keeps its subscription when cancelled (a test proves it).
                while (remaining := deadline - loop.time()) > 0:
                    if await self._pubsub.get_message(timeout=remaining) is not None:
                        break
                # Drain what else arrived meanwhile: one wake-up is enough.
                for _ in range(100):
                    if await self._pubsub.get_message(timeout=0) is None:
                        break
            except _UNAVAILABLE:
                await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def waiting(self, channel: str, now: float) -> int:
        return int(await self._call(self._waiting, [channel, _num(now)]))

    async def fold(self, channel: str, now: float, folder: Folder) -> Fold | None:
        """Read the waiting jobs, fold them here, and write the fold in one script that
        checks they all still wait; read again when one was claimed meanwhile."""
        for _ in range(_FOLD_TRIES):
            flat = await self._call(self._waiting_jobs, [channel, _num(now)])
            waiting = [Notification.model_validate_json(p) for _, p in _rows(flat, 2) if p]
            fold = folder(waiting)
            if fold is None:
                return None
            args: list[Any] = [
                _num(now),
                self._wake_channel,
                self._log_size,
                fold.digest.job_id,
                fold.digest.model_dump_json(),
                _num(fold.not_before),
                channel,
                len(fold.folded),
                *fold.folded,
            ]
            for record in fold.records:
                args += [_num(record.at), _record_json(record)]
            if int(await self._call(self._fold, args)) >= 0:
                return fold
        return None  # the channel's jobs kept being claimed: the next look folds them

    async def get_thread(self, key: str) -> ThreadRef | None:
        with self._unavailable():
            value = await self._client.get(self._key(f"thread:{key}"))
        return None if value is None else ThreadRef(**json.loads(value))

    async def put_thread(self, key: str, ref: ThreadRef, ttl: float, now: float) -> None:
        name = self._key(f"thread:{key}")
        with self._unavailable():
            if ttl <= 0:
                await self._client.delete(name)
            else:
                await self._client.set(name, json.dumps(asdict(ref)), px=math.ceil(ttl * 1000))

    async def told_recipients(self, job_id: str) -> frozenset[str]:
        with self._unavailable():
            members = await self._client.smembers(self._key(f"told:{job_id}"))
        return frozenset(str(member) for member in members)  # decode_responses: already str

    async def add_told_recipient(self, job_id: str, recipient: str, ttl: float, now: float) -> None:
        name = self._key(f"told:{job_id}")
        with self._unavailable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.sadd(name, recipient)
                pipe.pexpire(name, max(1, math.ceil(ttl * 1000)))
                await pipe.execute()

    async def schedule_timers(self, timers: Sequence[Timer]) -> None:
        if timers:
            await self._call(self._schedule_timers, _timer_args(timers))

    async def cancel_timers(self, group: str) -> int:
        return int(await self._call(self._cancel_timers, [group]))

    async def claim_timers(self, limit: int, lease: float, now: float) -> list[Timer]:
        found = await self._call(self._claim_timers, [_num(now), _num(now + lease), limit])
        return [timer_from_json(text) for text in found]

    async def finish_timer(self, timer_id: str) -> None:
        await self._call(self._finish_timer, [timer_id])

    async def next_timer_at(self) -> float | None:
        with self._unavailable():
            first = await self._client.zrange(self._key("timer_due"), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def open_incident(self, incident: Incident, timers: Sequence[Timer]) -> Incident | None:
        args = [
            incident.id,
            _group_field(incident.route, incident.group_key),
            incident.ack_code,
            _num(incident.opened_at),
            str(incident.epoch),
            incident_to_json(incident),
            *_timer_args(timers),
        ]
        answer = await self._call(self._open_incident, args)
        if answer[0] == "existing":
            return incident_from_json(answer[1])
        return incident if answer[0] == "opened" else None

    async def change_incident(
        self,
        incident: Incident,
        expected_epoch: int,
        *,
        cancel_timers: bool,
        timers: Sequence[Timer],
        notifications: Sequence[Notification],
        now: float,
    ) -> bool:
        args: list[Any] = [
            incident.id,
            str(expected_epoch),
            str(incident.epoch),
            incident_to_json(incident),
            "1" if incident.is_open else "0",
            _group_field(incident.route, incident.group_key),
            incident.ack_code,
            _num(incident.opened_at),
            incident_timer_group(incident.id) if cancel_timers else "",
            _num(now),
            self._wake_channel,
            len(timers),
            *_timer_args(timers),
        ]
        for notification in notifications:
            args += [notification.job_id, notification.channel, notification.model_dump_json()]
        changed = int(await self._call(self._change_incident, args)) == 1
        if changed:
            self._recent.remember(notifications)
        return changed

    async def get_incident(self, incident_id: str) -> Incident | None:
        with self._unavailable():
            text = await self._client.hget(self._key("incident"), incident_id)
        return None if text is None else incident_from_json(text)

    async def open_incident_for(self, route: str, group_key: str) -> Incident | None:
        text = await self._call(self._open_incident_for, [_group_field(route, group_key)])
        return None if text is None else incident_from_json(text)

    async def open_incident_by_code(self, ack_code: str) -> Incident | None:
        text = await self._call(self._open_incident_by_code, [ack_code])
        return None if text is None else incident_from_json(text)

    async def list_incidents(self, *, open_only: bool = False, limit: int = 100) -> list[Incident]:
        found = await self._call(self._list_incidents, [limit, "1" if open_only else "0"])
        return [incident_from_json(text) for text in found]

    async def remember_once(self, key: str, ttl: float, now: float) -> bool:
        with self._unavailable():
            stored = await self._client.set(
                self._key(f"seen:{key}"), "1", nx=True, px=max(1, math.ceil(ttl * 1000))
            )
        return bool(stored)

    def _heartbeat_key(self, name: str) -> str:
        digest = hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
        return self._key(f"heartbeat:{digest}")

    async def get_heartbeat(self, name: str) -> HeartbeatState | None:
        with self._unavailable():
            value = await self._client.hget(self._heartbeat_key(name), "state")
        return None if value is None else HeartbeatState(**json.loads(value))

    async def put_heartbeat(
        self,
        state: HeartbeatState,
        expected_version: int | None,
        notifications: Sequence[Notification],
        now: float,
    ) -> bool:
        args: list[Any] = [
            _num(now),
            self._wake_channel,
            "" if expected_version is None else str(expected_version),
            str(state.version),
            json.dumps(asdict(state)),
        ]
        for notification in notifications:
            args += [notification.job_id, notification.channel, notification.model_dump_json()]
        key = self._heartbeat_key(state.name)
        written = int(await self._call(self._put_heartbeat, args, [key])) == 1
        if written:
            self._recent.remember(notifications)
        return written

    async def delete_all_keys(self) -> int:
        """Delete every key under this store's prefix (tests and benchmarks clean up with it)."""
        deleted = 0
        with self._unavailable():
            batch: list[str] = []
            async for name in self._client.scan_iter(match=f"{self.prefix}*", count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    deleted += await self._client.unlink(*batch)
                    batch = []
            if batch:
                deleted += await self._client.unlink(*batch)
        return deleted

    def _log_args(self, record: DeliveryRecord) -> list[str]:
        return [
            record.job_id,
            _num(record.at),
            _record_json(record),
            self._log_size,
        ]


_RECORD_FIELDS = tuple(field.name for field in fields(DeliveryRecord))


def _record_json(record: DeliveryRecord) -> str:
    """A delivery record as the log keeps it: its fields by name (``asdict`` copies deeply,
    which showed in the storm profile)."""
    fields_by_name = {name: getattr(record, name) for name in _RECORD_FIELDS}
    return json.dumps(fields_by_name, separators=(",", ":"))


def _group_field(route: str, group_key: str) -> str:
    """The field that indexes an open incident by its route and group."""
    return f"{route}\x00{group_key}"


def _timer_args(timers: Sequence[Timer]) -> list[str]:
    """Each timer as the timer scripts' ``schedule`` reads it."""
    args: list[str] = []
    for timer in timers:
        args += [timer.id, timer.key, timer.group, _num(timer.due_at), timer_to_json(timer)]
    return args


def _rows(flat: list[Any], width: int) -> Iterator[tuple[Any, ...]]:
    """Split a script's flat reply into rows of ``width``."""
    for start in range(0, len(flat), width):
        yield tuple(flat[start : start + width])
