"""What only the SQLite store promises: the file, its schema, group commit, recovery.

The shared semantics are in ``tests/store_contract.py``; these tests look at the file
with a connection of their own.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from notifier.store import sqlite as sqlite_module
from notifier.store.base import StoreUnavailable, ThreadRef
from notifier.store.sqlite import _CLAIMABLE_TIMERS, SQLiteStore, _claimable
from notifier.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, Synchronous, connect_writer
from notifier.store.sqlite_threads import GroupCommitWriter
from tests.binaries import require_binary
from tests.store_contract import (
    assert_one_change_wins,
    new_incident,
    planned,
    record,
    step_timer,
    timer,
    timer_ids,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "data" / "notifier.db", delivery_log_size=100)
    await opened.open()
    yield opened
    await opened.close()


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Ask the file directly, on a connection of the test's own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_first_open_creates_folder_file_wal_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "notifier.db"
    store = SQLiteStore(path)
    await store.open()
    await store.open()  # idempotent
    await store.close()
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {name for (name,) in query(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "notification_log", "deliveries", "threads", "meta"} <= tables
    assert "dedup" not in tables


@pytest.mark.parametrize("skipping", [0, 2])
async def test_claim_uses_the_due_index(store: SQLiteStore, skipping: int) -> None:
    plan = query(store.path, "EXPLAIN QUERY PLAN " + _claimable(skipping).replace("?", "1"))
    details = [str(row[-1]) for row in plan]
    assert any("USING INDEX jobs_due" in detail for detail in details), plan
    assert not any("TEMP B-TREE" in detail for detail in details), plan  # ordered by the index


async def test_claim_timers_uses_the_due_index(store: SQLiteStore) -> None:
    plan = query(store.path, "EXPLAIN QUERY PLAN " + _CLAIMABLE_TIMERS.replace("?", "1"))
    details = [str(row[-1]) for row in plan]
    assert any("USING INDEX timers_due" in detail for detail in details), plan
    assert not any("TEMP B-TREE" in detail for detail in details), plan


async def test_one_open_incident_per_group_is_kept_by_the_schema(store: SQLiteStore) -> None:
    await store.open_incident(new_incident("i1"), [])
    conn = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO incidents VALUES ('i2', 'critical', 'group-1', '9', 1, 1, 0.0, '{}')"
            )
    finally:
        conn.close()


async def test_two_stores_on_one_file_change_an_incident_once(tmp_path: Path) -> None:
    path = tmp_path / "notifier.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    await first.open()
    await second.open()
    try:
        await assert_one_change_wins(first, second)
    finally:
        await first.close()
        await second.close()


async def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "notifier.db"
    first = SQLiteStore(path)
    await first.open()
    await first.enqueue([planned("queued", "g1"), planned("dead", "g2")], now=100.0)
    await first.claim(limit=2, lease=30.0, now=100.0)
    await first.release("queued", not_before=150.0)
    await first.dead_letter(record("dead", at=101.0, outcome="dead", reason="auth"))
    await first.put_thread("group", ThreadRef("C1", "1.5"), ttl=3600.0, now=100.0)
    incident = new_incident("i1")
    await first.open_incident(incident, [step_timer(incident, 120.0)])
    await first.schedule_timers([timer("leased", 100.0), timer("waiting", 130.0)])
    await first.claim_timers(limit=1, lease=30.0, now=100.0)
    assert await first.remember_once("SM1", 3600.0, now=100.0)
    await first.close()

    second = SQLiteStore(path)
    await second.open()
    try:
        assert (await second.enqueue([planned("again", "g1")], now=110.0)).deduplicated == 1
        [job] = await second.claim(limit=5, lease=30.0, now=150.0)
        assert job.notification == planned("queued").notification
        [letter] = await second.dead_letters()
        assert (letter.id, letter.reason, letter.attempts) == ("dead", "auth", 1)
        assert [r.job_id for r in await second.deliveries()] == ["dead"]
        assert await second.get_thread("group") == ThreadRef("C1", "1.5")
        assert await second.open_incident_by_code("1111") == incident
        assert await second.next_timer_at() == 120.0
        claimed = await second.claim_timers(limit=5, lease=30.0, now=130.0)
        assert timer_ids(claimed) == ["i1:step@1", "leased", "waiting"]
        assert claimed[0] == step_timer(incident, 120.0)
        assert not await second.remember_once("SM1", 3600.0, now=110.0)
    finally:
        await second.close()


async def test_a_version_1_file_is_migrated_with_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "notifier.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO jobs (id, channel, payload, not_before, enqueued_at) VALUES (?, ?, ?, ?, ?)",
        ("a", "mail", planned("a", channel="mail").notification.model_dump_json(), 100.0, 100.0),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert [row[2] for row in query(path, "PRAGMA index_info(jobs_due)")][-1] == "channel"
        assert await store.claim(limit=5, lease=30.0, now=100.0, channel_limits={"mail": 0}) == []
        assert [job.id for job in await store.claim(limit=5, lease=30.0, now=100.0)] == ["a"]
    finally:
        await store.close()


def version_2_file(path: Path) -> None:
    """A file as notifier wrote it before the notification log: a job and a dedup mark."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO jobs (id, channel, payload, not_before, enqueued_at) VALUES (?, ?, ?, ?, ?)",
        ("a", "mail", planned("a", channel="mail").notification.model_dump_json(), 100.0, 100.0),
    )
    conn.execute("INSERT INTO dedup (key, expires_at) VALUES ('0123abcd', 1e12)")
    conn.execute("PRAGMA user_version = 2")
    conn.close()


