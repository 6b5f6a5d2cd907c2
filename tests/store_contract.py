"""The contract every ``Store`` implementation keeps, written once.

``StoreContract`` is not collected by itself (the file name does not start with
``test_``); ``tests/test_store_contract.py`` subclasses it with a ``store`` fixture
parametrised over memory, SQLite and Redis. A store for these tests keeps
``DELIVERY_LOG_SIZE`` delivery records.

Times are small made-up unix seconds, passed in as the protocol says, except where a
store may rely on a real clock (Slack thread expiry in Redis).

Beyond ``notifier/store/base.py``'s docstring, these tests pin down:

- enqueue follows ``notifier.dedup.needs_update`` for every case of
  ``tests/dedup_rules.py`` (so the Redis Lua mirrors the Python rule); a log entry is
  present while ``expires_at > now`` and outlives its job (a completed job still
  deduplicates); a job id that is already stored counts as deduplicated; a job with
  nothing to send counts neither as enqueued nor as deduplicated;
- "oldest first" means by due time (``not_before``, or the end of an expired lease),
  ties in enqueue order where the store keeps one (Redis: by id);
- a claim with ``channel_limits`` hands out the oldest due jobs, at most a channel's share
  of each, and leaves those it passes over exactly as they were (due, attempts
  untouched), also when they are leases that ran out or replayed dead letters; a share
  of 0 passes over all of a channel's jobs;
- ``complete`` / ``reschedule`` / ``dead_letter`` / ``release`` change a job only while
  it is queued (leased or not); on a dead or unknown job they change nothing, and the
  three that end an attempt still log it (a late answer from a worker whose lease ran
  out is harmless);
- a dead letter's ``reason`` is the record's, or ``"other"`` when it has none;
- a job handed off at enqueue (``HandOff``) is exactly as a claim at ``now`` would leave
  it: leased, unattempted, claimable once its lease ends, ended by ``complete`` etc.;
  a deferred job, or one deduplicated, is never stored leased;
- ``replay`` makes the job due at ``now`` with ``attempts`` 0 and ``enqueued_at`` = now
  (its retry budget starts again); it answers False for a queued or unknown job;
- ``deliveries`` are ordered by ``at``, newest first; the log keeps the newest
  ``delivery_log_size`` records;
- ``stats``: ``queued`` counts waiting jobs (expired leases included), ``due`` those
  claimable at ``now``, ``oldest_due_age`` is ``now`` minus the earliest due time;
- a Slack thread ref is kept at least ``ttl``; expired refs disappear once a later
  ``put_thread`` has swept them (SQLite, memory) or their Redis TTL ran out;
- told recipients are kept per job id, each one once, at least ``ttl`` after the last add;
- timers are claimed by due time (or lease end), ties by id; a replaced timer leaves its
  key's and its group's indexes, so neither its late ``finish_timer`` nor cancelling its
  old group touches the replacement; ``finish_timer`` removes an unclaimed timer too;
- ``change_incident`` of an unknown incident answers False; a resolved incident leaves
  the open indexes and is listed after the open ones; ``remember_once`` is tried with a
  real clock, as Redis expires the key by its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from notifier.dedup import FIRING_ENTRY_RETENTION, LogEntry, PlannedJob
from notifier.incidents import machine
from notifier.incidents.machine import Incident
from notifier.notification import Notification
from notifier.payload import WebhookPayload
from notifier.store.base import (
    ClaimedJob,
    DeliveryRecord,
    HandOff,
    Outcome,
    QueueStats,
    Store,
    ThreadRef,
    Timer,
    incident_timer_group,
)
from tests.dedup_rules import CASES, REPEAT

DELIVERY_LOG_SIZE = 10
_FIXTURE = Path(__file__).parent / "fixtures" / "alertmanager" / "grouped_firing_4_alerts.json"
_PAYLOAD = WebhookPayload.model_validate_json(_FIXTURE.read_text())


def notification(
    job_id: str, channel: str = "ops-slack", received_at: float = 99.5
) -> Notification:
    """A realistic notification: the fixture's four alerts plus non-ASCII text."""
    return Notification(
        job_id=job_id,
        channel=channel,
        route="critical",
        received_at=received_at,
        receiver=_PAYLOAD.receiver,
        status=_PAYLOAD.status,
        group_key=_PAYLOAD.group_key,
        group_labels=_PAYLOAD.group_labels,
        common_labels={**_PAYLOAD.common_labels, "équipe": "ops ☎"},
        common_annotations=_PAYLOAD.common_annotations,
        external_url=_PAYLOAD.external_url,
        truncated_alerts=3,
        alerts=tuple(_PAYLOAD.alerts),
    )


def planned(
    job_id: str, group: str | None = None, repeat: float = 60.0, channel: str = "ops-slack"
) -> PlannedJob:
    """A job for ``notification(job_id)``, alone in its group unless ``group`` names one."""
    sent = notification(job_id, channel)
    return PlannedJob(
        sent,
        channel=channel,
        group=group or f"group-{job_id}",
        firing=frozenset(a.fingerprint for a in sent.alerts if a.status == "firing"),
        resolved=frozenset(a.fingerprint for a in sent.alerts if a.status == "resolved"),
        send_resolved=True,
        repeat_interval=repeat,
    )


def log_job(
    job_id: str,
    group: str,
    firing: Iterable[str],
    resolved: Iterable[str] = (),
    *,
    send_resolved: bool = True,
    repeat: float = REPEAT,
) -> PlannedJob:
    """A job with these fingerprints; it has something to send as planning would give it."""
    firing_set, resolved_set = frozenset(firing), frozenset(resolved)
    sends = bool(firing_set or (resolved_set and send_resolved))
    return PlannedJob(
        notification(job_id) if sends else None,
        channel="ops-slack",
        group=group,
        firing=firing_set,
        resolved=resolved_set,
        send_resolved=send_resolved,
        repeat_interval=repeat,
    )


