"""``SQLiteStore``: the embedded default ``Store``, one WAL-mode SQLite file.

Owns the queries and the mapping between rows and the protocol's types. Writes (claims
included) go through ``GroupCommitWriter``: concurrent callers share one transaction and
each returns only after it is committed, so a 202 means the job is on disk. Queries go
through ``Reader`` on their own connection. No SQLite call runs on the event loop thread.
The schema and its migrations live in ``sqlite_schema``.

Durability: ``synchronous=FULL`` (default) fsyncs the WAL at every commit and survives a
power loss. ``NORMAL`` fsyncs only at checkpoints: it survives a crash of the process
but a power loss may drop the last commits. Group commit makes FULL cheap enough that
it is the default (see ``bench/store_bench.py``).

Only one process should serve from one file (a second would work, serialised by
SQLite's lock, but ``wait_for_work`` would not hear its enqueues); the CLI may open the
file alongside a running server for operator commands.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from notifier.dedup import LogEntry, PlannedJob
from notifier.deferral import Deferral, deferral_for
from notifier.heartbeats.state import HeartbeatState
from notifier.incidents.machine import Incident
from notifier.incidents.records import incident_from_json, incident_to_json
from notifier.notification import Notification
from notifier.store.base import (
    ClaimedJob,
    DeadLetter,
    DeliveryRecord,
    EnqueueResult,
    Fold,
    Folder,
    HandOff,
    QueueStats,
    ThreadRef,
    Timer,
    incident_timer_group,
)
from notifier.store.coalesce import Coalescer
from notifier.store.recent import RecentNotifications
from notifier.store.sqlite_schema import Synchronous, connect_reader, connect_writer
from notifier.store.sqlite_threads import GroupCommitWriter, Reader
from notifier.store.timer_records import timer_data_to_json

# A job may be claimed when this is <= now: its not_before, or its lease's end.
_DUE = "coalesce(lease_until, not_before)"
_SWEEP_BATCH = 256  # expired log entries, thread refs, told recipients removed per write, at most
# Expired log entries are swept by an enqueue at most this often (seconds), and by every
# enqueue while a sweep still finds a full batch. An expired entry counts as absent and
# is overwritten anyway: sweeping only bounds the table, so it need not be on every
# enqueue's path.
_SWEEP_EVERY = 1.0

_READ_ENTRY = """
    SELECT firing, resolved, at, expires_at, deferred_job, told FROM notification_log
    WHERE channel = ? AND group_id = ?
"""
_WRITE_ENTRY = """
    INSERT INTO notification_log
        (channel, group_id, firing, resolved, at, expires_at, deferred_job, told)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (channel, group_id) DO UPDATE SET firing = excluded.firing,
        resolved = excluded.resolved, at = excluded.at, expires_at = excluded.expires_at,
        deferred_job = excluded.deferred_job, told = excluded.told
"""
# lease_until: NULL, or the end of the lease of a job stored leased (handed off).
_INSERT_JOB = """
    INSERT INTO jobs (id, channel, payload, not_before, enqueued_at, lease_until)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO NOTHING
"""
# A deferred job still waits while it is queued, never attempted and under no live lease.
_REMOVE_WAITING = """
    DELETE FROM jobs WHERE id = ? AND state = 'queued' AND attempts = 0
        AND (lease_until IS NULL OR lease_until <= ?)
"""
_SWEEP_LOG = f"""
    DELETE FROM notification_log WHERE (channel, group_id) IN
    (SELECT channel, group_id FROM notification_log WHERE expires_at <= ? LIMIT {_SWEEP_BATCH})
"""
_COUNT_ATTEMPT = """
    attempts = attempts + 1,
    first_attempt_at = coalesce(first_attempt_at, :at),
    last_attempt_at = :at,
    lease_until = NULL,
    reason = :reason,
    error = :error
"""
_RESCHEDULE = f"""
    UPDATE jobs SET {_COUNT_ATTEMPT}, not_before = :not_before
    WHERE id = :id AND state = 'queued'
