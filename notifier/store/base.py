"""The ``Store`` protocol: queue, notification log, dead letters, delivery log, Slack threads,
and the recipients a job's message already reached.

Every implementation (memory, SQLite, Redis) passes one contract suite
(``tests/store_contract.py``). Semantics every implementation keeps:

- ``enqueue`` is atomic per call and takes the jobs in order: for each, it reads the
  notification log entry of its (channel, group) (an expired one counts as absent) and
  asks ``PlannedJob.needs_update``. When that notifies, the entry is replaced (kept for
  ``PlannedJob.entry_ttl``) together with storing the job, if it has a notification;
  otherwise a job with a notification is dropped and counted as deduplicated. When the
  call returns, the stored jobs and entries are durable (for SQLite: committed;
  concurrent callers share one transaction).
- A job with ``not_before`` (deferred by a muted route, DESIGN §9) falls due then, and
  its ``enqueued_at`` is then too; while it waits unattempted, the next job of its
  (channel, group) is judged against what the channel was told before it and replaces
  it (``notifier.deferral``).
- ``enqueue`` with a ``HandOff`` stores each job it enqueues of a channel the hand-off
  names, and not deferred (``not_before`` None), already leased until
  ``HandOff.lease_until`` (as a claim at ``now`` would leave it: attempts 0,
  ``enqueued_at`` now) and lists it in ``EnqueueResult.leased``: the caller delivers it
  without a claim (the dispatcher's hand-off). If the caller dies, the lease runs out
  and the job is claimed as any other.
- ``claim`` hands out due jobs (``not_before <= now``), oldest first, each with a lease
  until ``now + lease``; a job whose lease expired is due again. Delivery is therefore
  at-least-once: a worker that dies mid-send leaves the job to be sent again.
  ``channel_limits`` gives a channel its own share of a claim (the room its sends have
  left): once a claim holds that many of its jobs, its other jobs are passed over, left
  due as they were, and the claim goes on with the other channels' jobs (0 passes over
  all of a channel's jobs). A channel not named is bounded by ``limit`` alone. The Redis
  store looks past a bounded number of passed-over jobs per claim, so there a job queued
  behind a large backlog of a channel at its share may wait for a later claim.
- ``complete`` / ``reschedule`` / ``dead_letter`` end an attempt and append its record
  to the bounded delivery log; ``release`` hands a claimed job back without counting
  an attempt (circuit open, rate limit, shutdown).
- ``fold`` replaces a channel's waiting jobs by one digest job atomically: every folded
  job is either still queued (the fold did not happen) or gone with its ``digested``
  record in the delivery log and the digest stored.
- Times are unix seconds (floats), always passed in: no implementation reads a clock.
- A store that cannot be reached raises ``StoreUnavailable``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from notifier.dedup import PlannedJob
from notifier.heartbeats.state import HeartbeatState
from notifier.incidents.machine import Incident
from notifier.notification import Notification

# ``digested``: folded into a storm digest (DESIGN §10), told through the digest, not sent alone.
Outcome = Literal["delivered", "retry", "dead", "digested"]


class StoreUnavailable(Exception):
    """The store cannot be reached or cannot write; the caller answers 503."""


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    enqueued: tuple[str, ...]  # job ids
    deduplicated: int
    leased: tuple[str, ...] = ()  # of ``enqueued``: stored leased to the caller (``HandOff``)


@dataclass(frozen=True, slots=True)
class HandOff:
    """The channels whose fresh jobs an enqueue stores leased to the caller, until when.

    The dispatcher reserves room for them before the enqueue and runs the leased jobs
    itself, saving each a claim (``Dispatcher.enqueue``).
    """

    channels: frozenset[str]
    lease_until: float

    def takes(self, job: PlannedJob) -> bool:
        """Whether ``job``, once stored, is stored leased: it sends now on a channel named."""
        return job.not_before is None and job.channel in self.channels


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    notification: Notification
    attempts: int  # attempts made before this claim
    enqueued_at: float

    @property
    def id(self) -> str:
        return self.notification.job_id


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery attempt, as the delivery log keeps it."""

    job_id: str
    channel: str
    channel_type: str
    outcome: Outcome
    reason: str | None  # FailureReason value, None when delivered
    error: str  # safe text (never a secret); the receipt detail when delivered
    latency: float  # seconds this attempt took
    at: float  # when the attempt ended
    received_at: float  # when the payload was accepted (end-to-end latency = at - received_at)
    severity: str
    status: str  # firing | resolved
    alerts: int


