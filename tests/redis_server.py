"""The real Redis servers the Redis store's tests use, and a clean key prefix per test.

The shared server at 127.0.0.1:6379 holds most tests (each under its own prefix);
``PrivateRedis`` starts a redis-server of the test's own where a test must stop it, or
needs a password or TLS. Locally a missing server skips the test with the reason;
under ``CI=true`` it fails, so a build server without Redis cannot pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from notifier.store.redis import RedisStore
from tests.binaries import require_binary

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def require_redis() -> str:
    """The URL of the test Redis server; skip (or fail when ``CI=true``) if none answers."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            answered = conn.recv(16).startswith(b"+PONG")
    except OSError:
        answered = False
    if answered:
        return REDIS_URL
    message = f"no Redis server answers at {REDIS_HOST}:{REDIS_PORT} (apt-get install redis-server)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true, so this is a failure", pytrace=False)
    pytest.skip(message)


def fresh_prefix() -> str:
    """A key prefix no other test shares."""
    return f"notifier-test-{uuid.uuid4().hex}:"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of the test's own (started and stopped at will), keeping nothing on disk
    unless ``options`` say so (``--appendonly yes``): then ``kill`` and ``start`` again is a
    crash and a restart on the same data."""

    def __init__(self, folder: Path, port: int, *options: str) -> None:
        self.folder = folder
        self.port = port
        self.options = options
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = require_binary("redis-server")
        log = self.folder / f"redis-{self.port}.log"
        log.write_text("")
        self._process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
                *("--dir", str(self.folder), "--logfile", str(log)),
                *self.options,  # later options win, e.g. "--port 0 --tls-port N"
            ],
        )
        for _ in range(200):  # up to 10 s
            if "Ready to accept connections" in log.read_text():
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"redis-server did not start:\n{log.read_text()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL, a crash: nothing is written on the way out, only what was already on disk."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def started_redis(folder: Path, *options: str) -> Iterator[PrivateRedis]:
    """A ``PrivateRedis`` started in ``folder`` (made here) and killed on the way out."""
    folder.mkdir()
    server = PrivateRedis(folder, free_port(), *options)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@contextlib.asynccontextmanager
async def replica_stores() -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one fresh prefix of the shared server, as two replicas see it."""
    url, prefix = require_redis(), fresh_prefix()
    first, second = RedisStore(url, prefix=prefix), RedisStore(url, prefix=prefix)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.delete_all_keys()
        await first.close()
        await second.close()