"""
_DEAD_LETTER = (
    f"UPDATE jobs SET {_COUNT_ATTEMPT}, state = 'dead' WHERE id = :id AND state = 'queued'"
)
_REPLAY = """
    UPDATE jobs SET state = 'queued', not_before = :now, enqueued_at = :now, attempts = 0,
        lease_until = NULL, first_attempt_at = NULL, last_attempt_at = NULL,
        reason = NULL, error = NULL
    WHERE state = 'dead'
"""
_WAITING = "state = 'queued' AND channel = ? AND (lease_until IS NULL OR lease_until <= ?)"
_COUNT_WAITING = f"SELECT count(*) FROM jobs WHERE {_WAITING}"
_LOG = """
    INSERT INTO deliveries (job_id, channel, channel_type, outcome, reason, error, latency,
        at, received_at, severity, status, alerts)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_DELIVERY_COLUMNS = (
    "job_id, channel, channel_type, outcome, reason, error, latency, at, received_at,"
    " severity, status, alerts"
)
_HEARTBEAT_COLUMNS = "name, version, armed_at, due_at, last_seen, missed_since"
_DEAD_COLUMNS = "id, channel, reason, error, attempts, first_attempt_at, last_attempt_at, payload"

# A timer may be claimed when this is <= now (``timers_due`` indexes it).
_TIMER_DUE = "coalesce(lease_until, due_at)"
_SCHEDULE_TIMER = """
    INSERT INTO timers (id, key, grp, kind, due_at, lease_until, data)
    VALUES (?, ?, ?, ?, ?, NULL, ?)
    ON CONFLICT (key) DO UPDATE SET id = excluded.id, grp = excluded.grp,
        kind = excluded.kind, due_at = excluded.due_at, lease_until = NULL, data = excluded.data
"""
_CLAIMABLE_TIMERS = f"""
    SELECT id, key, grp, kind, due_at, data FROM timers WHERE {_TIMER_DUE} <= ?
    ORDER BY {_TIMER_DUE}, id LIMIT ?
"""
_INCIDENT_COLUMNS = "route, group_key, ack_code, is_open, epoch, opened_at, body"
_OPEN_FOR = "SELECT body FROM incidents WHERE route = ? AND group_key = ? AND is_open"
_OPEN_BY_CODE = "SELECT body FROM incidents WHERE ack_code = ? AND is_open"
_CHANGE_INCIDENT = """
    UPDATE incidents SET route = ?, group_key = ?, ack_code = ?, is_open = ?, epoch = ?,
        opened_at = ?, body = ?
    WHERE id = ? AND epoch = ?
"""