async def test_a_version_2_file_trades_its_dedup_marks_for_the_log_and_keeps_its_jobs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "notifier.db"
    version_2_file(path)
    store = SQLiteStore(path)
    await store.open()
    try:
        assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        tables = {n for (n,) in query(path, "SELECT name FROM sqlite_master WHERE type='table'")}
        assert "notification_log" in tables
        assert "dedup" not in tables
        assert [job.id for job in await store.claim(limit=5, lease=30.0, now=100.0)] == ["a"]
        assert (await store.enqueue([planned("b", "g")], now=100.0)).enqueued == ("b",)
        assert (await store.enqueue([planned("c", "g")], now=101.0)).deduplicated == 1
    finally:
        await store.close()
    # The operator hears what the old marks' loss costs.
    [note] = [r.getMessage() for r in caplog.records if r.name == "notifier.store.sqlite_schema"]
    assert "notified once more" in note and "resolution is not sent" in note


async def test_a_new_file_says_nothing_about_migrating(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "notifier.db")
    await store.open()
    await store.close()
    assert not [r for r in caplog.records if r.name == "notifier.store.sqlite_schema"]


async def test_a_schema_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notifier.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SQLiteStore(path)
    newer = f"schema is version {SCHEMA_VERSION + 1}, newer than this notifier's {SCHEMA_VERSION}"
    with pytest.raises(StoreUnavailable, match=newer):
        await store.open()
    await store.close()


@contextmanager
def counting_commits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Record the thread of every COMMIT the store's writer connection runs."""
    commits: list[int] = []

    def connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
        conn = connect_writer(path, synchronous)
        conn.set_trace_callback(
            lambda sql: commits.append(threading.get_ident()) if sql == "COMMIT" else None
        )
        return conn

    monkeypatch.setattr(sqlite_module, "connect_writer", connect)
    yield commits


async def test_concurrent_writes_share_commits_off_the_event_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with counting_commits(monkeypatch) as commits:
        store = SQLiteStore(tmp_path / "notifier.db")
        await store.open()
        commits.clear()
        results = await asyncio.gather(
            *(store.enqueue([planned(f"j{i}")], now=100.0) for i in range(200))
        )
        enqueue_commits = len(commits)
        claimed = await store.claim(limit=200, lease=30.0, now=100.0)
        commits.clear()
        await asyncio.gather(*(store.complete(record(job.id, at=101.0)) for job in claimed))
        complete_commits = len(commits)
        await store.close()

    assert sum(len(r.enqueued) for r in results) == 200
    assert 1 <= enqueue_commits <= 20, enqueue_commits
    assert 1 <= complete_commits <= 20, complete_commits
    assert threading.get_ident() not in commits
    # Committed when the calls returned: another connection sees every completion.
    assert query(store.path, "SELECT count(*) FROM jobs") == [(0,)]
    assert query(store.path, "SELECT count(*) FROM deliveries") == [(200,)]


async def test_an_op_that_fails_fails_alone_in_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "ops.db"
    writer = GroupCommitWriter(lambda: sqlite3.connect(path, isolation_level=None), "test db")
    writer.start()
    await writer.run(lambda c: c.execute("CREATE TABLE t (x INTEGER UNIQUE)"))

    def insert(x: int) -> Callable[[sqlite3.Connection], None]:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (?)", (x,))
            if x == 3:
                raise ValueError("op 3 is broken")

        return op

    # While the writer sleeps in the first op, the six others queue up as one batch.
    ops = [writer.run(lambda c: time.sleep(0.1)), *(writer.run(insert(x)) for x in range(6))]
    results = await asyncio.gather(*ops, return_exceptions=True)
    await writer.stop()
    assert [type(r).__name__ for r in results[1:]] == ["NoneType"] * 3 + ["ValueError"] + [
        "NoneType"
    ] * 2
    assert query(path, "SELECT x FROM t ORDER BY x") == [(0,), (1,), (2,), (4,), (5,)]


