"""Malformed or slow HTTP at the receiver, sent byte by byte over a raw socket: never a 500,
a stalled body is dropped after ``server.read_timeout``, ``Expect: 100-continue`` is
answered only for a request that will be read (DESIGN §2)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, LOG_CONFIG, AppFactory
from tests.processes import running_notifier, wait_until
from tests.stand_ins import write_config

FIRING = (FIXTURES / "firing_single.json").read_bytes()
TOKEN = b"Bearer s3cret-token"
READ_TIMEOUT_CONFIG = LOG_CONFIG.replace(
    "  max_body_bytes: 65536\n", "  max_body_bytes: 65536\n  read_timeout: 1s\n"
)


class RawConnection:
    """One TCP connection to the test server; every read is bounded."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, client: Any) -> RawConnection:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def status_line(self) -> bytes:
        async with asyncio.timeout(10):
            return (await self.reader.readline()).strip()

    async def head_and_body(self) -> tuple[list[bytes], bytes]:
        """The header lines and the body of a response whose status line was read."""
        async with asyncio.timeout(10):
            head = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[:-2]
            [length] = [
                int(h.split(b":")[1]) for h in head if h.lower().startswith(b"content-length:")
            ]
            return head, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def request_head(length: int, *headers: bytes) -> bytes:
    lines = [
        b"POST /api/v1/alerts HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: %d" % length,
        *headers,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def test_non_utf8_credentials_are_a_401_counted_without_a_traceback(
    app_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await app_client()
    connection = await RawConnection.open(client)
    try:
        with caplog.at_level(logging.INFO):
            await send_and_close(connection, FIRING, b"Authorization: Bearer \xff\xfe\x80")
            assert await connection.status_line() == b"HTTP/1.1 401 Unauthorized"
    finally:
        connection.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    metrics = await (await client.get("/metrics")).text()
    assert 'notifier_http_requests_total{code="401"} 1.0' in metrics


async def send_and_close(connection: RawConnection, body: bytes, *headers: bytes) -> None:
    await connection.send(request_head(len(body), b"Connection: close", *headers) + body)


async def test_a_stalled_body_is_dropped_after_the_read_timeout(app_client: AppFactory) -> None:
    client = await app_client(READ_TIMEOUT_CONFIG)
    stalled = await RawConnection.open(client)
    try:
        await stalled.send(request_head(len(FIRING), b"Authorization: " + TOKEN))
        await stalled.send(FIRING[: len(FIRING) // 2])  # then nothing more
        # Others are served meanwhile.
        headers = {"Content-Type": "application/json", "Authorization": TOKEN.decode()}
        ok = await client.post("/api/v1/alerts", data=FIRING, headers=headers)
        assert ok.status == 202
        assert await stalled.status_line() == b"HTTP/1.1 408 Request Timeout"
        head, body = await stalled.head_and_body()
        assert b"Connection: close" in head  # the rest of that body is not read
        assert b"server.read_timeout (1s)" in body
    finally:
        stalled.close()
    metrics = await (await client.get("/metrics")).text()
    assert 'notifier_http_requests_total{code="408"} 1.0' in metrics


@pytest.mark.parametrize(
    ("length", "headers", "status"),
    [
        (len(FIRING), (), b"HTTP/1.1 401 Unauthorized"),
        (len(FIRING), (b"Authorization: Bearer nope",), b"HTTP/1.1 401 Unauthorized"),
        (65537, (b"Authorization: " + TOKEN,), b"HTTP/1.1 413 Request Entity Too Large"),
    ],
    ids=["no credentials", "wrong credentials", "too large"],
)
async def test_expect_100_continue_is_refused_before_the_body_is_sent(
    app_client: AppFactory, length: int, headers: tuple[bytes, ...], status: bytes
) -> None:
    client = await app_client()
    connection = await RawConnection.open(client)
    try:
        await connection.send(request_head(length, b"Expect: 100-continue", *headers))
        # The final answer comes first: no "100 Continue" invites the body.
        assert await connection.status_line() == status
    finally:
        connection.close()


async def test_expect_100_continue_invites_an_acceptable_body(app_client: AppFactory) -> None:
    client = await app_client()
    connection = await RawConnection.open(client)
    try:
        head = request_head(
            len(FIRING), b"Expect: 100-continue", b"Authorization: " + TOKEN, b"Connection: close"
        )
        await connection.send(head)
        assert await connection.status_line() == b"HTTP/1.1 100 Continue"
        assert await connection.status_line() == b""  # the end of the interim response
        await connection.send(FIRING)
        assert await connection.status_line() == b"HTTP/1.1 202 Accepted"
    finally:
        connection.close()


async def test_unparseable_http_is_one_warning_line_quoting_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "notifier.yaml", {"console": {"type": "log"}})
    async with running_notifier(config, tmp_path) as notifier:
        reader, writer = await asyncio.open_connection("127.0.0.1", notifier.port)
        try:
            # aiohttp refuses the header line itself and quotes it in its error.
            writer.write(request_head(2, b"Authorization: Bearer leaked-" + b"x" * 9000) + b"{}")
            await writer.drain()
            async with asyncio.timeout(10):
                assert (await reader.readline()).startswith(b"HTTP/1.0 400")
        finally:
            writer.close()

        def warned() -> list[dict[str, Any]]:
            lines = [json.loads(x) for x in notifier.log().splitlines() if x.startswith("{")]
            return [x for x in lines if x["msg"] == "malformed HTTP request"]

        await wait_until(lambda: bool(warned()), "the warning line")
        assert warned() == [
            {
                "ts": warned()[0]["ts"],
                "level": "warning",
                "logger": "aiohttp.server",
                "msg": "malformed HTTP request",
                "error": "LineTooLong",
                "status": 400,
            }
        ]
        assert "leaked" not in notifier.log() and "Traceback" not in notifier.log()
