"""``Coalescer``: values added during one event-loop turn, written together in one call.

A storm completes many jobs per loop turn; each completion written as its own writer op
cost a future, a queue hand-off and a wake-up of the writer thread, and its own
statements. Gathered, they cost one of each per turn, and each caller still returns only
once its value is written (or fails with the batch's error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

T = TypeVar("T")

# Starts writing a batch; the future settles once it is written (or failed).
Write = Callable[[list[T]], "asyncio.Future[None]"]


class Coalescer(Generic[T]):
    def __init__(self, write: Write[T]) -> None:
        self._write = write
        self._values: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []

    async def add(self, value: T) -> None:
        """Return once ``value`` is written with whatever else was added in this loop turn."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if not self._values:
            loop.call_soon(self._flush)
        self._values.append(value)
        self._waiters.append(waiter)
        await waiter

    def _flush(self) -> None:
        values, waiters = self._values, self._waiters
        self._values, self._waiters = [], []
        try:
            written = self._write(values)
        except Exception as exc:  # e.g. the store is closed: every waiter hears it
            _settle(waiters, exc)
            return
        written.add_done_callback(partial(_fan_out, waiters))


def _fan_out(waiters: list[asyncio.Future[None]], written: asyncio.Future[None]) -> None:
    _settle(waiters, None if written.cancelled() else written.exception())


def _settle(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for waiter in waiters:
        if waiter.done():  # its caller was cancelled; the value is written anyway
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