@dataclass(frozen=True, slots=True)
class Fold:
    """What one storm fold writes: remove ``folded`` ids, log ``records``, enqueue ``digest``."""

    folded: tuple[str, ...]
    records: tuple[DeliveryRecord, ...]
    digest: Notification
    not_before: float


# Given a channel's waiting notifications (oldest first), the fold to write, or None.
Folder = Callable[[Sequence[Notification]], Fold | None]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str  # the job id
    channel: str
    reason: str
    error: str
    attempts: int
    first_attempt_at: float | None
    last_attempt_at: float | None
    notification: Notification


@dataclass(frozen=True, slots=True)
class QueueStats:
    queued: int  # waiting jobs, due or scheduled, not leased
    in_flight: int  # leased
    due: int
    oldest_due_age: float  # seconds; 0 when nothing is due
    dead_letters: int


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """Where a group's Slack message lives, so a resolution can update it."""

    channel_id: str
    ts: str


class ThreadRefs(Protocol):
    """The part of the store a Slack channel needs (kept apart so channels don't see the queue)."""

    async def get_thread(self, key: str) -> ThreadRef | None: ...

    async def put_thread(self, key: str, ref: ThreadRef, ttl: float, now: float) -> None: ...


class ToldRecipients(Protocol):
    """Which recipients of a job already got its message, so a retry sends to the others only.

    Kept in the store because the retry may run in another process. A recipient is an
    opaque token chosen by the channel (the SMS channel keeps a hash, never the number).
    """

    async def told_recipients(self, job_id: str) -> frozenset[str]: ...

    async def add_told_recipient(
        self, job_id: str, recipient: str, ttl: float, now: float
    ) -> None: ...


