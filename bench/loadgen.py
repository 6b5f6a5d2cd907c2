"""A lean HTTP/1.1 POST load generator on raw asyncio streams (keep-alive, no pipelining).

aiohttp's client costs several times more CPU per request than the servers we measure
spend, so the Python side of the benchmark writes requests by hand: one prebuilt head,
the body, then it reads the status line, ``Content-Length`` and the body of the answer.
It only talks to the servers of this benchmark (aiohttp, which always sends
``Content-Length`` for our answers).

Every run is bounded: by a number of requests and by a deadline, whichever comes first.
``make_body(i)`` is called just before request ``i`` is written, so a body may carry its
own send time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

BodyFactory = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    path: str


@dataclass
class LoadResult:
    """What a run did: one latency (ns) per answered request, by status."""

    latencies_ns: list[int] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    first_sent_ns: int = 0  # wall clock
    elapsed_s: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)


def _head(target: Target, length: int) -> bytes:
    return (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def _read_answer(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    start = lowered.find(b"content-length:")
    if start < 0:
        raise ConnectionError("answer without Content-Length")
    end = lowered.find(b"\r\n", start)
    await reader.readexactly(int(lowered[start + 15 : end]))
    return status


class Connection:
    """One keep-alive connection that posts one body at a time."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> Connection:
        self._streams = await asyncio.open_connection(self.target.host, self.target.port)
        return self

    async def post(self, body: bytes) -> int:
        """Write one request, read its answer, return the status code."""
        assert self._streams is not None, "open() first"
        reader, writer = self._streams
        writer.write(_head(self.target, len(body)) + body)
        return await _read_answer(reader)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def _connection(
    target: Target,
    indexes: Iterator[int],
    make_body: BodyFactory,
    deadline: float,
    result: LoadResult,
) -> None:
    """One keep-alive connection posting bodies until the indexes or the time run out."""
    connection = await Connection(target).open()
    try:
        for index in indexes:
            if time.perf_counter() >= deadline:
                return
            body = make_body(index)
            if not result.first_sent_ns:
                result.first_sent_ns = time.time_ns()
            started = time.perf_counter_ns()
            try:
                status = await connection.post(body)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                return
            result.latencies_ns.append(time.perf_counter_ns() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        connection.close()


async def post_bodies(
    targets: Sequence[Target],
    make_body: BodyFactory,
    *,
    connections: int,
    duration: float,
    count: int | None = None,
) -> LoadResult:
    """POST ``make_body(0..count-1)`` over ``connections`` connections, ``duration`` s at most.

    Connection ``i`` goes to ``targets[i % len(targets)]`` (round robin over replicas).
    """
    indexes = iter(range(count)) if count is not None else itertools.count()
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + duration
    tasks = [
        _connection(targets[i % len(targets)], indexes, make_body, deadline, result)
        for i in range(connections)
    ]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    result.errors += sum(1 for outcome in outcomes if isinstance(outcome, BaseException))
    result.elapsed_s = time.perf_counter() - started
    return result
