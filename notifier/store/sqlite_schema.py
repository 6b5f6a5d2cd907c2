"""The SQLite store's schema, its migrations, and how a connection to it is opened.

The schema version lives in ``PRAGMA user_version``. ``MIGRATIONS[i]`` takes a database
from version ``i`` to ``i + 1``; each runs in its own transaction together with the
version bump, so a crash mid-migration leaves the previous version intact. Add a
migration by appending to the tuple, never by editing a released one.

This module runs no queue logic and is called only from the store's own threads.

Tables:

- ``jobs``: the queue and the dead letters (``state`` queued/dead). A job may be claimed
  when ``coalesce(lease_until, not_before) <= now``: its scheduled time, or while it is
  leased, the end of its lease (``claim`` sets ``lease_until``, as does an enqueue
  that hands the job off; ``reschedule`` and ``release`` clear it). ``jobs_due``
  indexes exactly that expression, so claiming, ``next_due_at`` and the due counts are
  index range scans; it also holds the channel, so a claim that skips some channels
  tests each due job without reading its row.
- ``notification_log``: one entry per (channel, group): the fingerprints firing and
  resolved at the last notification (JSON arrays), its time, and its expiry; an
  expired entry counts as absent (``notifier.dedup``). ``deferred_job`` and ``told``
  keep a deferred job's id and the entry it replaced (``notifier.deferral``).
- ``deliveries``: the delivery log, trimmed to the newest N rows by id.
- ``threads``: Slack thread refs with their expiry.
- ``told``: the recipients each job's message already reached, with their expiry.
- ``timers``: scheduled wake-ups, one per ``key``; like a job, one may be claimed when
  ``coalesce(lease_until, due_at) <= now``, which ``timers_due`` indexes (with the id
  that breaks ties), so claiming and ``next_timer_at`` are index range scans.
- ``incidents``: each incident's JSON (``notifier.incidents.records``) beside the
  columns looked up by: partial unique indexes keep one open incident per (route,
  group) and per ack code; ``epoch`` is what ``change_incident`` compares and sets.
- ``seen``: the keys ``remember_once`` has seen, with their expiry.
- ``heartbeats``: one row per heartbeat (``notifier.heartbeats.state.HeartbeatState``).
- ``meta``: a row ``ping`` rewrites to prove the file is writable.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from notifier.store.base import StoreUnavailable

log = logging.getLogger(__name__)

Synchronous = Literal["FULL", "NORMAL"]

# ON CONFLICT ... DO UPDATE (upsert) needs 3.24; everything else is older.
MIN_SQLITE = (3, 24, 0)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            channel TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'dead')),
            not_before REAL NOT NULL,
            lease_until REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            enqueued_at REAL NOT NULL,
            first_attempt_at REAL,
            last_attempt_at REAL,
            reason TEXT,
            error TEXT
        )
        """,
        "CREATE INDEX jobs_due ON jobs (state, coalesce(lease_until, not_before), seq)",
        """
        CREATE TABLE dedup (
            key TEXT PRIMARY KEY,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX dedup_expiry ON dedup (expires_at)",
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            channel_type TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT,
            error TEXT NOT NULL,
            latency REAL NOT NULL,
            at REAL NOT NULL,
            received_at REAL NOT NULL,
            severity TEXT NOT NULL,
            status TEXT NOT NULL,
            alerts INTEGER NOT NULL
        )
        """,
        "CREATE INDEX deliveries_at ON deliveries (at)",
        """
        CREATE TABLE threads (
            key TEXT PRIMARY KEY,
            channel_id TEXT NOT NULL,
            ts TEXT NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX threads_expiry ON threads (expires_at)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('ping', 0)",
    ),
    (
        "DROP INDEX jobs_due",
        "CREATE INDEX jobs_due ON jobs (state, coalesce(lease_until, not_before), seq, channel)",
    ),
    (
        """
        CREATE TABLE told (
            job_id TEXT NOT NULL,
            recipient TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (job_id, recipient)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX told_expiry ON told (expires_at)",
    ),
    # The notification log replaces the dedup marks, which hashed the whole routed set
    # and cannot be turned into entries: they are dropped (MIGRATION_NOTES says what
    # that costs).
    (
        "DROP TABLE dedup",
        """
        CREATE TABLE notification_log (
            channel TEXT NOT NULL,
            group_id TEXT NOT NULL,
            firing TEXT NOT NULL,
            resolved TEXT NOT NULL,
            at REAL NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (channel, group_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX notification_log_expiry ON notification_log (expires_at)",
    ),
    # Timers and incidents (DESIGN §8, §11).
    (
        """
        CREATE TABLE timers (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            grp TEXT NOT NULL,
            kind TEXT NOT NULL,
            due_at REAL NOT NULL,
            lease_until REAL,
            data TEXT NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX timers_due ON timers (coalesce(lease_until, due_at), id)",
        "CREATE INDEX timers_group ON timers (grp)",
        """
        CREATE TABLE incidents (
            id TEXT PRIMARY KEY,
            route TEXT NOT NULL,
            group_key TEXT NOT NULL,
            ack_code TEXT NOT NULL,
            is_open INTEGER NOT NULL CHECK (is_open IN (0, 1)),
            epoch INTEGER NOT NULL,
            opened_at REAL NOT NULL,
            body TEXT NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE UNIQUE INDEX incidents_open_group ON incidents (route, group_key) WHERE is_open",
        "CREATE UNIQUE INDEX incidents_open_code ON incidents (ack_code) WHERE is_open",
        "CREATE INDEX incidents_listed ON incidents (is_open, opened_at)",
        """
        CREATE TABLE seen (
            key TEXT PRIMARY KEY,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX seen_expiry ON seen (expires_at)",
    ),
    # A deferred notification (DESIGN §9): its job, and the entry as it was before it
    # (JSON, 'null' for none), both NULL when no deferred job was enqueued.
    (
        "ALTER TABLE notification_log ADD COLUMN deferred_job TEXT",
        "ALTER TABLE notification_log ADD COLUMN told TEXT",
    ),
    (
        """
        CREATE TABLE heartbeats (
            name TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            armed_at REAL NOT NULL,
            due_at REAL NOT NULL,
            last_seen REAL,
            missed_since REAL
        ) WITHOUT ROWID
        """,
    ),
    # Storm digests count and fold one channel's waiting jobs (DESIGN §10).
    ("CREATE INDEX jobs_channel ON jobs (channel, state, seq)",),
)
SCHEMA_VERSION = len(MIGRATIONS)
# What an operator should hear when a file reaches a version, by that version.
MIGRATION_NOTES = {
    4: "the old dedup marks were replaced by the notification log: a group notified "
    "before the upgrade may be notified once more, and if all of it resolves before "
    "that, its resolution is not sent",
}


def connect_writer(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """Open (creating the folder and file if needed) and migrate; for the writer thread."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreUnavailable(f"SQLite {sqlite3.sqlite_version} is too old; 3.24 or newer needed")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        # Keep the WAL from growing without bound between checkpoints.
        conn.execute("PRAGMA journal_size_limit = 67108864")
        # A batch run again after an op failed puts each op in a savepoint, whose undo
        # journal is a temporary file: kept in memory, it costs no file write per op.
        conn.execute("PRAGMA temp_store = MEMORY")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """Open the existing file for queries only (``mode=rw`` never creates a stray file)."""
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode=rw", uri=True, isolation_level=None, timeout=5.0
    )
    conn.execute("PRAGMA query_only = ON")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to ``SCHEMA_VERSION``, one transaction per step.

    The version is read inside each step's write transaction, so two processes opening
    one new file at once do not both run a step.
    """
    fresh: bool | None = None  # a new file has nothing to lose in a migration
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if fresh is None:
                fresh = version == 0
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"the database schema is version {version}, newer than this notifier's "
                    f"{SCHEMA_VERSION}: upgrade notifier"
                )
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
            if version + 1 in MIGRATION_NOTES and not fresh:
                log.warning(
                    "SQLite store migrated to schema version %d: %s",
                    version + 1,
                    MIGRATION_NOTES[version + 1],
                )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