async def write_entry(store: Store, group: str, entry: LogEntry) -> None:
    """Make ``entry`` the group's, through enqueue alone (an entry firing nothing takes two)."""
    if entry.firing:
        steps = [(entry.at, log_job(f"{group}-seed", group, entry.firing, entry.resolved))]
    else:
        steps = [
            (entry.at - 1, log_job(f"{group}-seed-1", group, {"seed"})),
            (entry.at, log_job(f"{group}-seed-2", group, (), entry.resolved)),
        ]
    for at, job in steps:
        assert len((await store.enqueue([job], now=at)).enqueued) == 1


def record(
    job_id: str, at: float, outcome: Outcome = "delivered", **changes: object
) -> DeliveryRecord:
    fields: dict[str, object] = {
        "job_id": job_id,
        "channel": "ops-slack",
        "channel_type": "slack",
        "outcome": outcome,
        "reason": None if outcome == "delivered" else "server_error",
        "error": "ok ts=1.2" if outcome == "delivered" else "HTTP 503 from slack.com",
        "latency": 0.125,
        "at": at,
        "received_at": 99.5,
        "severity": "critical",
        "status": "firing",
        "alerts": 4,
    }
    fields.update(changes)
    return DeliveryRecord(**fields)  # type: ignore[arg-type]


def ids(claimed: list[ClaimedJob]) -> list[str]:
    return [job.id for job in claimed]


def timer(
    key: str, due_at: float, group: str = "g", timer_id: str | None = None, kind: str = "heartbeat"
) -> Timer:
    """A timer whose id is ``key`` unless given (a replacement needs a new one)."""
    data = {"key": key, "epoch": 3, "at": 1.25, "late": False, "by": None, "who": "Zoë ☎"}
    return Timer(timer_id or key, key, group, kind, due_at, data)


def timer_ids(timers: list[Timer]) -> list[str]:
    return [t.id for t in timers]


POLICY = machine.Policy("primary", (machine.PolicyStep(0.0, ("ops-slack",)),))


def new_incident(
    incident_id: str, group_key: str = "group-1", ack_code: str = "1111", opened_at: float = 100.0
) -> Incident:
    return machine.open_incident(
        POLICY,
        incident_id=incident_id,
        route="critical",
        group_key=group_key,
        ack_code=ack_code,
        now=opened_at,
    ).incident


def step_timer(incident: Incident, due_at: float, name: str = "step") -> Timer:
    """A timer in the incident's group (cancelled with its other timers)."""
    key = f"{incident.id}:{name}"
    return Timer(
        f"{key}@{incident.epoch}",
        key,
        incident_timer_group(incident.id),
        "incident.step",
        due_at,
        {"incident": incident.id, "epoch": incident.epoch},
    )


async def assert_one_change_wins(first: Store, second: Store) -> None:
    """Two replicas change one incident from the same epoch: exactly one write lands,
    with its own timers and jobs and nothing of the other's."""
    opened = new_incident("race")
    assert await first.open_incident(opened, [step_timer(opened, 500.0)]) == opened
    acked = {
        name: machine.acknowledge(POLICY, opened, by=name, path="api", now=110.0).incident
        for name in ("first", "second")
    }
    results = await asyncio.gather(
        *(
            store.change_incident(
                acked[name],
                opened.epoch,
                cancel_timers=True,
                timers=[step_timer(acked[name], 300.0, name)],
                notifications=[notification(f"announce-{name}")],
                now=110.0,
            )
            for name, store in (("first", first), ("second", second))
        )
    )
    assert sorted(results) == [False, True]
    winner = "first" if results[0] else "second"
    assert await first.get_incident("race") == acked[winner]
    assert await second.get_incident("race") == acked[winner]
    assert timer_ids(await first.claim_timers(limit=5, lease=30.0, now=1000.0)) == [
        f"race:{winner}@2"
    ]
    assert ids(await second.claim(limit=5, lease=30.0, now=110.0)) == [f"announce-{winner}"]