class ChannelState(ThreadRefs, ToldRecipients, Protocol):
    """The part of the store channels may use."""


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable wake-up: once ``due_at`` has passed, the owner of ``kind`` is handed ``data``.

    Scheduling a timer whose ``key`` is already scheduled replaces it (a heartbeat renewed,
    a deferred send moved); ``group`` names a set cancelled together (an incident's steps).
    ``id`` is unique per scheduling, so finishing a timer never removes its replacement.
    """

    id: str
    key: str
    group: str
    kind: str  # "incident.step", "incident.ack_timeout", "heartbeat", ...
    due_at: float
    data: Mapping[str, str | int | float | bool | None]


class Timers(Protocol):
    """Scheduled wake-ups with a not-before time, claimed with a lease like jobs.

    A claimed timer stays until ``finish_timer``; if its lease runs out first (the
    process died), it is due again, so a timer fires at least once.
    """

    async def schedule_timers(self, timers: Sequence[Timer]) -> None: ...

    async def cancel_timers(self, group: str) -> int:
        """Remove every timer of ``group``, leased or not; how many were removed."""
        ...

    async def claim_timers(self, limit: int, lease: float, now: float) -> list[Timer]:
        """Up to ``limit`` timers due at ``now`` (or whose lease expired), earliest first."""
        ...

    async def finish_timer(self, timer_id: str) -> None:
        """The timer was handled: remove it (nothing, if it was replaced or cancelled)."""
        ...

    async def next_timer_at(self) -> float | None:
        """When the earliest timer (or timer lease) falls due."""
        ...


class Incidents(Protocol):
    """Incidents (DESIGN §8), written with compare-and-set on their epoch.

    A change and its consequences are one atomic write: the incident, cancelling its
    timers (group ``incident_timer_group(id)``), scheduling new ones, and enqueueing the
    notifications it sends. So a crash leaves either the old incident with its old timers
    or the new one with everything it started.
    """

    async def open_incident(self, incident: Incident, timers: Sequence[Timer]) -> Incident | None:
        """Store ``incident`` and ``timers`` unless an open incident of the same route and
        group exists: then return that one, storing nothing. None when ``incident.ack_code``
        is already the code of another open incident (choose another and try again)."""
        ...

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
        """Write ``incident`` if the stored one is at ``expected_epoch``; in the same step
        cancel its timers (when asked), schedule ``timers``, and enqueue ``notifications``
        as jobs due at ``now``. False, changing nothing, when the epoch moved on."""
        ...

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def open_incident_for(self, route: str, group_key: str) -> Incident | None: ...

    async def open_incident_by_code(self, ack_code: str) -> Incident | None: ...

    async def list_incidents(self, *, open_only: bool = False, limit: int = 100) -> list[Incident]:
        """Open incidents first, then the others; newest opened first within each."""
        ...

    async def remember_once(self, key: str, ttl: float, now: float) -> bool:
        """True the first time ``key`` is seen within ``ttl`` (a Twilio ``MessageSid``)."""
        ...


class HeartbeatStates(Protocol):
    """Heartbeat states (DESIGN §11), written with compare-and-set on their version.

    A change and the notifications it sends are one atomic write, so a heartbeat marked
    missed (or back) by two replicas at once, or by a timer handled twice, is told once.
    The heartbeat's timer is not part of that write: it only wakes the notifier, which
    checks the state and arms the timer again from it (``notifier.heartbeats.watch``).
    """

    async def get_heartbeat(self, name: str) -> HeartbeatState | None: ...

    async def put_heartbeat(
        self,
        state: HeartbeatState,
        expected_version: int | None,
        notifications: Sequence[Notification],
        now: float,
    ) -> bool:
        """Write ``state`` if the stored one is at ``expected_version`` (None: if none is
        stored); in the same step enqueue ``notifications`` as jobs due at ``now`` (a job id
        already stored stays as it is). False, changing nothing, otherwise."""
        ...


def incident_timer_group(incident_id: str) -> str:
    """The timer group of one incident's steps, ack timeout and silence end."""
    return f"incident:{incident_id}"


class Store(ChannelState, Timers, Incidents, HeartbeatStates, Protocol):
    async def open(self) -> None:
        """Connect / create the schema. Idempotent."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store can be read and written."""
        ...

    async def enqueue(
        self, jobs: Sequence[PlannedJob], now: float, handoff: HandOff | None = None
    ) -> EnqueueResult: ...

    async def claim(
        self,
        limit: int,
        lease: float,
        now: float,
        channel_limits: Mapping[str, int] | None = None,
    ) -> list[ClaimedJob]: ...

    async def complete(self, record: DeliveryRecord) -> None: ...

    async def reschedule(self, record: DeliveryRecord, not_before: float) -> None: ...

    async def dead_letter(self, record: DeliveryRecord) -> None: ...

    async def release(self, job_id: str, not_before: float) -> None: ...

    async def next_due_at(self) -> float | None:
        """When the earliest waiting job (or lease) falls due, for the dispatcher's sleep."""
        ...

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    async def replay(self, job_id: str, now: float) -> bool:
        """Move one dead letter back to the queue (due now, attempts reset); False if unknown."""
        ...

    async def replay_all(self, now: float) -> int: ...

    async def purge_dead_letters(self) -> int: ...

    async def deliveries(
        self, limit: int = 100, since: float | None = None
    ) -> list[DeliveryRecord]:
        """Recent attempts, newest first."""
        ...

    async def stats(self, now: float) -> QueueStats: ...

    async def waiting(self, channel: str, now: float) -> int:
        """How many of ``channel``'s jobs wait (due or scheduled, not leased at ``now``)."""
        ...

    async def fold(self, channel: str, now: float, folder: Folder) -> Fold | None:
        """Storm mode (DESIGN §10), in one transaction: hand ``folder`` the channel's
        waiting jobs (not leased at ``now``), oldest first; remove the ones its ``Fold``
        names, append its records to the delivery log and enqueue its digest (due at
        ``not_before``). Returns the fold written, or None when ``folder`` said None.
        """
        ...

    async def wait_for_work(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return when new work may be due (another replica enqueued) or after ``timeout``.

        Single-process stores just sleep; the dispatcher is also woken in-process.
        """
        ...
