"""Storm folds (DESIGN §10) on every store: ``waiting`` and ``fold`` keep one contract.

Runs on the ``store`` fixture of ``test_store_contract`` (memory, SQLite, Redis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from notifier.digest import DigestFolder
from notifier.notification import Notification
from notifier.store.base import Fold, Store
from tests import test_store_contract
from tests.store_contract import ids, planned, record

store = test_store_contract.store  # the parametrised fixture: memory, SQLite, Redis


def folder(now: float, not_before: float | None = None, storm: str = "s1") -> DigestFolder:
    return DigestFolder(
        channel="ops-slack",
        channel_type="slack",
        storm=storm,
        started_at=now,
        now=now,
        not_before=now if not_before is None else not_before,
        console_url="https://notifier.example.com/ui/",
    )


async def test_waiting_counts_a_channels_jobs_not_leased(store: Store) -> None:
    await store.enqueue([planned(f"a{i}") for i in range(4)], now=100.0)
    await store.enqueue([planned("other", channel="ops-email")], now=100.0)
    assert await store.waiting("ops-slack", now=100.0) == 4
    claimed = await store.claim(limit=2, lease=30.0, now=100.0, channel_limits={"ops-email": 0})
    assert len(claimed) == 2
    assert await store.waiting("ops-slack", now=100.0) == 2
    # A lease that ran out waits again.
    assert await store.waiting("ops-slack", now=131.0) == 4
    assert await store.waiting("ops-email", now=100.0) == 1
    assert await store.waiting("nowhere", now=100.0) == 0


async def test_fold_replaces_the_waiting_jobs_by_one_digest_and_logs_each(store: Store) -> None:
    await store.enqueue([planned(f"a{i}") for i in range(5)], now=100.0)
    await store.enqueue([planned("other", channel="ops-email")], now=100.0)
    [leased] = await store.claim(limit=1, lease=30.0, now=100.0)

    fold = await store.fold("ops-slack", now=101.0, folder=folder(101.0, not_before=102.0))

    assert fold is not None
    assert len(fold.folded) == len(fold.records) == 4
    assert await store.waiting("ops-slack", now=101.0) == 1  # the digest
    log = await store.deliveries(limit=100)
    assert sorted(r.job_id for r in log) == sorted(
        f"a{i}" for i in range(5) if f"a{i}" != leased.id
    )
    assert {r.outcome for r in log} == {"digested"}
    assert (await store.stats(now=101.0)).dead_letters == 0
    # The digest is due at not_before, not before; it round-trips with its summary.
    claim = await store.claim(limit=10, lease=30.0, now=101.5, channel_limits={"ops-email": 0})
    assert claim == []
    [digest] = await store.claim(limit=10, lease=30.0, now=102.0, channel_limits={"ops-email": 0})
    summary = digest.notification.digest
    assert summary is not None
    assert (summary.firing, summary.resolved, summary.more) == (4, 0, 0)
    assert summary.console_url == "https://notifier.example.com/ui/"
    # The leased job and the other channel's job were left alone.
    await store.complete(record(leased.id, at=103.0))
    assert ids(await store.claim(limit=10, lease=30.0, now=131.0)) == ["other"]


async def test_a_second_fold_merges_the_waiting_digest(store: Store) -> None:
    await store.enqueue([planned(f"a{i}") for i in range(3)], now=100.0)
    first = await store.fold("ops-slack", now=100.0, folder=folder(100.0, not_before=160.0))
    assert first is not None
    assert len(first.folded) == 3
    await store.enqueue([planned(f"b{i}") for i in range(2)], now=101.0)
    # The digest still waits: it is folded with the new jobs into one.
    second = await store.fold("ops-slack", now=101.0, folder=folder(101.0, not_before=160.0))
    assert second is not None
    assert len(second.folded) == 3
    assert first.digest.job_id in second.folded
    [digest] = await store.claim(limit=10, lease=30.0, now=160.0)
    summary = digest.notification.digest
    assert summary is not None
    assert summary.firing == 5
    assert len(await store.deliveries(limit=100)) == 5  # the digests are not logged as folded


async def test_a_fold_that_folds_nothing_changes_nothing(store: Store) -> None:
    await store.enqueue([planned("a0")], now=100.0)

    def nothing(_: Sequence[Notification]) -> Fold | None:
        return None

    assert await store.fold("ops-slack", now=100.0, folder=nothing) is None
    assert await store.fold("ops-email", now=100.0, folder=folder(100.0)) is None
    assert ids(await store.claim(limit=10, lease=30.0, now=100.0)) == ["a0"]
    assert await store.deliveries() == []


async def test_a_job_deferred_to_a_window_is_not_folded(
    store: Store,
) -> None:
    opens = 1_000.0
    waits = planned("deferred")
    notification = waits.notification
    assert notification is not None
    # As planning makes a deferred job: due when the window opens, received then.
    waits = replace(
        waits,
        not_before=opens,
        notification=notification.model_copy(update={"received_at": opens}),
    )
    await store.enqueue([waits], now=100.0)
    await store.enqueue([planned(f"a{i}") for i in range(3)], now=100.0)

    fold = await store.fold("ops-slack", now=101.0, folder=folder(101.0))

    assert fold is not None
    assert sorted(fold.folded) == ["a0", "a1", "a2"]
    [digest] = await store.claim(limit=10, lease=30.0, now=101.0)
    assert digest.notification.digest is not None
    await store.complete(record(digest.id, at=102.0))
    # The deferred job is still there, and falls due when its window opens.
    assert ids(await store.claim(limit=10, lease=30.0, now=opens)) == ["deferred"]
