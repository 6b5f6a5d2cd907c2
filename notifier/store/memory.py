"""``MemoryStore``: the ``Store`` protocol in plain dicts and a heap, for tests and demos.

It keeps the same semantics as the SQLite and Redis stores (the contract suite in
``tests/store_contract.py`` runs against all three) but nothing survives the process.
Every method body runs without awaiting, so each call is atomic on the event loop.
It must not be used where an accepted alert has to survive a restart.

The queue is a dict of jobs plus a heap of ``(due_at, seq, id)`` entries. A job's
``due_at`` is its ``not_before``, or while it is leased the end of its lease. A change
pushes a fresh entry instead of editing the heap; stale entries (whose job is gone or
whose ``due_at`` moved) are skipped when they surface.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from notifier.dedup import LogEntry, PlannedJob
from notifier.deferral import Deferral, deferral_for
from notifier.heartbeats.state import HeartbeatState
from notifier.incidents.machine import Incident
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


@dataclass(slots=True)
class _Job:
    notification: Notification
    seq: int  # enqueue order, breaks ties between jobs due at the same time
    enqueued_at: float
    not_before: float
    lease_until: float | None = None
    attempts: int = 0
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None

    @property
    def due_at(self) -> float:
        return self.not_before if self.lease_until is None else self.lease_until

    def count_attempt(self, at: float) -> None:
        self.attempts += 1
        if self.first_attempt_at is None:
            self.first_attempt_at = at
        self.last_attempt_at = at


@dataclass(slots=True)
class _Dead:
    job: _Job
    reason: str
    error: str


class MemoryStore:
    """A ``Store`` that lives in this process only."""

    def __init__(self, *, delivery_log_size: int = 100_000) -> None:
        self._jobs: dict[str, _Job] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._dead: dict[str, _Dead] = {}
        # (channel, group) -> (the notification log entry, when it expires)
        self._entries: dict[tuple[str, str], tuple[LogEntry, float]] = {}
        # (channel, group) -> its deferred job and what the channel was told before it
        self._deferrals: dict[tuple[str, str], Deferral] = {}
        self._threads: dict[str, tuple[ThreadRef, float]] = {}  # key -> (ref, expires_at)
        self._told: dict[str, tuple[set[str], float]] = {}  # job id -> (recipients, expires_at)
        self._log: deque[DeliveryRecord] = deque(maxlen=delivery_log_size)
        self._timers: dict[str, Timer] = {}  # key -> timer
        self._timer_leases: dict[str, float] = {}  # timer id -> lease end
        self._incidents: dict[str, Incident] = {}
        self._seen: dict[str, float] = {}  # remember_once key -> expires_at
        self._heartbeats: dict[str, HeartbeatState] = {}
        self._seq = 0
        self._sweep_entries_at = 1024  # sweep expired entries when there are this many

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def enqueue(
        self, jobs: Sequence[PlannedJob], now: float, handoff: HandOff | None = None
    ) -> EnqueueResult:
        enqueued: list[str] = []
        leased: list[str] = []
        deduplicated = 0
        for planned in jobs:
            notification = planned.notification
            key = (planned.channel, planned.group)
            kept = self._entries.get(key)
            entry = kept[0] if kept is not None and kept[1] > now else None
            basis, basis_expiry = entry, kept[1] if kept is not None else 0.0
            waiting = self._waiting_deferral(key, now)
            if waiting is not None:
                # The waiting job told nothing yet: judge against what was told, and let
                # the latest state replace it (``notifier.deferral``).
                basis, basis_expiry = waiting.told_at(now), waiting.told_expires_at
                del self._jobs[waiting.job_id]
            if not planned.needs_update(basis, now).notify:
                if waiting is not None:
                    self._restore(key, basis, basis_expiry)
                if notification is not None:
                    deduplicated += 1
                continue
            self._entries[key] = (planned.entry(now), planned.entry_expires_at(now))
            if notification is None:
                continue  # the entry is updated, nothing is sent
            job_id = notification.job_id
            if job_id in self._jobs or job_id in self._dead:
                deduplicated += 1  # this very job is already stored
                continue
            due = planned.sent_at(now)
            self._seq += 1
            # A deferred job's retry budget (``retry.max_age``) starts when it falls due.
            job = self._jobs[job_id] = _Job(notification, self._seq, due, not_before=due)
            if handoff is not None and handoff.takes(planned):
                job.lease_until = handoff.lease_until
                leased.append(job_id)
            self._push(job)
            deferral = deferral_for(planned, basis, basis_expiry, job_id)
            if deferral is not None:
                self._deferrals[key] = deferral
            enqueued.append(job_id)
        self._sweep_entries(now)
        return EnqueueResult(tuple(enqueued), deduplicated, tuple(leased))

    def _waiting_deferral(self, key: tuple[str, str], now: float) -> Deferral | None:
        """The deferral of ``key`` if its job still waits unattempted; a stale one is dropped."""
        deferral = self._deferrals.pop(key, None)
        if deferral is None:
            return None
        job = self._jobs.get(deferral.job_id)
        leased = job is not None and job.lease_until is not None and job.lease_until > now
        if job is None or job.attempts or leased:
            return None
        return deferral

    def _restore(self, key: tuple[str, str], told: LogEntry | None, expires_at: float) -> None:
        if told is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = (told, expires_at)

    async def claim(
        self,
        limit: int,
        lease: float,
        now: float,
        channel_limits: Mapping[str, int] | None = None,
    ) -> list[ClaimedJob]:
        room = dict(channel_limits or {})  # what each capped channel may still take
        claimed: list[ClaimedJob] = []
        skipped: list[tuple[float, int, str]] = []  # heap entries to put back as they were
        while self._heap and len(claimed) < limit:
            entry = due_at, seq, job_id = self._heap[0]
            job = self._jobs.get(job_id)
            if job is None or job.due_at != due_at or job.seq != seq:
                heapq.heappop(self._heap)
                continue
            if due_at > now:
                break
            heapq.heappop(self._heap)
            channel = job.notification.channel
            left = room.get(channel)
            if left is not None:
                if left <= 0:
                    skipped.append(entry)
                    continue
                room[channel] = left - 1
            job.lease_until = now + lease
            self._push(job)
            claimed.append(ClaimedJob(job.notification, job.attempts, job.enqueued_at))
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        return claimed

    async def complete(self, record: DeliveryRecord) -> None:
        self._jobs.pop(record.job_id, None)
        self._log.append(record)

    async def reschedule(self, record: DeliveryRecord, not_before: float) -> None:
        job = self._jobs.get(record.job_id)
        if job is not None:
            job.count_attempt(record.at)
            job.lease_until = None
            job.not_before = not_before
            self._push(job)
        self._log.append(record)

    async def dead_letter(self, record: DeliveryRecord) -> None:
        job = self._jobs.pop(record.job_id, None)
        if job is not None:
            job.count_attempt(record.at)
            job.lease_until = None
            self._dead[record.job_id] = _Dead(job, record.reason or "other", record.error)
        self._log.append(record)

    async def release(self, job_id: str, not_before: float) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.lease_until = None
            job.not_before = not_before
            self._push(job)

    async def next_due_at(self) -> float | None:
        while self._heap:
            due_at, seq, job_id = self._heap[0]
            job = self._jobs.get(job_id)
            if job is not None and job.due_at == due_at and job.seq == seq:
                return due_at
            heapq.heappop(self._heap)
        return None

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        newest = sorted(
            self._dead.values(),
            key=lambda d: (d.job.last_attempt_at or 0.0, d.job.seq),
            reverse=True,
        )
        return [_as_dead_letter(dead) for dead in newest[:limit]]

    async def replay(self, job_id: str, now: float) -> bool:
        dead = self._dead.pop(job_id, None)
        if dead is None:
            return False
        job = _Job(dead.job.notification, dead.job.seq, enqueued_at=now, not_before=now)
        self._jobs[job_id] = job
        self._push(job)
        return True

    async def replay_all(self, now: float) -> int:
        oldest_first = sorted(self._dead, key=lambda job_id: self._dead[job_id].job.seq)
        for job_id in oldest_first:
            await self.replay(job_id, now)
        return len(oldest_first)

    async def purge_dead_letters(self) -> int:
        count = len(self._dead)
        self._dead.clear()
        return count

    async def deliveries(
        self, limit: int = 100, since: float | None = None
    ) -> list[DeliveryRecord]:
        # Sorting is stable: records logged later come first among equal ``at``.
        newest = sorted(reversed(self._log), key=lambda r: r.at, reverse=True)
        return [r for r in newest if since is None or r.at >= since][:limit]

    async def stats(self, now: float) -> QueueStats:
        in_flight = sum(
            1 for j in self._jobs.values() if j.lease_until is not None and j.lease_until > now
        )
        due_times = [j.due_at for j in self._jobs.values() if j.due_at <= now]
        return QueueStats(
            queued=len(self._jobs) - in_flight,
            in_flight=in_flight,
            due=len(due_times),
            oldest_due_age=now - min(due_times) if due_times else 0.0,
            dead_letters=len(self._dead),
        )

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109 (the protocol's)
        await asyncio.sleep(timeout)

    async def waiting(self, channel: str, now: float) -> int:
        return len(self._waiting(channel, now))

    async def fold(self, channel: str, now: float, folder: Folder) -> Fold | None:
        waiting = self._waiting(channel, now)
        fold = folder([job.notification for job in waiting])
        if fold is None:
            return None
        for job_id in fold.folded:
            del self._jobs[job_id]
        self._log.extend(fold.records)
        digest = fold.digest
        self._seq += 1
        self._jobs[digest.job_id] = _Job(digest, self._seq, now, not_before=fold.not_before)
        self._push(self._jobs[digest.job_id])
        return fold

    def _waiting(self, channel: str, now: float) -> list[_Job]:
        """The channel's jobs not leased at ``now``, oldest first."""
        jobs = [
            job
            for job in self._jobs.values()
            if job.notification.channel == channel
            and (job.lease_until is None or job.lease_until <= now)
        ]
        return sorted(jobs, key=lambda job: job.seq)

    async def get_thread(self, key: str) -> ThreadRef | None:
        entry = self._threads.get(key)
        return entry[0] if entry else None

    async def put_thread(self, key: str, ref: ThreadRef, ttl: float, now: float) -> None:
        for expired in [k for k, (_, expires_at) in self._threads.items() if expires_at <= now]:
            del self._threads[expired]
        self._threads[key] = (ref, now + ttl)

    async def told_recipients(self, job_id: str) -> frozenset[str]:
        entry = self._told.get(job_id)
        return frozenset(entry[0]) if entry else frozenset()

    async def add_told_recipient(self, job_id: str, recipient: str, ttl: float, now: float) -> None:
        for expired in [k for k, (_, expires_at) in self._told.items() if expires_at <= now]:
            del self._told[expired]
        recipients = self._told[job_id][0] if job_id in self._told else set()
        recipients.add(recipient)
        self._told[job_id] = (recipients, now + ttl)

    async def schedule_timers(self, timers: Sequence[Timer]) -> None:
        for timer in timers:
            replaced = self._timers.get(timer.key)
            if replaced is not None:
                self._timer_leases.pop(replaced.id, None)
            self._timers[timer.key] = timer

    async def cancel_timers(self, group: str) -> int:
        cancelled = [key for key, timer in self._timers.items() if timer.group == group]
        for key in cancelled:
            self._timer_leases.pop(self._timers.pop(key).id, None)
        return len(cancelled)

    async def claim_timers(self, limit: int, lease: float, now: float) -> list[Timer]:
        due = sorted(
            (self._timer_due_at(t), t.id, t)
            for t in self._timers.values()
            if self._timer_due_at(t) <= now
        )
        claimed = [timer for _, _, timer in due[:limit]]
        for timer in claimed:
            self._timer_leases[timer.id] = now + lease
        return claimed

    async def finish_timer(self, timer_id: str) -> None:
        self._timer_leases.pop(timer_id, None)
        for key, timer in list(self._timers.items()):
            if timer.id == timer_id:
                del self._timers[key]

    async def next_timer_at(self) -> float | None:
        return min((self._timer_due_at(t) for t in self._timers.values()), default=None)

    def _timer_due_at(self, timer: Timer) -> float:
        return self._timer_leases.get(timer.id, timer.due_at)

    async def open_incident(self, incident: Incident, timers: Sequence[Timer]) -> Incident | None:
        existing = await self.open_incident_for(incident.route, incident.group_key)
        if existing is not None:
            return existing
        if await self.open_incident_by_code(incident.ack_code) is not None:
            return None
        self._incidents[incident.id] = incident
        await self.schedule_timers(timers)
        return incident

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
        stored = self._incidents.get(incident.id)
        if stored is None or stored.epoch != expected_epoch:
            return False
        self._incidents[incident.id] = incident
        if cancel_timers:
            await self.cancel_timers(incident_timer_group(incident.id))
        await self.schedule_timers(timers)
        for notification in notifications:
            self._seq += 1
            job = _Job(notification, self._seq, now, not_before=now)
            self._jobs[notification.job_id] = job
            self._push(job)
        return True

    async def get_incident(self, incident_id: str) -> Incident | None:
        return self._incidents.get(incident_id)

    async def open_incident_for(self, route: str, group_key: str) -> Incident | None:
        for incident in self._incidents.values():
            if incident.is_open and (incident.route, incident.group_key) == (route, group_key):
                return incident
        return None

    async def open_incident_by_code(self, ack_code: str) -> Incident | None:
        for incident in self._incidents.values():
            if incident.is_open and incident.ack_code == ack_code:
                return incident
        return None

    async def list_incidents(self, *, open_only: bool = False, limit: int = 100) -> list[Incident]:
        chosen = [i for i in self._incidents.values() if i.is_open or not open_only]
        chosen.sort(key=lambda i: (not i.is_open, -i.opened_at))
        return chosen[:limit]

    async def remember_once(self, key: str, ttl: float, now: float) -> bool:
        if self._seen.get(key, 0.0) > now:
            return False
        self._seen = {k: t for k, t in self._seen.items() if t > now}
        self._seen[key] = now + ttl
        return True

    async def get_heartbeat(self, name: str) -> HeartbeatState | None:
        return self._heartbeats.get(name)

    async def put_heartbeat(
        self,
        state: HeartbeatState,
        expected_version: int | None,
        notifications: Sequence[Notification],
        now: float,
    ) -> bool:
        stored = self._heartbeats.get(state.name)
        if (None if stored is None else stored.version) != expected_version:
            return False
        self._heartbeats[state.name] = state
        for notification in notifications:
            if notification.job_id in self._jobs or notification.job_id in self._dead:
                continue
            self._seq += 1
            job = _Job(notification, self._seq, now, not_before=now)
            self._jobs[notification.job_id] = job
            self._push(job)
        return True

    def _push(self, job: _Job) -> None:
        heapq.heappush(self._heap, (job.due_at, job.seq, job.notification.job_id))

    def _sweep_entries(self, now: float) -> None:
        """Drop expired entries, each time the entry count doubles (amortised O(1) per enqueue)."""
        if len(self._entries) >= self._sweep_entries_at:
            self._entries = {k: kept for k, kept in self._entries.items() if kept[1] > now}
            self._deferrals = {k: d for k, d in self._deferrals.items() if d.job_id in self._jobs}
            self._sweep_entries_at = max(1024, 2 * len(self._entries))


def _as_dead_letter(dead: _Dead) -> DeadLetter:
    job = dead.job
    return DeadLetter(
        id=job.notification.job_id,
        channel=job.notification.channel,
        reason=dead.reason,
        error=dead.error,
        attempts=job.attempts,
        first_attempt_at=job.first_attempt_at,
        last_attempt_at=job.last_attempt_at,
        notification=job.notification,
    )