async def test_a_busy_writer_waits_its_commit_delay_to_commit_more_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "delay.db"
    commits: list[str] = []

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        return conn

    def insert(x: int) -> Callable[[sqlite3.Connection], None]:
        return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (x,)) and None

    writer = GroupCommitWriter(connect, "test db", commit_delay=1.0)
    writer.start()
    try:
        await writer.run(lambda c: c.execute("CREATE TABLE t (x)"))  # alone: no delay
        assert len(commits) == 1
        busy = writer.submit(lambda c: time.sleep(0.2))
        await asyncio.sleep(0.05)  # the writer is in that op: the next three queue up
        queued = [writer.submit(insert(x)) for x in (1, 2, 3)]
        await busy
        await asyncio.sleep(0.1)  # they found each other waiting: the writer delays them
        late = writer.submit(insert(4))
        await asyncio.gather(*queued, late)
    finally:
        await writer.stop()
    assert len(commits) == 3  # the create, the busy op, then 1 to 4 together
    assert query(path, "SELECT x FROM t ORDER BY x") == [(1,), (2,), (3,), (4,)]


async def test_a_claim_run_again_in_its_batch_still_takes_each_channels_share(
    store: SQLiteStore,
) -> None:
    """An op that fails makes the writer run its batch again: the claim in it must start
    from the shares it was given, not from what its first run used up."""
    await store.enqueue([planned(f"mail-{i}", channel="mail") for i in range(3)], now=100.0)
    writer = store._writer  # the store's own writer, to put a failing op in the claim's batch

    def broken(conn: sqlite3.Connection) -> None:
        raise ValueError("this op is broken")

    # While the writer sleeps in the first op, the claim and the broken op queue up as one
    # batch; the broken op rolls it back and the batch runs again, op by op.
    results = await asyncio.gather(
        writer.run(lambda c: time.sleep(0.1)),
        store.claim(limit=5, lease=30.0, now=100.0, channel_limits={"mail": 2}),
        writer.run(broken),
        return_exceptions=True,
    )
    claimed = results[1]
    assert isinstance(claimed, list)
    assert [job.id for job in claimed] == ["mail-0", "mail-1"]
    assert isinstance(results[2], ValueError)


async def test_a_bug_outside_the_ops_is_raised_and_logged_not_called_an_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bug.db"
    bugs = [TypeError("a bug in connect")]

    def connect() -> sqlite3.Connection:
        if bugs:
            raise bugs.pop()
        return sqlite3.connect(path, isolation_level=None)

    writer = GroupCommitWriter(connect, "test db")
    writer.start()
    try:
        with pytest.raises(TypeError, match="a bug in connect"):
            await writer.run(lambda c: c.execute("CREATE TABLE t (x)"))
        await writer.run(lambda c: c.execute("CREATE TABLE t (x)"))  # the thread lives on
    finally:
        await writer.stop()
    [logged] = [r for r in caplog.records if r.name == "notifier.store.sqlite_threads"]
    assert logged.levelno == logging.ERROR and logged.exc_info is not None
    assert "unexpectedly" in logged.getMessage()
    assert query(path, "SELECT name FROM sqlite_master") == [("t",)]


async def test_unopenable_path_is_unavailable_until_fixed(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    store = SQLiteStore(blocker / "notifier.db")
    with pytest.raises(StoreUnavailable, match=re.escape(str(blocker))):
        await store.open()
    blocker.unlink()
    await store.ping()  # the store connects on its own once the path is usable
    assert (await store.enqueue([planned("a")], now=100.0)).enqueued == ("a",)
    await store.close()


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


async def test_unwritable_file_is_unavailable_and_recovers(store: SQLiteStore) -> None:
    """Tests run as root, which ignores permission bits: the immutable attribute binds root.

    Only the database and its WAL are made immutable. The ``-shm`` file is memory-mapped
    and must stay writable (an immutable mapped file kills the process with SIGBUS).
    """
    require_binary("chattr")
    await store.enqueue([planned("before")], now=100.0)
    files = [store.path, store.path.with_name(store.path.name + "-wal")]
    try:
        chattr("+i", *files)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"chattr +i is not supported here: {exc.stderr.decode().strip()}")
    try:
        with pytest.raises(StoreUnavailable, match=f"{re.escape(str(store.path))} cannot write"):
            await store.enqueue([planned("during")], now=101.0)
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        chattr("-i", *files)
    await store.ping()
    assert (await store.enqueue([planned("after")], now=102.0)).enqueued == ("after",)
    claimed = await store.claim(limit=10, lease=30.0, now=102.0)
    assert sorted(job.id for job in claimed) == ["after", "before"]


async def test_delivery_log_stays_bounded_under_many_writes(store: SQLiteStore) -> None:
    await asyncio.gather(*(store.complete(record(f"j{i}", at=float(i))) for i in range(250)))
    assert query(store.path, "SELECT count(*), min(at), max(at) FROM deliveries") == [
        (100, 150.0, 249.0)
    ]