class SQLiteStore:
    """A ``Store`` in one SQLite file, created (with its folder) on ``open()``."""

    def __init__(
        self,
        path: Path,
        *,
        delivery_log_size: int = 100_000,
        synchronous: Synchronous = "FULL",
    ) -> None:
        self.path = path
        self._log_size = delivery_log_size
        name = f"SQLite store {path}"
        self._writer = GroupCommitWriter(partial(connect_writer, path, synchronous), name)
        self._reader = Reader(partial(connect_reader, path), name)
        self._recent = RecentNotifications()
        self._completions = Coalescer[DeliveryRecord](self._write_completions)
        self._next_sweep = float("-inf")  # when an enqueue next sweeps expired log entries

    async def open(self) -> None:
        """Start the threads and create or migrate the file; ``StoreUnavailable`` if it can't."""
        self._writer.start()
        self._reader.start()
        await self.ping()

    async def close(self) -> None:
        await self._writer.stop()
        await self._reader.stop()

    async def ping(self) -> None:
        await self._writer.run(_ping)

    async def enqueue(
        self, jobs: Sequence[PlannedJob], now: float, handoff: HandOff | None = None
    ) -> EnqueueResult:
        # The notifications are encoded here, off the writer thread every write waits for.
        sends = [
            None
            if j.notification is None
            else (
                j.notification.job_id,
                j.notification.model_dump_json(),
                handoff.lease_until if handoff is not None and handoff.takes(j) else None,
            )
            for j in jobs
        ]
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + _SWEEP_EVERY
        result, backlog = await self._writer.run(partial(_enqueue, jobs, sends, now, sweep))
        if backlog:
            self._next_sweep = float("-inf")  # more expired entries wait: the next one sweeps too
        # Jobs stored leased are run by the caller: no claim of ours will want them back.
        claimable = set(result.enqueued).difference(result.leased)
        self._recent.remember(
            job.notification
            for job in jobs
            if job.notification is not None and job.notification.job_id in claimable
        )
        return result

    async def claim(
        self,
        limit: int,
        lease: float,
        now: float,
        channel_limits: Mapping[str, int] | None = None,
    ) -> list[ClaimedJob]:
        rows = await self._writer.run(
            partial(_claim, limit, now + lease, now, tuple((channel_limits or {}).items()))
        )
        return [
            ClaimedJob(self._recent.take(job_id, payload), attempts, enqueued_at)
            for job_id, payload, attempts, enqueued_at in rows
        ]

    async def complete(self, record: DeliveryRecord) -> None:
        await self._completions.add(record)

    def _write_completions(self, records: list[DeliveryRecord]) -> asyncio.Future[None]:
        """The completions of one loop turn as one writer op (``Coalescer``)."""
        return self._writer.submit(partial(_complete, records, self._log_size))

    async def reschedule(self, record: DeliveryRecord, not_before: float) -> None:
        params = _attempt_params(record) | {"not_before": not_before}
        await self._writer.run(partial(_finish, _RESCHEDULE, params, record, self._log_size))

    async def dead_letter(self, record: DeliveryRecord) -> None:
        params = _attempt_params(record)
        await self._writer.run(partial(_finish, _DEAD_LETTER, params, record, self._log_size))

    async def release(self, job_id: str, not_before: float) -> None:
        sql = "UPDATE jobs SET not_before = ?, lease_until = NULL WHERE id = ? AND state = 'queued'"
        await self._writer.run(partial(_execute, sql, (not_before, job_id)))

    async def next_due_at(self) -> float | None:
        sql = f"SELECT {_DUE} FROM jobs WHERE state = 'queued' ORDER BY {_DUE} LIMIT 1"
        row = await self._reader.run(partial(_fetch_one, sql, ()))
        return None if row is None else float(row[0])

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        sql = f"""
            SELECT {_DEAD_COLUMNS} FROM jobs WHERE state = 'dead'
            ORDER BY last_attempt_at DESC, seq DESC LIMIT ?
        """
        rows = await self._reader.run(partial(_fetch_all, sql, (limit,)))
        return [
            DeadLetter(
                id=job_id,
                channel=channel,
                reason=reason,
                error=error,
                attempts=attempts,
                first_attempt_at=first,
                last_attempt_at=last,
                notification=Notification.model_validate_json(payload),
            )
            for job_id, channel, reason, error, attempts, first, last, payload in rows
        ]

    async def replay(self, job_id: str, now: float) -> bool:
        params = {"now": now, "id": job_id}
        return await self._writer.run(partial(_execute, f"{_REPLAY} AND id = :id", params)) > 0

    async def replay_all(self, now: float) -> int:
        return await self._writer.run(partial(_execute, _REPLAY, {"now": now}))

    async def purge_dead_letters(self) -> int:
        return await self._writer.run(
            partial(_execute, "DELETE FROM jobs WHERE state = 'dead'", ())
        )

    async def deliveries(
        self, limit: int = 100, since: float | None = None
    ) -> list[DeliveryRecord]:
        sql = f"""
            SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE at >= ?
            ORDER BY at DESC, id DESC LIMIT ?
        """
        params = (float("-inf") if since is None else since, limit)
        rows = await self._reader.run(partial(_fetch_all, sql, params))
        return [DeliveryRecord(*row) for row in rows]

    async def stats(self, now: float) -> QueueStats:
        return await self._reader.run(partial(_stats, now))

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109 (the protocol's)
        await asyncio.sleep(timeout)

    async def waiting(self, channel: str, now: float) -> int:
        row = await self._reader.run(partial(_fetch_one, _COUNT_WAITING, (channel, now)))
        return 0 if row is None else int(row[0])

    async def fold(self, channel: str, now: float, folder: Folder) -> Fold | None:
        return await self._writer.run(partial(_fold, channel, now, folder, self._log_size))

    async def get_thread(self, key: str) -> ThreadRef | None:
        sql = "SELECT channel_id, ts FROM threads WHERE key = ?"
        row = await self._reader.run(partial(_fetch_one, sql, (key,)))
        return None if row is None else ThreadRef(channel_id=row[0], ts=row[1])

    async def put_thread(self, key: str, ref: ThreadRef, ttl: float, now: float) -> None:
        await self._writer.run(partial(_put_thread, key, ref, now + ttl, now))

    async def told_recipients(self, job_id: str) -> frozenset[str]:
        sql = "SELECT recipient FROM told WHERE job_id = ?"
        rows = await self._reader.run(partial(_fetch_all, sql, (job_id,)))
        return frozenset(row[0] for row in rows)

    async def add_told_recipient(self, job_id: str, recipient: str, ttl: float, now: float) -> None:
        await self._writer.run(partial(_add_told, job_id, recipient, now + ttl, now))

    async def schedule_timers(self, timers: Sequence[Timer]) -> None:
        if timers:
            await self._writer.run(partial(_schedule_timers, _timer_rows(timers)))

    async def cancel_timers(self, group: str) -> int:
        return await self._writer.run(
            partial(_execute, "DELETE FROM timers WHERE grp = ?", (group,))
        )

    async def claim_timers(self, limit: int, lease: float, now: float) -> list[Timer]:
        rows = await self._writer.run(partial(_claim_timers, limit, now + lease, now))
        return [
            Timer(timer_id, key, group, kind, due_at, json.loads(data))
            for timer_id, key, group, kind, due_at, data in rows
        ]

    async def finish_timer(self, timer_id: str) -> None:
        await self._writer.run(partial(_execute, "DELETE FROM timers WHERE id = ?", (timer_id,)))

    async def next_timer_at(self) -> float | None:
        sql = f"SELECT {_TIMER_DUE} FROM timers ORDER BY {_TIMER_DUE} LIMIT 1"
        row = await self._reader.run(partial(_fetch_one, sql, ()))
        return None if row is None else float(row[0])

    async def open_incident(self, incident: Incident, timers: Sequence[Timer]) -> Incident | None:
        opened, existing = await self._writer.run(
            partial(_open_incident, incident.id, _incident_row(incident), _timer_rows(timers))
        )
        if existing is not None:
            return incident_from_json(existing)
        return incident if opened else None

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
        jobs = [(n.job_id, n.channel, n.model_dump_json(), now, now, None) for n in notifications]
        changed = await self._writer.run(
            partial(
                _change_incident,
                (*_incident_row(incident), incident.id, expected_epoch),
                incident_timer_group(incident.id) if cancel_timers else None,
                _timer_rows(timers),
                jobs,
            )
        )
        if changed:
            self._recent.remember(notifications)
        return changed

    async def get_incident(self, incident_id: str) -> Incident | None:
        sql = "SELECT body FROM incidents WHERE id = ?"
        return await self._one_incident(sql, (incident_id,))

    async def open_incident_for(self, route: str, group_key: str) -> Incident | None:
        return await self._one_incident(_OPEN_FOR, (route, group_key))

    async def open_incident_by_code(self, ack_code: str) -> Incident | None:
        return await self._one_incident(_OPEN_BY_CODE, (ack_code,))

    async def list_incidents(self, *, open_only: bool = False, limit: int = 100) -> list[Incident]:
        where = "WHERE is_open" if open_only else ""
        sql = f"SELECT body FROM incidents {where} ORDER BY is_open DESC, opened_at DESC LIMIT ?"
        rows = await self._reader.run(partial(_fetch_all, sql, (limit,)))
        return [incident_from_json(body) for (body,) in rows]

    async def remember_once(self, key: str, ttl: float, now: float) -> bool:
        return await self._writer.run(partial(_remember_once, key, now + ttl, now))

    async def _one_incident(self, sql: str, params: Sequence[object]) -> Incident | None:
        row = await self._reader.run(partial(_fetch_one, sql, params))
        return None if row is None else incident_from_json(row[0])

    async def get_heartbeat(self, name: str) -> HeartbeatState | None:
        sql = f"SELECT {_HEARTBEAT_COLUMNS} FROM heartbeats WHERE name = ?"
        row = await self._reader.run(partial(_fetch_one, sql, (name,)))
        return None if row is None else HeartbeatState(*row)

    async def put_heartbeat(
        self,
        state: HeartbeatState,
        expected_version: int | None,
        notifications: Sequence[Notification],
        now: float,
    ) -> bool:
        sends = [(n.job_id, n.channel, n.model_dump_json()) for n in notifications]
        written = await self._writer.run(
            partial(_put_heartbeat, state, expected_version, sends, now)
        )
        if written:
            self._recent.remember(notifications)
        return written


def _timer_rows(timers: Sequence[Timer]) -> list[tuple[str, str, str, str, float, str]]:
    return [(t.id, t.key, t.group, t.kind, t.due_at, timer_data_to_json(t.data)) for t in timers]


def _incident_row(incident: Incident) -> tuple[str, str, str, int, int, float, str]:
    """The values of ``_INCIDENT_COLUMNS``."""
    return (
        incident.route,
        incident.group_key,
        incident.ack_code,
        int(incident.is_open),
        incident.epoch,
        incident.opened_at,
        incident_to_json(incident),
    )


# The functions below run on the store's threads, inside its transactions.


def _ping(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'ping'")


def _execute(
    sql: str, params: Sequence[object] | dict[str, object], conn: sqlite3.Connection
) -> int:
    return conn.execute(sql, params).rowcount


def _fetch_one(
    sql: str, params: Sequence[object], conn: sqlite3.Connection
) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
    return row


def _fetch_all(
    sql: str, params: Sequence[object], conn: sqlite3.Connection
) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()


def _enqueue(
    jobs: Sequence[PlannedJob],
    sends: list[tuple[str, str, float | None] | None],
    now: float,
    sweep: bool,
    conn: sqlite3.Connection,
) -> tuple[EnqueueResult, bool]:
    """Each job against its log entry, in order; with ``sweep``, drop expired entries too.

    ``sends`` holds each job's id, JSON and the end of the lease it is stored under (None:
    stored due), or None where it has nothing to send.

    Also says whether the sweep removed a full batch (more expired entries may wait).
    """
    enqueued: list[str] = []
    leased: list[str] = []
    deduplicated = 0
    for job, send in zip(jobs, sends, strict=True):
        row = conn.execute(_READ_ENTRY, (job.channel, job.group)).fetchone()
        entry, expires_at, deferral = _stored_entry(row, now)
        waiting = deferral is not None and bool(
            conn.execute(_REMOVE_WAITING, (deferral.job_id, now)).rowcount
        )
        if waiting:
            # The deferred job told nothing yet: judge against what was told; the latest
            # state replaced it (``notifier.deferral``).
            assert deferral is not None
            entry, expires_at = deferral.told_at(now), deferral.told_expires_at
        if not job.needs_update(entry, now).notify:
            if waiting:
                _restore(conn, job, entry, expires_at)
            if send is not None:
                deduplicated += 1
            continue
        job_id = None if send is None else send[0]
        kept = None if job_id is None else deferral_for(job, entry, expires_at, job_id)
        _write_entry(conn, job, job.entry(now), job.entry_expires_at(now), kept)
        if send is None:
            continue  # the entry is updated, nothing is sent
        job_id, payload, lease_until = send
        due = job.sent_at(now)  # a deferred job's retry budget starts when it falls due
        row = (job_id, job.channel, payload, due, due, lease_until)
        if conn.execute(_INSERT_JOB, row).rowcount == 0:
            deduplicated += 1  # this very job is already stored
            continue
        enqueued.append(job_id)
        if lease_until is not None:
            leased.append(job_id)
    swept = conn.execute(_SWEEP_LOG, (now,)).rowcount if sweep else 0
    result = EnqueueResult(tuple(enqueued), deduplicated, tuple(leased))
    return result, swept >= _SWEEP_BATCH


def _stored_entry(
    row: tuple[Any, ...] | None, now: float
) -> tuple[LogEntry | None, float, Deferral | None]:
    """A ``_READ_ENTRY`` row as (the entry if not expired, its expiry, its deferral)."""
    if row is None:
        return None, 0.0, None
    firing, resolved, at, expires_at, deferred_job, told = row
    entry = _entry(firing, resolved, at) if expires_at > now else None
    if deferred_job is None:
        return entry, expires_at, None
    told_entry, told_expires_at = _told_from_json(told)
    return entry, expires_at, Deferral(deferred_job, told_entry, told_expires_at)


def _write_entry(
    conn: sqlite3.Connection,
    job: PlannedJob,
    entry: LogEntry,
    expires_at: float,
    deferral: Deferral | None,
) -> None:
    conn.execute(
        _WRITE_ENTRY,
        (
            job.channel,
            job.group,
            json.dumps(sorted(entry.firing)),
            json.dumps(sorted(entry.resolved)),
            entry.at,
            expires_at,
            None if deferral is None else deferral.job_id,
            None if deferral is None else _told_json(deferral),
        ),
    )


def _restore(
    conn: sqlite3.Connection, job: PlannedJob, told: LogEntry | None, expires_at: float
) -> None:
    """Put back the entry a removed deferred job had replaced (none: delete it)."""
    if told is None:
        sql = "DELETE FROM notification_log WHERE channel = ? AND group_id = ?"
        conn.execute(sql, (job.channel, job.group))
    else:
        _write_entry(conn, job, told, expires_at, None)


def _told_json(deferral: Deferral) -> str:
    told = deferral.told
    if told is None:
        return "null"
    return json.dumps(
        {
            "firing": sorted(told.firing),
            "resolved": sorted(told.resolved),
            "at": told.at,
            "expires_at": deferral.told_expires_at,
        }
    )


def _told_from_json(text: str) -> tuple[LogEntry | None, float]:
    told = json.loads(text)
    if told is None:
        return None, 0.0
    entry = LogEntry(frozenset(told["firing"]), frozenset(told["resolved"]), told["at"])
    return entry, float(told["expires_at"])


def _entry(firing: str, resolved: str, at: float) -> LogEntry:
    return LogEntry(frozenset(json.loads(firing)), frozenset(json.loads(resolved)), at)


def _claimable(skipping: int) -> str:
    """The claim query, leaving out the jobs of ``skipping`` channels (one ``?`` each).

    The channel is tested on the ``jobs_due`` index entries, oldest first: skipping a
    backlog costs one index entry per skipped job, not a row read each.
    """
    skip = f" AND channel NOT IN ({', '.join('?' * skipping)})" if skipping else ""
    return f"""
    SELECT seq, channel, id, payload, attempts, enqueued_at FROM jobs
    WHERE state = 'queued' AND {_DUE} <= ?{skip}
    ORDER BY {_DUE}, seq LIMIT ?
"""


def _claim(
    limit: int,
    lease_until: float,
    now: float,
    channel_limits: tuple[tuple[str, int], ...],
    conn: sqlite3.Connection,
) -> list[tuple[str, str, int, float]]:
    """Lease the oldest due jobs, at most ``n`` of a channel given as ``(channel, n)``;
    atomic, as every op runs in a transaction.

    Each round asks for the oldest due jobs of the channels with room left, takes them in
    order while their channel has room, and leases those (so the next round no longer
    sees them). A round that passed some over filled a channel's share: the next one
    leaves that channel out, so there are at most one round more than channels capped,
    and one round when no share fills. A SELECT then an UPDATE rather than ``UPDATE ...
    RETURNING``: RETURNING yields rows in no defined order and only their new values, and
    oldest-first is the contract. Both walk the ``jobs_due`` index.
    """
    room = dict(channel_limits)  # a copy: the writer may run an op twice
    taken: list[tuple[str, str, int, float]] = []
    while len(taken) < limit:
        skip = tuple(channel for channel, left in room.items() if left <= 0)
        wanted = limit - len(taken)
        rows = conn.execute(_claimable(len(skip)), (now, *skip, wanted)).fetchall()
        leased: list[tuple[float, int]] = []
        for seq, channel, job_id, payload, attempts, enqueued_at in rows:
            left = room.get(channel)
            if left is not None:
                if left <= 0:
                    continue  # its channel's share is full; it stays due
                room[channel] = left - 1
            leased.append((lease_until, seq))
            taken.append((job_id, payload, attempts, enqueued_at))
        conn.executemany("UPDATE jobs SET lease_until = ? WHERE seq = ?", leased)
        if len(rows) < wanted or len(leased) == len(rows):
            break  # no more due jobs, or all of them taken
    return taken


def _fold(
    channel: str, now: float, folder: Folder, log_size: int, conn: sqlite3.Connection
) -> Fold | None:
    """Storm fold in the writer's transaction (the folder is pure, so running it twice is safe)."""
    rows = conn.execute(
        f"SELECT payload FROM jobs WHERE {_WAITING} ORDER BY seq", (channel, now)
    ).fetchall()
    fold = folder([Notification.model_validate_json(payload) for (payload,) in rows])
    if fold is None:
        return None
    conn.executemany(
        "DELETE FROM jobs WHERE id = ? AND state = 'queued'", [(i,) for i in fold.folded]
    )
    for record in fold.records:
        _log(conn, record, log_size)
    digest = fold.digest
    conn.execute(
        _INSERT_JOB,
        (digest.job_id, channel, digest.model_dump_json(), fold.not_before, now, None),
    )
    return fold


def _complete(records: list[DeliveryRecord], log_size: int, conn: sqlite3.Connection) -> None:
    conn.executemany(
        "DELETE FROM jobs WHERE id = ? AND state = 'queued'", [(r.job_id,) for r in records]
    )
    _log_many(conn, records, log_size)


def _finish(
    sql: str,
    params: dict[str, object],
    record: DeliveryRecord,
    log_size: int,
    conn: sqlite3.Connection,
) -> None:
    conn.execute(sql, params)
    _log(conn, record, log_size)


def _attempt_params(record: DeliveryRecord) -> dict[str, object]:
    return {
        "id": record.job_id,
        "at": record.at,
        "reason": record.reason or "other",
        "error": record.error,
    }


def _log(conn: sqlite3.Connection, record: DeliveryRecord, log_size: int) -> None:
    """Append ``record`` and drop what falls out of the newest ``log_size`` rows."""
    _log_many(conn, [record], log_size)


def _log_many(conn: sqlite3.Connection, records: list[DeliveryRecord], log_size: int) -> None:
    """Append ``records`` in order and drop what falls out of the newest ``log_size`` rows."""
    conn.executemany(
        _LOG,
        [
            (
                r.job_id,
                r.channel,
                r.channel_type,
                r.outcome,
                r.reason,
                r.error,
                r.latency,
                r.at,
                r.received_at,
                r.severity,
                r.status,
                r.alerts,
            )
            for r in records
        ],
    )
    (row_id,) = conn.execute("SELECT last_insert_rowid()").fetchone()
    # A rowid range delete: one index seek, and in steady state a row per record.
    conn.execute("DELETE FROM deliveries WHERE id <= ?", (row_id - log_size,))


def _stats(now: float, conn: sqlite3.Connection) -> QueueStats:
    def scalar(sql: str, *params: object) -> Any:
        return conn.execute(sql, params).fetchone()[0]

    queued = "state = 'queued'"
    total = scalar(f"SELECT count(*) FROM jobs WHERE {queued}")
    in_flight = scalar(
        f"SELECT count(*) FROM jobs WHERE {queued} AND {_DUE} > ? AND lease_until IS NOT NULL",
        now,
    )
    due = scalar(f"SELECT count(*) FROM jobs WHERE {queued} AND {_DUE} <= ?", now)
    oldest = scalar(f"SELECT min({_DUE}) FROM jobs WHERE {queued}")
    return QueueStats(
        queued=total - in_flight,
        in_flight=in_flight,
        due=due,
        oldest_due_age=now - oldest if due else 0.0,
        dead_letters=scalar("SELECT count(*) FROM jobs WHERE state = 'dead'"),
    )


def _put_thread(
    key: str, ref: ThreadRef, expires_at: float, now: float, conn: sqlite3.Connection
) -> None:
    conn.execute(
        f"""DELETE FROM threads WHERE key IN
        (SELECT key FROM threads WHERE expires_at <= ? LIMIT {_SWEEP_BATCH})""",
        (now,),
    )
    conn.execute(
        """INSERT INTO threads (key, channel_id, ts, expires_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (key) DO UPDATE SET
            channel_id = excluded.channel_id, ts = excluded.ts, expires_at = excluded.expires_at""",
        (key, ref.channel_id, ref.ts, expires_at),
    )


def _add_told(
    job_id: str, recipient: str, expires_at: float, now: float, conn: sqlite3.Connection
) -> None:
    conn.execute(
        f"""DELETE FROM told WHERE (job_id, recipient) IN
        (SELECT job_id, recipient FROM told WHERE expires_at <= ? LIMIT {_SWEEP_BATCH})""",
        (now,),
    )
    conn.execute(
        """INSERT INTO told (job_id, recipient, expires_at) VALUES (?, ?, ?)
        ON CONFLICT (job_id, recipient) DO UPDATE SET expires_at = excluded.expires_at""",
        (job_id, recipient, expires_at),
    )


def _schedule_timers(rows: Sequence[tuple[object, ...]], conn: sqlite3.Connection) -> None:
    conn.executemany(_SCHEDULE_TIMER, rows)


def _claim_timers(
    limit: int, lease_until: float, now: float, conn: sqlite3.Connection
) -> list[tuple[Any, ...]]:
    """Lease the earliest due timers (a range scan of ``timers_due``)."""
    rows = conn.execute(_CLAIMABLE_TIMERS, (now, limit)).fetchall()
    conn.executemany(
        "UPDATE timers SET lease_until = ? WHERE id = ?", [(lease_until, row[0]) for row in rows]
    )
    return rows


def _open_incident(
    incident_id: str,
    row: tuple[object, ...],
    timers: Sequence[tuple[object, ...]],
    conn: sqlite3.Connection,
) -> tuple[bool, str | None]:
    """(stored, the JSON of the open incident of the same group if there is one)."""
    route, group_key, ack_code = row[:3]
    existing = conn.execute(_OPEN_FOR, (route, group_key)).fetchone()
    if existing is not None:
        return False, existing[0]
    if conn.execute(_OPEN_BY_CODE, (ack_code,)).fetchone() is not None:
        return False, None
    conn.execute(
        f"INSERT INTO incidents (id, {_INCIDENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (incident_id, *row),
    )
    conn.executemany(_SCHEDULE_TIMER, timers)
    return True, None


def _change_incident(
    row: tuple[object, ...],
    cancel_group: str | None,
    timers: Sequence[tuple[object, ...]],
    jobs: Sequence[tuple[object, ...]],
    conn: sqlite3.Connection,
) -> bool:
    """Compare-and-set on the epoch; only when it matched, the timers and jobs too."""
    if conn.execute(_CHANGE_INCIDENT, row).rowcount == 0:
        return False
    if cancel_group is not None:
        conn.execute("DELETE FROM timers WHERE grp = ?", (cancel_group,))
    conn.executemany(_SCHEDULE_TIMER, timers)
    conn.executemany(_INSERT_JOB, jobs)
    return True


def _remember_once(key: str, expires_at: float, now: float, conn: sqlite3.Connection) -> bool:
    conn.execute(
        f"""DELETE FROM seen WHERE key IN
        (SELECT key FROM seen WHERE expires_at <= ? LIMIT {_SWEEP_BATCH})""",
        (now,),
    )
    inserted = conn.execute(
        """INSERT INTO seen (key, expires_at) VALUES (?, ?)
        ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
        WHERE seen.expires_at <= ?""",
        (key, expires_at, now),
    )
    return inserted.rowcount > 0


def _put_heartbeat(
    state: HeartbeatState,
    expected_version: int | None,
    sends: list[tuple[str, str, str]],
    now: float,
    conn: sqlite3.Connection,
) -> bool:
    """Compare-and-set on the heartbeat's version, with its notifications' jobs."""
    row = conn.execute("SELECT version FROM heartbeats WHERE name = ?", (state.name,)).fetchone()
    if (None if row is None else row[0]) != expected_version:
        return False
    conn.execute(
        f"INSERT OR REPLACE INTO heartbeats ({_HEARTBEAT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (
            state.name,
            state.version,
            state.armed_at,
            state.due_at,
            state.last_seen,
            state.missed_since,
        ),
    )
    for job_id, channel, payload in sends:
        conn.execute(_INSERT_JOB, (job_id, channel, payload, now, now, None))
    return True
