"""The two threads that own the SQLite store's connections; the event loop never blocks on SQLite.

``GroupCommitWriter``: every write is a small function of a connection (an *op*). The
ops submitted during one event-loop turn go on a queue together at the turn's end: one
wake-up of the thread per turn, not per op. One thread takes whatever ops are waiting
(about ``max_batch``), runs them in ONE transaction, commits, and only then resolves each
caller's future. While it commits (an fsync), new ops pile up and form the next batch,
so under load one fsync serves many requests: a group commit. When the store is busy (a
batch finds several others already waiting), the thread waits ``commit_delay`` for more
before committing, as PostgreSQL's ``commit_delay`` does, so each fsync serves a larger
batch.

- An op that raises (a bug, a constraint) fails alone; the rest of the batch commits.
  Ops run without savepoints (they cost two statements each); when one raises, the
  transaction is rolled back and the batch runs again with a savepoint per op.
- A store-level error (``OperationalError``: disk I/O error, read-only file, disk full,
  database locked past the busy timeout; an unreadable file) fails the whole batch with
  ``StoreUnavailable`` and drops the connection. The next op opens a new one, so the
  store recovers by itself once the file is writable again.
- Any other exception outside the ops is a bug, not an outage: it is logged with its
  traceback and fails the batch with itself, never as ``StoreUnavailable``.

``Reader``: one thread with its own read-only connection, so queries (stats, listings)
never wait behind a commit; WAL lets them read while the writer writes.

This module knows nothing of the schema beyond ``sqlite_schema``'s connect functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from notifier.store.base import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], T]

# Errors that belong to one op (its own bug or constraint), not to the store.
_OP_ERRORS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


@dataclass(frozen=True, slots=True)
class _Item:
    op: Op[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


# When a batch finds several ops already waiting, the writer waits this long (seconds) for
# more before it commits: under load each commit (an fsync) then serves several times
# as many ops. Every request waiting for its 202 waits this too, and a storm over 64
# connections is bound by that wait: 5,000 alerts ran at 4,350/s with 2 ms, 4,900-5,000/s
# with 1 ms (the core 20% idle), and at 0 ms the batches shrink and each notification
# costs about 10% more CPU.
COMMIT_DELAY = 0.001
_BUSY = 3  # ops in a batch that make the store count as busy (PostgreSQL's commit_siblings)

_Outcome = tuple[_Item, Any, BaseException | None]
_STOP = object()


def _store_level(exc: BaseException) -> bool:
    """True when ``exc`` says the store cannot be used, rather than that one op is wrong."""
    return isinstance(exc, sqlite3.Error | OSError) and not isinstance(exc, _OP_ERRORS)


def _resolve(outcomes: list[_Outcome]) -> None:
    """Resolve futures on their own loop (called there, once per batch and loop)."""
    for item, value, error in outcomes:
        if item.future.done():  # the caller was cancelled
            continue
        if error is None:
            item.future.set_result(value)
        else:
            item.future.set_exception(error)


class GroupCommitWriter:
    """One thread, one connection, one transaction per batch of queued ops."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        name: str,
        *,
        max_batch: int = 1024,
        commit_delay: float = COMMIT_DELAY,
    ) -> None:
        self._connect = connect
        self._name = name  # e.g. "SQLite store /data/notifier.db", for error messages
        self._max_batch = max_batch
        self._commit_delay = commit_delay
        self._queue: queue.SimpleQueue[list[_Item] | object] = queue.SimpleQueue()
        self._pending: list[_Item] = []  # submitted this loop turn, handed over at its end
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def start(self) -> None:
        if self._thread is None:
            # A daemon, so a process that exits without close() does not hang on it;
            # SQLite's WAL makes a cut-off transaction simply absent.
            self._thread = threading.Thread(
                target=self._run, name="notifier-sqlite-writer", daemon=True
            )
            self._thread.start()

    async def stop(self) -> None:
        """Finish the queued ops, close the connection, end the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._hand_over()  # the ops submitted this loop turn go before the stop
            self._queue.put(_STOP)
            await asyncio.to_thread(thread.join)

    async def run(self, op: Op[T]) -> T:
        """Run ``op`` in the next batch; return its result once the batch is committed."""
        return await self.submit(op)

    def submit(self, op: Op[T]) -> asyncio.Future[T]:
        """Queue ``op`` for the next batch; the future settles once the batch is committed."""
        if self._thread is None:
            raise StoreUnavailable(f"{self._name} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._hand_over)
        self._pending.append(_Item(op, future, loop))
        return future

    def _hand_over(self) -> None:
        """Give the writer this loop turn's ops at once: one wake-up of its thread, not one
        per op (each costs the event loop a switch to that thread and back)."""
        pending, self._pending = self._pending, []
        if pending:  # stop() may have handed them over already
            self._queue.put(pending)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, list)
            batch = first
            stopping = self._take_waiting(batch)
            if len(batch) >= _BUSY and not stopping and self._commit_delay > 0:
                # Others were waiting: the store is busy. A moment more gathers a larger
                # batch for the same commit. A lone op, or two that met by chance (as when
                # alerts come one at a time), commits at once.
                time.sleep(self._commit_delay)
                stopping = self._take_waiting(batch)
            self._hand_back(self._execute(batch))
            if stopping:
                break
        self._drop_connection()

    def _take_waiting(self, batch: list[_Item]) -> bool:
        """Add the queued ops to ``batch``, a loop turn's at a time, until it holds ``max_batch``
        or more; True when stop() was asked."""
        while len(batch) < self._max_batch:
            try:
                items = self._queue.get_nowait()
            except queue.Empty:
                return False
            if items is _STOP:
                return True
            assert isinstance(items, list)
            batch += items
        return False

    def _execute(self, batch: list[_Item]) -> list[_Outcome]:
        try:
            if self._conn is None:
                self._conn = self._connect()
            outcomes = self._transaction(self._conn, batch, savepoints=False)
            if outcomes is None:
                # An op failed on its own: its partial writes are in the transaction, which
                # was rolled back whole. Run the batch again, each op in a savepoint, so the
                # failing op fails alone. Ops are functions of the connection only, so
                # running one again after the rollback is safe.
                outcomes = self._transaction(self._conn, batch, savepoints=True)
                assert outcomes is not None
        except StoreUnavailable as exc:  # raised by connect (schema too new, SQLite too old)
            self._drop_connection()
            return [(item, None, exc) for item in batch]
        except (sqlite3.Error, OSError) as exc:
            log.warning("%s cannot write: %s", self._name, exc)
            self._drop_connection()
            error = StoreUnavailable(f"{self._name} cannot write: {exc}")
            return [(item, None, error) for item in batch]
        except Exception as exc:  # the thread must outlive a bug, and report it
            # A bug here (not in one op: those fail alone above) is not an outage: the
            # callers get the exception itself, not a 503-meaning StoreUnavailable.
            log.exception("%s: writing a batch failed unexpectedly", self._name)
            self._drop_connection()
            return [(item, None, exc) for item in batch]
        return outcomes

    @staticmethod
    def _transaction(
        conn: sqlite3.Connection, batch: list[_Item], *, savepoints: bool
    ) -> list[_Outcome] | None:
        """Run ``batch`` in one transaction and commit it; a store-level error propagates.

        Without ``savepoints`` (the usual case: two statements fewer per op) the first op
        that raises rolls the transaction back and the result is None. With them, such an
        op is rolled back to its savepoint and fails alone; the rest commit.
        """
        outcomes: list[_Outcome] = []
        conn.execute("BEGIN IMMEDIATE")
        for item in batch:
            if savepoints:
                conn.execute("SAVEPOINT op")
            try:
                value = item.op(conn)
            except Exception as exc:
                if _store_level(exc):
                    raise
                if not savepoints:
                    conn.execute("ROLLBACK")
                    return None
                conn.execute("ROLLBACK TO op")
                outcomes.append((item, None, exc))
            else:
                outcomes.append((item, value, None))
            if savepoints:
                conn.execute("RELEASE op")
        conn.execute("COMMIT")
        return outcomes

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection is being thrown away; the rollback is best effort
            conn.close()

    @staticmethod
    def _hand_back(outcomes: list[_Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, settled in by_loop.items():
            # A closed loop raises RuntimeError: nobody there is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, settled)


class Reader:
    """One thread with its own read-only connection; each query runs in one read transaction."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="notifier-sqlite-reader")

    async def stop(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._drop_connection)
            executor.shutdown(wait=False)

    async def run(self, op: Op[T]) -> T:
        if self._executor is None:
            raise StoreUnavailable(f"{self._name} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, op)

    def _call(self, op: Op[T]) -> T:
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._conn.execute("BEGIN")
            try:
                return op(self._conn)
            finally:
                self._conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if not _store_level(exc):
                raise
            self._drop_connection()
            raise StoreUnavailable(f"{self._name} cannot be read: {exc}") from exc

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