class StoreContract:
    """Tests every store must pass; subclasses provide the ``store`` fixture."""

    async def test_ping_answers(self, store: Store) -> None:
        await store.ping()
        assert await store.stats(now=0.0) == QueueStats(0, 0, 0, 0.0, 0)

    async def test_enqueued_notification_round_trips_exactly(self, store: Store) -> None:
        job = planned("j1")
        result = await store.enqueue([job], now=100.0)
        assert result.enqueued == ("j1",)
        assert result.deduplicated == 0
        [claimed] = await store.claim(limit=10, lease=30.0, now=100.0)
        assert claimed.notification == job.notification
        assert claimed.notification.model_dump_json() == job.notification.model_dump_json()
        assert claimed.attempts == 0
        assert claimed.enqueued_at == 100.0
        # Claimed again (a store may hand the first claim the object it was given):
        # now it comes back from what the store kept.
        await store.release("j1", not_before=100.0)
        [again] = await store.claim(limit=10, lease=30.0, now=100.0)
        assert again.notification == job.notification
        assert again.notification.model_dump_json() == job.notification.model_dump_json()

    async def test_enqueue_follows_the_notification_log_rule_by_rule(self, store: Store) -> None:
        for index, case in enumerate(CASES):
            group = f"case-{index}"
            if case.entry is not None:
                await write_entry(store, group, case.entry)
            job = log_job(
                case.name, group, case.firing, case.resolved, send_resolved=case.send_resolved
            )
            result = await store.enqueue([job], now=case.now)
            sends, notify = job.notification is not None, case.expected.notify
            outcome = (len(result.enqueued), result.deduplicated)
            assert outcome == (int(sends and notify), int(sends and not notify)), case

    async def test_all_resolved_without_send_resolved_updates_the_entry_only(
        self, store: Store
    ) -> None:
        fires = log_job("fires", "g", "A", send_resolved=False)
        resolves = log_job("resolves", "g", "", "A", send_resolved=False)
        fires_again = log_job("fires-again", "g", "A", send_resolved=False)
        await store.enqueue([fires], now=100.0)
        silent = await store.enqueue([resolves], now=110.0)
        assert (silent.enqueued, silent.deduplicated) == ((), 0)
        assert (await store.stats(now=110.0)).queued == 1
        # The entry no longer lists A as firing: A firing again is told at once.
        again = await store.enqueue([fires_again], now=120.0)
        assert again.enqueued == ("fires-again",)

    async def test_nothing_to_send_and_nothing_to_update_counts_nowhere(self, store: Store) -> None:
        result = await store.enqueue([log_job("a", "g", "", "A", send_resolved=False)], now=100.0)
        assert (result.enqueued, result.deduplicated) == ((), 0)
        assert (await store.stats(now=100.0)).queued == 0

    async def test_same_group_twice_in_one_call_is_one_job(self, store: Store) -> None:
        result = await store.enqueue([planned("a", "g"), planned("b", "g")], now=100.0)
        assert result.enqueued == ("a",)
        assert result.deduplicated == 1
        assert ids(await store.claim(limit=10, lease=30.0, now=100.0)) == ["a"]

    async def test_same_group_across_calls_is_deduplicated(self, store: Store) -> None:
        await store.enqueue([planned("a", "g")], now=100.0)
        result = await store.enqueue([planned("b", "g")], now=101.0)
        assert result.enqueued == ()
        assert result.deduplicated == 1
        assert (await store.stats(now=101.0)).queued == 1

    async def test_repeat_interval_counts_from_the_last_notification(self, store: Store) -> None:
        await store.enqueue([planned("a", "g", repeat=60.0)], now=100.0)
        exactly = await store.enqueue([planned("b", "g", repeat=60.0)], now=160.0)
        assert exactly.deduplicated == 1
        late = await store.enqueue([planned("c", "g", repeat=60.0)], now=160.5)
        assert late.enqueued == ("c",)
        again = await store.enqueue([planned("d", "g", repeat=60.0)], now=220.0)
        assert again.deduplicated == 1

    async def test_entry_expires_by_the_passed_in_clock(self, store: Store) -> None:
        await store.enqueue([log_job("a", "g1", "A"), log_job("b", "g2", "A")], now=100.0)
        expires_at = 100.0 + FIRING_ENTRY_RETENTION
        # Still there: the resolution is told. Gone: nothing fired that we know of.
        kept = await store.enqueue([log_job("c", "g1", "", "A")], now=expires_at - 0.5)
        assert kept.enqueued == ("c",)
        gone = await store.enqueue([log_job("d", "g2", "", "A")], now=expires_at)
        assert (gone.enqueued, gone.deduplicated) == ((), 1)

    async def test_completed_job_still_deduplicates_its_group(self, store: Store) -> None:
        await store.enqueue([planned("a", "g")], now=100.0)
        await store.claim(limit=1, lease=30.0, now=100.0)
        await store.complete(record("a", at=101.0))
        result = await store.enqueue([planned("b", "g")], now=102.0)
        assert result.deduplicated == 1

    async def test_entries_are_per_channel_and_group(self, store: Store) -> None:
        jobs = [planned("a", "g1"), planned("b", "g2"), planned("c", "g1", channel="mail")]
        result = await store.enqueue(jobs, now=100.0)
        assert sorted(result.enqueued) == ["a", "b", "c"]
        assert result.deduplicated == 0

    async def test_a_job_id_already_stored_counts_as_deduplicated(self, store: Store) -> None:
        await store.enqueue([planned("a", "g1")], now=100.0)
        result = await store.enqueue([planned("a", "g2")], now=100.0)
        assert (result.enqueued, result.deduplicated) == ((), 1)

    async def test_claim_hands_out_due_jobs_oldest_first_within_limit(self, store: Store) -> None:
        for index, job_id in enumerate(["first", "second", "third", "fourth"]):
            await store.enqueue([planned(job_id)], now=100.0 + index)
        assert ids(await store.claim(limit=2, lease=30.0, now=110.0)) == ["first", "second"]
        assert ids(await store.claim(limit=5, lease=30.0, now=110.0)) == ["third", "fourth"]
        assert await store.claim(limit=5, lease=30.0, now=110.0) == []

    async def test_claim_orders_by_due_time_not_enqueue_time(self, store: Store) -> None:
        await store.enqueue([planned("early")], now=100.0)
        await store.enqueue([planned("late")], now=101.0)
        await store.claim(limit=1, lease=30.0, now=102.0)
        await store.reschedule(record("early", at=103.0, outcome="retry"), not_before=150.0)
        await store.release("late", not_before=0.0)  # never claimed: release only moves it
        assert ids(await store.claim(limit=5, lease=30.0, now=200.0)) == ["late", "early"]

    async def test_claim_leaves_the_jobs_of_skipped_channels_due(self, store: Store) -> None:
        for index, job_id in enumerate(["mail-1", "slack-1", "mail-2", "slack-2", "slack-3"]):
            channel = "mail" if job_id.startswith("mail") else "ops-slack"
            await store.enqueue([planned(job_id, channel=channel)], now=100.0 + index)
        skip = {"mail": 0}
        assert ids(await store.claim(limit=2, lease=30.0, now=110.0, channel_limits=skip)) == [
            "slack-1",
            "slack-2",
        ]
        assert ids(
            await store.claim(limit=5, lease=30.0, now=110.0, channel_limits={"sms": 0, "mail": 0})
        ) == ["slack-3"]
        assert await store.claim(limit=5, lease=30.0, now=110.0, channel_limits=skip) == []
        stats = await store.stats(now=110.0)
        assert (stats.queued, stats.in_flight, stats.due, stats.oldest_due_age) == (2, 3, 2, 10.0)
        assert await store.next_due_at() == 100.0
        claimed = await store.claim(limit=5, lease=30.0, now=110.0)
        assert ids(claimed) == ["mail-1", "mail-2"]
        assert [job.attempts for job in claimed] == [0, 0]
        # An expired lease and a replayed dead letter are skipped as well.
        for job_id in ("slack-1", "slack-2", "slack-3"):
            await store.complete(record(job_id, at=111.0))
        await store.dead_letter(record("mail-2", at=111.0, outcome="dead", channel="mail"))
        assert await store.replay("mail-2", now=120.0)
        assert await store.claim(limit=5, lease=30.0, now=150.0, channel_limits=skip) == []
        assert ids(await store.claim(limit=5, lease=30.0, now=150.0)) == ["mail-2", "mail-1"]

    async def test_claim_takes_each_channels_share_and_goes_on_with_the_others(
        self, store: Store
    ) -> None:
        queue = ["mail-1", "slack-1", "mail-2", "mail-3", "slack-2", "sms-1", "mail-4", "slack-3"]
        for index, job_id in enumerate(queue):
            channel = {"mail": "mail", "slack": "ops-slack", "sms": "sms"}[job_id.split("-")[0]]
            await store.enqueue([planned(job_id, channel=channel)], now=100.0 + index)
        shares = {"mail": 1, "ops-slack": 2}  # sms has none: bounded by the limit alone
        claimed = await store.claim(limit=5, lease=30.0, now=110.0, channel_limits=shares)
        assert ids(claimed) == ["mail-1", "slack-1", "slack-2", "sms-1"]
        assert shares == {"mail": 1, "ops-slack": 2}  # the caller's mapping is not used up
        # The limit still bounds the claim when the shares are larger.
        assert ids(
            await store.claim(limit=2, lease=30.0, now=110.0, channel_limits={"mail": 5})
        ) == ["mail-2", "mail-3"]
        # Those passed over were left as they were: due, no attempt counted.
        rest = await store.claim(limit=10, lease=30.0, now=110.0)
        assert ids(rest) == ["mail-4", "slack-3"]
        assert [job.attempts for job in rest] == [0, 0]

    async def test_skipped_backlog_does_not_hide_the_jobs_behind_it(self, store: Store) -> None:
        await store.enqueue([planned(f"mail-{i}", channel="mail") for i in range(50)], now=100.0)
        await store.enqueue([planned("slack-1"), planned("slack-2")], now=101.0)
        claimed = await store.claim(limit=1, lease=30.0, now=101.0, channel_limits={"mail": 0})
        assert ids(claimed) == ["slack-1"]
        assert (await store.stats(now=101.0)).due == 51

    async def test_leased_job_is_not_handed_out_until_its_lease_expires(self, store: Store) -> None:
        await store.enqueue([planned("a")], now=100.0)
        assert ids(await store.claim(limit=5, lease=30.0, now=100.0)) == ["a"]
        assert await store.claim(limit=5, lease=30.0, now=129.9) == []
        [again] = await store.claim(limit=5, lease=30.0, now=130.0)
        assert again.id == "a"
        assert again.attempts == 0  # a lost lease is not a counted attempt

    async def test_job_not_before_in_the_future_is_not_claimed(self, store: Store) -> None:
        await store.enqueue([planned("a")], now=100.0)
        await store.claim(limit=1, lease=30.0, now=100.0)
        await store.release("a", not_before=200.0)
        assert await store.claim(limit=5, lease=30.0, now=199.0) == []
        assert ids(await store.claim(limit=5, lease=30.0, now=200.0)) == ["a"]

    async def test_a_handed_off_job_is_stored_leased_until_its_lease_ends(
        self, store: Store
    ) -> None:
        handoff = HandOff(frozenset({"ops-slack"}), lease_until=130.0)
        jobs = [planned("slack"), planned("mail", channel="mail")]
        result = await store.enqueue(jobs, now=100.0, handoff=handoff)
        assert (result.enqueued, result.leased) == (("slack", "mail"), ("slack",))
        assert await store.stats(now=100.0) == QueueStats(
            queued=1, in_flight=1, due=1, oldest_due_age=0.0, dead_letters=0
        )
        assert ids(await store.claim(limit=5, lease=30.0, now=100.0)) == ["mail"]
        await store.complete(record("mail", at=101.0, channel="mail"))
        assert await store.claim(limit=5, lease=30.0, now=129.9) == []
        assert await store.next_due_at() == 130.0
        # Its process died: once the lease ran out it is claimed as any job, unattempted.
        [again] = await store.claim(limit=5, lease=30.0, now=130.0)
        assert (again.id, again.attempts, again.enqueued_at) == ("slack", 0, 100.0)
        assert again.notification == jobs[0].notification

    async def test_a_handed_off_job_ends_as_a_claimed_one_does(self, store: Store) -> None:
        handoff = HandOff(frozenset({"ops-slack"}), lease_until=130.0)
        await store.enqueue([planned("a"), planned("b")], now=100.0, handoff=handoff)
        done = record("a", at=101.0)
        await store.complete(done)
        assert await store.deliveries() == [done]
        await store.release("b", not_before=102.0)  # handed back unattempted
        assert await store.claim(limit=5, lease=30.0, now=101.0) == []
        [claimed] = await store.claim(limit=5, lease=30.0, now=102.0)
        assert (claimed.id, claimed.attempts) == ("b", 0)
        await store.complete(record("b", at=103.0))
        assert await store.claim(limit=5, lease=30.0, now=1000.0) == []
        assert (await store.stats(now=1000.0)).queued == 0

    async def test_deferred_and_deduplicated_jobs_are_never_handed_off(self, store: Store) -> None:
        await store.enqueue([planned("told", "g")], now=100.0)
        handoff = HandOff(frozenset({"ops-slack"}), lease_until=1000.0)
        jobs = [
            planned("repeat", "g"),  # the channel was told this group already
            replace(planned("muted"), not_before=500.0),  # deferred by a time window
            planned("told", "other"),  # this very job is stored already
            planned("fresh"),
        ]
        result = await store.enqueue(jobs, now=101.0, handoff=handoff)
        assert (result.enqueued, result.deduplicated) == (("muted", "fresh"), 2)
        assert result.leased == ("fresh",)
        assert ids(await store.claim(limit=5, lease=900.0, now=101.0)) == ["told"]
        assert ids(await store.claim(limit=5, lease=900.0, now=500.0)) == ["muted"]

    async def test_complete_removes_the_job_and_logs_the_attempt(self, store: Store) -> None:
        await store.enqueue([planned("a"), planned("b")], now=100.0)
        await store.claim(limit=5, lease=30.0, now=100.0)
        done = record("a", at=101.0)
        await store.complete(done)
        assert await store.deliveries() == [done]
        assert ids(await store.claim(limit=5, lease=30.0, now=500.0)) == ["b"]
        assert (await store.stats(now=500.0)).in_flight == 1

    async def test_reschedule_counts_the_attempt_and_respects_not_before(
        self, store: Store
    ) -> None:
        await store.enqueue([planned("a")], now=100.0)
        await store.claim(limit=1, lease=30.0, now=100.0)
        failed = record("a", at=101.0, outcome="retry")
        await store.reschedule(failed, not_before=110.0)
        assert await store.deliveries() == [failed]
        assert await store.claim(limit=1, lease=30.0, now=109.0) == []
        [claimed] = await store.claim(limit=1, lease=30.0, now=110.0)
        assert claimed.attempts == 1
        await store.reschedule(record("a", at=111.0, outcome="retry"), not_before=120.0)
        [claimed] = await store.claim(limit=1, lease=30.0, now=120.0)
        assert claimed.attempts == 2
        assert claimed.enqueued_at == 100.0

    async def test_dead_letter_keeps_reason_error_attempts_and_times(self, store: Store) -> None:
        job = planned("a")
        await store.enqueue([job], now=100.0)
        await store.claim(limit=1, lease=30.0, now=100.0)
        await store.reschedule(record("a", at=101.0, outcome="retry"), not_before=105.0)
        await store.claim(limit=1, lease=30.0, now=105.0)
        dead = record("a", at=106.5, outcome="dead", reason="client_error", error="HTTP 404")
        await store.dead_letter(dead)
        [letter] = await store.dead_letters()
        assert letter.id == "a"
        assert letter.channel == "ops-slack"
        assert letter.reason == "client_error"
        assert letter.error == "HTTP 404"
        assert letter.attempts == 2
        assert letter.first_attempt_at == 101.0
        assert letter.last_attempt_at == 106.5
        assert letter.notification == job.notification
        assert await store.claim(limit=5, lease=30.0, now=1000.0) == []
        assert (await store.stats(now=1000.0)).dead_letters == 1
        assert (await store.deliveries(limit=1))[0] == dead

    async def test_dead_letters_are_listed_newest_first_within_limit(self, store: Store) -> None:
        await store.enqueue([planned("a"), planned("b"), planned("c")], now=100.0)
        await store.claim(limit=3, lease=30.0, now=100.0)
        for at, job_id in [(101.0, "b"), (102.0, "a"), (103.0, "c")]:
            await store.dead_letter(record(job_id, at=at, outcome="dead"))
        assert [d.id for d in await store.dead_letters()] == ["c", "a", "b"]
        assert [d.id for d in await store.dead_letters(limit=2)] == ["c", "a"]

    async def test_replay_puts_a_dead_letter_back_due_now_with_attempts_reset(
        self, store: Store
    ) -> None:
        await store.enqueue([planned("a")], now=100.0)
        await store.claim(limit=1, lease=30.0, now=100.0)
        await store.dead_letter(record("a", at=101.0, outcome="dead"))
        assert await store.replay("a", now=500.0) is True
        assert await store.dead_letters() == []
        assert await store.next_due_at() == 500.0
        assert await store.claim(limit=1, lease=30.0, now=499.0) == []
        [claimed] = await store.claim(limit=1, lease=30.0, now=500.0)
        assert claimed.attempts == 0
        assert claimed.enqueued_at == 500.0  # re-enqueued: its retry budget starts again
        assert await store.replay("a", now=501.0) is False  # queued, not dead
        assert await store.replay("unknown", now=501.0) is False

    async def test_replay_all_and_purge(self, store: Store) -> None:
        await store.enqueue([planned(f"j{i}") for i in range(5)], now=100.0)
        await store.claim(limit=5, lease=30.0, now=100.0)
        for i in range(5):
            await store.dead_letter(record(f"j{i}", at=101.0 + i, outcome="dead"))
        assert await store.replay("j0", now=200.0) is True
        assert await store.replay_all(now=200.0) == 4
        assert await store.replay_all(now=200.0) == 0
        assert len(await store.claim(limit=10, lease=30.0, now=200.0)) == 5
        for i in range(3):
            await store.dead_letter(record(f"j{i}", at=201.0, outcome="dead"))
        assert await store.purge_dead_letters() == 3
        assert await store.dead_letters() == []
        assert await store.purge_dead_letters() == 0
        assert await store.replay("j0", now=210.0) is False
        assert await store.stats(now=210.0) == QueueStats(0, 2, 0, 0.0, 0)

    async def test_release_hands_a_job_back_without_counting_an_attempt(self, store: Store) -> None:
        await store.enqueue([planned("a")], now=100.0)
        await store.claim(limit=1, lease=30.0, now=100.0)
        await store.release("a", not_before=105.0)
        assert await store.claim(limit=1, lease=30.0, now=104.0) == []
        [claimed] = await store.claim(limit=1, lease=30.0, now=105.0)
        assert claimed.attempts == 0
        assert await store.deliveries() == []

    async def test_deliveries_newest_first_with_limit_and_since(self, store: Store) -> None:
        await store.enqueue([planned(f"j{i}") for i in range(4)], now=100.0)
        await store.claim(limit=4, lease=30.0, now=100.0)
        records = [
            record("j0", at=101.0),
            record("j1", at=102.0, outcome="retry"),
            record("j2", at=103.0, outcome="dead"),
            record("j3", at=104.0),
        ]
        await store.complete(records[0])
        await store.reschedule(records[1], not_before=200.0)
        await store.dead_letter(records[2])
        await store.complete(records[3])
        assert await store.deliveries() == records[::-1]
        assert await store.deliveries(limit=2) == [records[3], records[2]]
        assert await store.deliveries(since=102.0) == [records[3], records[2], records[1]]
        assert await store.deliveries(limit=1, since=102.0) == [records[3]]
        assert await store.deliveries(since=105.0) == []

    async def test_delivery_log_keeps_only_the_newest_records(self, store: Store) -> None:
        total = DELIVERY_LOG_SIZE + 7
        await store.enqueue([planned(f"j{i}") for i in range(total)], now=100.0)
        await store.claim(limit=total, lease=30.0, now=100.0)
        for i in range(total):
            await store.complete(record(f"j{i}", at=101.0 + i))
        kept = await store.deliveries(limit=1000)
        assert [r.job_id for r in kept] == [f"j{i}" for i in reversed(range(7, total))]

    async def test_completions_at_once_are_all_logged_and_trimmed(self, store: Store) -> None:
        total = DELIVERY_LOG_SIZE + 7
        await store.enqueue([planned(f"j{i}") for i in range(total)], now=100.0)
        await store.claim(limit=total, lease=30.0, now=100.0)
        await asyncio.gather(*(store.complete(record(f"j{i}", at=101.0)) for i in range(total)))
        kept = await store.deliveries(limit=1000)
        assert sorted(r.job_id for r in kept) == sorted(f"j{i}" for i in range(7, total))
        assert await store.claim(limit=total, lease=30.0, now=200.0) == []

    async def test_stats_count_queued_in_flight_due_and_dead(self, store: Store) -> None:
        await store.enqueue([planned("a"), planned("b"), planned("c")], now=100.0)
        await store.claim(limit=3, lease=40.0, now=110.0)  # leases end at 150
        await store.reschedule(record("b", at=111.0, outcome="retry"), not_before=200.0)
        await store.dead_letter(record("c", at=112.0, outcome="dead"))
        await store.enqueue([planned("d")], now=130.0)
        assert await store.stats(now=135.0) == QueueStats(
            queued=2, in_flight=1, due=1, oldest_due_age=5.0, dead_letters=1
        )
        # a's lease ran out at 150: it waits again, due since then
        assert await store.stats(now=160.0) == QueueStats(
            queued=3, in_flight=0, due=2, oldest_due_age=30.0, dead_letters=1
        )
        assert await store.stats(now=210.0) == QueueStats(
            queued=3, in_flight=0, due=3, oldest_due_age=80.0, dead_letters=1
        )

    async def test_next_due_at_follows_jobs_and_leases(self, store: Store) -> None:
        assert await store.next_due_at() is None
        await store.enqueue([planned("a")], now=100.0)
        assert await store.next_due_at() == 100.0
        await store.claim(limit=1, lease=30.0, now=100.0)
        assert await store.next_due_at() == 130.0
        await store.reschedule(record("a", at=101.0, outcome="retry"), not_before=150.0)
        assert await store.next_due_at() == 150.0
        await store.enqueue([planned("b")], now=120.0)
        assert await store.next_due_at() == 120.0
        await store.claim(limit=1, lease=30.0, now=120.0)
        await store.complete(record("b", at=121.0))
        assert await store.next_due_at() == 150.0
        await store.claim(limit=1, lease=30.0, now=150.0)
        await store.dead_letter(record("a", at=151.0, outcome="dead"))
        assert await store.next_due_at() is None

    async def test_late_answers_from_a_worker_that_lost_its_lease_are_harmless(
        self, store: Store
    ) -> None:
        await store.enqueue([planned("a")], now=100.0)
        await store.claim(limit=1, lease=30.0, now=100.0)  # worker 1, then it stalls
        await store.claim(limit=1, lease=30.0, now=131.0)  # worker 2 takes over
        await store.dead_letter(record("a", at=132.0, outcome="dead"))  # worker 2
        await store.complete(record("a", at=133.0))  # worker 1, late
        await store.reschedule(record("a", at=134.0, outcome="retry"), not_before=0.0)
        await store.release("a", not_before=0.0)
        [letter] = await store.dead_letters()
        assert letter.attempts == 1
        assert await store.claim(limit=5, lease=30.0, now=1000.0) == []
        assert len(await store.deliveries()) == 3  # every attempt that happened is logged
        await store.complete(record("unknown", at=135.0))  # never enqueued: only logged
        assert (await store.deliveries(limit=1))[0].job_id == "unknown"

    async def test_concurrent_claims_never_hand_out_a_job_twice(self, store: Store) -> None:
        await store.enqueue([planned(f"j{i:03}") for i in range(60)], now=100.0)
        batches = await asyncio.gather(
            *(store.claim(limit=4, lease=30.0, now=100.0) for _ in range(20))
        )
        claimed = [job.id for batch in batches for job in batch]
        assert sorted(claimed) == [f"j{i:03}" for i in range(60)]

    async def test_concurrent_enqueues_of_one_key_store_one_job(self, store: Store) -> None:
        results = await asyncio.gather(
            *(store.enqueue([planned(f"j{i}", "shared")], now=100.0) for i in range(20))
        )
        assert sum(len(r.enqueued) for r in results) == 1
        assert sum(r.deduplicated for r in results) == 19

    async def test_threads_get_put_and_expire(self, store: Store) -> None:
        assert await store.get_thread("group-1") is None
        now = time.time()
        await store.put_thread("group-1", ThreadRef("C123", "1700000000.000100"), 3600.0, now)
        assert await store.get_thread("group-1") == ThreadRef("C123", "1700000000.000100")
        await store.put_thread("group-1", ThreadRef("C123", "1700000001.000200"), 3600.0, now)
        assert await store.get_thread("group-1") == ThreadRef("C123", "1700000001.000200")
        # Expired refs are gone once a later write has swept them (SQLite, memory) or
        # their key has timed out (Redis, real clock): both hold after a real wait.
        await store.put_thread("short", ThreadRef("C9", "1.1"), 0.05, time.time())
        await asyncio.sleep(0.15)
        await store.put_thread("group-2", ThreadRef("C9", "2.2"), 3600.0, time.time())
        assert await store.get_thread("short") is None
        assert await store.get_thread("group-1") is not None

    async def test_told_recipients_per_job_and_expire(self, store: Store) -> None:
        assert await store.told_recipients("j1") == frozenset()
        now = time.time()
        await store.add_told_recipient("j1", "a", 3600.0, now)
        await store.add_told_recipient("j1", "b", 3600.0, now)
        await store.add_told_recipient("j1", "a", 3600.0, now)
        await store.add_told_recipient("j2", "c", 3600.0, now)
        assert await store.told_recipients("j1") == {"a", "b"}
        assert await store.told_recipients("j2") == {"c"}
        # As with thread refs: expired entries are gone after a real wait and a later add.
        await store.add_told_recipient("short", "x", 0.05, time.time())
        await asyncio.sleep(0.15)
        await store.add_told_recipient("j3", "y", 3600.0, time.time())
        assert await store.told_recipients("short") == frozenset()
        assert await store.told_recipients("j1") == {"a", "b"}

    # Timers (Timers protocol)

    async def test_timers_are_claimed_earliest_first_up_to_limit_and_leased(
        self, store: Store
    ) -> None:
        assert await store.next_timer_at() is None
        await store.schedule_timers(
            [timer("a", 120.0), timer("b", 110.0), timer("c", 130.0), timer("d", 200.0)]
        )
        assert await store.next_timer_at() == 110.0
        assert await store.claim_timers(limit=5, lease=30.0, now=109.0) == []
        assert timer_ids(await store.claim_timers(limit=2, lease=30.0, now=130.0)) == ["b", "a"]
        assert await store.next_timer_at() == 130.0  # c is due; a and b are leased until 160
        assert timer_ids(await store.claim_timers(limit=5, lease=35.0, now=135.0)) == ["c"]
        assert await store.next_timer_at() == 160.0  # the earliest lease end
        assert await store.claim_timers(limit=5, lease=30.0, now=159.0) == []
        # The leases of a and b ran out (their worker died): due again, ties by id.
        assert timer_ids(await store.claim_timers(limit=5, lease=30.0, now=160.0)) == ["a", "b"]
        for timer_id in ("a", "b", "c"):
            await store.finish_timer(timer_id)
        assert await store.next_timer_at() == 200.0
        await store.finish_timer("d")  # finishing an unclaimed timer removes it too
        assert await store.next_timer_at() is None
        assert await store.claim_timers(limit=5, lease=30.0, now=1000.0) == []

    async def test_a_claimed_timer_round_trips_exactly(self, store: Store) -> None:
        scheduled = timer("heartbeat:payments", 100.5, kind="heartbeat")
        await store.schedule_timers([scheduled])
        assert await store.claim_timers(limit=1, lease=30.0, now=100.5) == [scheduled]

    async def test_scheduling_a_key_again_replaces_its_timer(self, store: Store) -> None:
        await store.schedule_timers([timer("hb", 100.0, group="g1", timer_id="hb-1")])
        assert timer_ids(await store.claim_timers(limit=5, lease=30.0, now=100.0)) == ["hb-1"]
        renewed = timer("hb", 150.0, group="g2", timer_id="hb-2")
        await store.schedule_timers([renewed])
        assert await store.next_timer_at() == 150.0  # not the old lease's end
        await store.finish_timer("hb-1")  # the old one's late worker removes nothing
        assert await store.claim_timers(limit=5, lease=30.0, now=149.0) == []
        assert await store.cancel_timers("g1") == 0  # the replacement left the old group
        assert await store.claim_timers(limit=5, lease=30.0, now=150.0) == [renewed]
        assert await store.cancel_timers("g2") == 1

    async def test_cancel_timers_removes_one_group_leased_or_not(self, store: Store) -> None:
        await store.schedule_timers(
            [timer("a", 100.0, "g1"), timer("b", 200.0, "g1"), timer("c", 100.0, "g2")]
        )
        assert timer_ids(await store.claim_timers(limit=1, lease=30.0, now=100.0)) == ["a"]
        assert await store.cancel_timers("g1") == 2
        assert await store.cancel_timers("g1") == 0
        await store.finish_timer("a")  # cancelled: nothing left to remove
        assert timer_ids(await store.claim_timers(limit=5, lease=30.0, now=1000.0)) == ["c"]
        assert await store.cancel_timers("g2") == 1  # leased, and still cancelled
        assert await store.next_timer_at() is None
        assert await store.cancel_timers("unknown") == 0

    # Incidents (Incidents protocol)

    async def test_open_incident_stores_it_with_its_timers(self, store: Store) -> None:
        opened = new_incident("i1")
        step = step_timer(opened, 100.0)
        assert await store.open_incident(opened, [step]) == opened
        assert await store.get_incident("i1") == opened
        assert await store.open_incident_for("critical", "group-1") == opened
        assert await store.open_incident_by_code("1111") == opened
        assert await store.claim_timers(limit=5, lease=30.0, now=100.0) == [step]
        await store.finish_timer(step.id)
        assert await store.get_incident("unknown") is None
        assert await store.open_incident_for("critical", "group-2") is None
        assert await store.open_incident_for("other-route", "group-1") is None
        assert await store.open_incident_by_code("2222") is None

    async def test_a_second_open_of_a_group_returns_the_open_one_and_stores_nothing(
        self, store: Store
    ) -> None:
        first = new_incident("i1")
        assert await store.open_incident(first, []) == first
        second = new_incident("i2", ack_code="2222", opened_at=105.0)
        assert await store.open_incident(second, [step_timer(second, 105.0)]) == first
        assert await store.get_incident("i2") is None
        assert await store.open_incident_by_code("2222") is None
        assert await store.next_timer_at() is None
        assert await store.list_incidents() == [first]

    async def test_an_ack_code_in_use_by_another_open_incident_is_refused(
        self, store: Store
    ) -> None:
        first = new_incident("i1", ack_code="1111")
        await store.open_incident(first, [])
        clash = new_incident("i2", group_key="group-2", ack_code="1111")
        assert await store.open_incident(clash, [step_timer(clash, 100.0)]) is None
        assert await store.get_incident("i2") is None
        assert await store.open_incident_for("critical", "group-2") is None
        assert await store.open_incident_by_code("1111") == first
        assert await store.next_timer_at() is None

    async def test_a_resolved_incident_frees_its_group_and_code(self, store: Store) -> None:
        first = new_incident("i1")
        await store.open_incident(first, [step_timer(first, 100.0)])
        resolved = machine.resolve(first, now=200.0).incident
        assert await store.change_incident(
            resolved, 1, cancel_timers=True, timers=[], notifications=[], now=200.0
        )
        assert await store.get_incident("i1") == resolved
        assert await store.open_incident_for("critical", "group-1") is None
        assert await store.open_incident_by_code("1111") is None
        assert await store.next_timer_at() is None
        again = new_incident("i2", opened_at=300.0)
        assert await store.open_incident(again, []) == again
        assert await store.open_incident_for("critical", "group-1") == again
        assert await store.open_incident_by_code("1111") == again
        assert await store.list_incidents() == [again, resolved]

    async def test_change_incident_writes_cancels_schedules_and_enqueues_at_once(
        self, store: Store
    ) -> None:
        opened = new_incident("i1")
        heartbeat = timer("hb", 100.0, group="heartbeats")
        await store.open_incident(opened, [step_timer(opened, 100.0), heartbeat])
        stepped = machine.step_due(POLICY, opened, epoch=1, page_index=0, now=110.0).incident
        ack_timeout = step_timer(stepped, 300.0, "ack")
        pages = [notification("page-1"), notification("page-2", channel="sms")]
        assert await store.change_incident(
            stepped, 1, cancel_timers=True, timers=[ack_timeout], notifications=pages, now=110.0
        )
        assert await store.get_incident("i1") == stepped
        assert await store.open_incident_by_code("1111") == stepped
        # The step timer was cancelled; another group's timer was not.
        assert await store.claim_timers(limit=5, lease=30.0, now=1000.0) == [heartbeat, ack_timeout]
        assert await store.next_due_at() == 110.0
        assert await store.claim(limit=5, lease=30.0, now=109.0) == []
        claimed = await store.claim(limit=5, lease=30.0, now=110.0)
        assert [job.notification for job in claimed] == pages
        assert [(job.attempts, job.enqueued_at) for job in claimed] == [(0, 110.0), (0, 110.0)]

    async def test_change_incident_keeps_its_timers_unless_asked(self, store: Store) -> None:
        opened = new_incident("i1")
        step = step_timer(opened, 200.0)
        await store.open_incident(opened, [step])
        silenced = machine.silence(opened, by="ann", until=500.0, now=110.0).incident
        assert await store.change_incident(
            silenced, 1, cancel_timers=False, timers=[], notifications=[], now=110.0
        )
        assert await store.claim_timers(limit=5, lease=30.0, now=200.0) == [step]

    async def test_change_incident_from_a_stale_epoch_changes_nothing(self, store: Store) -> None:
        opened = new_incident("i1")
        step = step_timer(opened, 200.0)
        await store.open_incident(opened, [step])
        acked = machine.acknowledge(POLICY, opened, by="ann", path="api", now=110.0).incident
        assert await store.change_incident(
            acked, 1, cancel_timers=False, timers=[], notifications=[], now=110.0
        )
        late = machine.resolve(opened, now=120.0).incident  # computed from epoch 1
        assert not await store.change_incident(
            late,
            1,
            cancel_timers=True,
            timers=[step_timer(late, 300.0, "later")],
            notifications=[notification("announce")],
            now=120.0,
        )
        assert await store.get_incident("i1") == acked
        assert await store.open_incident_for("critical", "group-1") == acked
        assert await store.next_due_at() is None  # no job
        assert await store.claim_timers(limit=5, lease=30.0, now=1000.0) == [step]
        unknown = new_incident("never-opened")
        assert not await store.change_incident(
            unknown, 1, cancel_timers=False, timers=[], notifications=[], now=120.0
        )
        assert await store.get_incident("never-opened") is None

    async def test_list_incidents_open_first_newest_opened_first(self, store: Store) -> None:
        stored: dict[str, Incident] = {}
        for name, opened_at, resolve in (
            ("i1", 100.0, True),
            ("i2", 200.0, False),
            ("i3", 300.0, True),
            ("i4", 150.0, False),
        ):
            opened = new_incident(name, f"group-{name}", f"code-{name}", opened_at)
            assert await store.open_incident(opened, []) == opened
            stored[name] = opened
            if resolve:
                stored[name] = machine.resolve(opened, now=opened_at + 1).incident
                assert await store.change_incident(
                    stored[name], 1, cancel_timers=True, timers=[], notifications=[], now=400.0
                )
        in_order = [stored[name] for name in ("i2", "i4", "i3", "i1")]
        assert await store.list_incidents() == in_order
        assert await store.list_incidents(limit=3) == in_order[:3]
        assert await store.list_incidents(open_only=True) == in_order[:2]
        assert await store.list_incidents(open_only=True, limit=1) == in_order[:1]
        # A resolved incident opened again is listed with the open ones.
        reopened = replace(stored["i3"], state=machine.State.OPEN, epoch=3, resolved_at=None)
        assert await store.change_incident(
            reopened, 2, cancel_timers=False, timers=[], notifications=[], now=400.0
        )
        assert await store.list_incidents(limit=2) == [reopened, stored["i2"]]

    async def test_remember_once_within_its_ttl(self, store: Store) -> None:
        # A real clock, as Redis expires the key by its own.
        now = time.time()
        assert await store.remember_once("SM1", 3600.0, now) is True
        assert await store.remember_once("SM1", 3600.0, now + 1) is False
        assert await store.remember_once("SM2", 3600.0, now + 1) is True
        assert await store.remember_once("short", 0.05, time.time()) is True
        await asyncio.sleep(0.15)
        assert await store.remember_once("short", 0.05, time.time()) is True
        assert await store.remember_once("SM1", 3600.0, time.time()) is False
