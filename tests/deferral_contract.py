"""The contract every store keeps for deferred notifications (DESIGN §9, ``notifier.deferral``).

Mixed into ``tests/test_store_contract.py``'s class, so it runs on memory, SQLite and
Redis (whose enqueue script mirrors the Python rule). A window opens at ``OPENS``; jobs
planned while it is shut carry ``not_before=OPENS``.
"""

from __future__ import annotations

from dataclasses import replace

from notifier.dedup import PlannedJob
from notifier.store.base import Store
from tests.store_contract import ids, log_job, record

OPENS = 1_000.0


def deferred(
    job_id: str, firing: str, resolved: str = "", *, send_resolved: bool = True
) -> PlannedJob:
    """A job of group ``g`` planned while its route is muted with ``when_muted: defer``."""
    job = log_job(job_id, "g", firing, resolved, send_resolved=send_resolved)
    return replace(job, not_before=OPENS)


class DeferralContract:
    async def test_a_deferred_job_falls_due_when_the_window_opens(self, store: Store) -> None:
        result = await store.enqueue([deferred("a", "A")], now=100.0)
        assert result.enqueued == ("a",)
        assert await store.claim(limit=10, lease=30.0, now=OPENS - 0.5) == []
        assert await store.next_due_at() == OPENS
        (job,) = await store.claim(limit=10, lease=30.0, now=OPENS)
        # Its retry budget counts from when it fell due, not from a night of waiting.
        assert (job.id, job.enqueued_at) == ("a", OPENS)

    async def test_the_latest_state_replaces_a_waiting_deferred_job(self, store: Store) -> None:
        await store.enqueue([deferred("a", "A")], now=100.0)
        # An HA twin of the same payload, then the group grows: one job, the latest.
        assert (await store.enqueue([deferred("twin", "A")], now=101.0)).enqueued == ("twin",)
        assert (await store.enqueue([deferred("b", "AB")], now=200.0)).enqueued == ("b",)
        assert ids(await store.claim(limit=10, lease=30.0, now=OPENS)) == ["b"]
        assert (await store.stats(now=OPENS)).queued == 0

    async def test_a_group_that_resolved_unheard_while_muted_sends_nothing(
        self, store: Store
    ) -> None:
        await store.enqueue([deferred("a", "A")], now=100.0)
        result = await store.enqueue([deferred("resolved", "", "A")], now=200.0)
        assert (result.enqueued, result.deduplicated) == ((), 1)
        assert await store.claim(limit=10, lease=30.0, now=OPENS) == []
        # The log says what the channel heard: nothing. A firing alert is new again.
        again = await store.enqueue([log_job("again", "g", "A")], now=OPENS + 1)
        assert again.enqueued == ("again",)

    async def test_a_resolution_the_channel_must_hear_waits_for_the_window(
        self, store: Store
    ) -> None:
        await store.enqueue([log_job("fired", "g", "A")], now=50.0)  # told before the window shut
        await store.enqueue([deferred("more", "AB")], now=100.0)
        result = await store.enqueue([deferred("resolved", "", "AB")], now=200.0)
        assert result.enqueued == ("resolved",)
        claimed = await store.claim(limit=10, lease=30.0, now=OPENS)
        assert ids(claimed) == ["fired", "resolved"]

    async def test_without_send_resolved_a_told_group_resolving_sends_nothing(
        self, store: Store
    ) -> None:
        await store.enqueue([log_job("fired", "g", "A", send_resolved=False)], now=50.0)
        await store.enqueue([deferred("more", "AB", send_resolved=False)], now=100.0)
        result = await store.enqueue(
            [deferred("resolved", "", "AB", send_resolved=False)], now=200.0
        )
        assert (result.enqueued, result.deduplicated) == ((), 0)
        assert ids(await store.claim(limit=10, lease=30.0, now=OPENS)) == ["fired"]
        # The entry lists nothing firing: A firing again is told at once.
        again = await store.enqueue([log_job("again", "g", "A")], now=OPENS + 1)
        assert again.enqueued == ("again",)

    async def test_an_unmuted_payload_replaces_a_deferred_job_that_still_waits(
        self, store: Store
    ) -> None:
        await store.enqueue([deferred("a", "A")], now=100.0)
        # The window opened and the payload came before a worker took the deferred job.
        result = await store.enqueue([log_job("now", "g", "AB")], now=OPENS + 1)
        assert result.enqueued == ("now",)
        assert ids(await store.claim(limit=10, lease=30.0, now=OPENS + 1)) == ["now"]

    async def test_a_deferred_job_once_claimed_is_what_the_channel_was_told(
        self, store: Store
    ) -> None:
        await store.enqueue([deferred("a", "A")], now=100.0)
        assert ids(await store.claim(limit=10, lease=30.0, now=OPENS)) == ["a"]
        # Alertmanager posts the same group as the window opens: already being told.
        same = await store.enqueue([log_job("same", "g", "A")], now=OPENS + 1)
        assert (same.enqueued, same.deduplicated) == ((), 1)
        await store.complete(record("a", at=OPENS + 2))
        grown = await store.enqueue([log_job("grown", "g", "AB")], now=OPENS + 3)
        assert grown.enqueued == ("grown",)

    async def test_an_attempted_deferred_job_is_not_replaced(self, store: Store) -> None:
        await store.enqueue([deferred("a", "A")], now=100.0)
        await store.claim(limit=10, lease=30.0, now=OPENS)
        await store.reschedule(record("a", at=OPENS + 1, outcome="retry"), not_before=OPENS + 60)
        result = await store.enqueue([deferred("b", "AB")], now=OPENS + 2)
        assert result.enqueued == ("b",)
        assert sorted(ids(await store.claim(limit=10, lease=30.0, now=OPENS + 60))) == ["a", "b"]

    async def test_deferrals_are_per_channel_and_group(self, store: Store) -> None:
        other_group = replace(deferred("x", "A"), group="other")
        await store.enqueue([deferred("a", "A"), other_group], now=100.0)
        assert (await store.enqueue([deferred("b", "AB")], now=200.0)).enqueued == ("b",)
        assert sorted(ids(await store.claim(limit=10, lease=30.0, now=OPENS))) == ["b", "x"]
