"""The servers of the benchmark, each started as a process and always stopped.

- ``sink()``: ``bench/sink.py`` on the load core (not pinned beside two replicas).
- ``service()``: the real ``notifier serve`` (``python -m notifier``) on the server core,
  on a config with SQLite under a temp dir and one webhook channel pointing at the sink.
- ``services()``: ``options.replicas`` of them on one store (Redis: one core each).
- ``bare()``: ``bench/bare_handler.py`` on the server core.
- ``forwarder()``: ``bench/forwarder.py`` (the floor of ``--against alertmanager``) on the
  server core, forwarding to the sink.
- ``redis_server()``: a private ``redis-server`` (for ``--store redis``), on a free port,
  AOF ``appendfsync everysec`` as deployed, no RDB snapshots, under the temp dir.

Each is a context manager yielding its ``Server`` (base URL, process); on exit the
process group is terminated even when the body raised.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from procs import PYTHON, ROOT, Placement, free_port, log_tail, running, wait_ready

from notifier.testing import TEMPLATES_DIR

_CONFIG = """\
# Written by bench/run.py: the real service, durable, one webhook channel to the sink.
server:
  listen: "127.0.0.1:{port}"
  shutdown_grace: 3s
storage:
  url: "{store_url}"
{workers}templates_dir: "{templates}"
defaults:
  repeat_interval: 4h
channels:
  sink:
    type: webhook
    url: "http://127.0.0.1:{sink_port}/hook"
default_channels: [sink]
"""


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rpartition(":")[2])


@dataclass(frozen=True)
class ServiceOptions:
    """What the benchmark may vary in the service's config (defaults: as shipped)."""

    log_level: str = "info"
    store: str = "sqlite"  # "memory" (not durable: to see what the store costs) or "redis"
    workers: int | None = None  # storage.workers; None keeps the default
    replicas: int = 1  # ``notifier serve`` processes on one store (more than one: Redis)
    redis_url: str | None = None  # the private redis-server's, with ``store="redis"``


def write_service_config(workdir: Path, port: int, sink_port: int, options: ServiceOptions) -> Path:
    path = workdir / "notifier.yaml"
    store_url = {
        "memory": "memory://",
        "redis": options.redis_url or "",
        "sqlite": f"sqlite:///{workdir / 'notifier.db'}",
    }[options.store]
    workers = f"  workers: {options.workers}\n" if options.workers else ""
    path.write_text(
        _CONFIG.format(
            port=port,
            store_url=store_url,
            workers=workers,
            templates=TEMPLATES_DIR,
            sink_port=sink_port,
        )
    )
    return path


@contextlib.asynccontextmanager
async def serve(
    name: str, argv: list[str], port: int, ready_path: str, core: int | None, log: Path
) -> AsyncIterator[Server]:
    with running(argv, core=core, log=log) as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url + ready_path, proc, log)
        yield Server(name, url, proc, log)


def sink(workdir: Path, placement: Placement) -> contextlib.AbstractAsyncContextManager[Server]:
    port = free_port()
    argv = [PYTHON, str(ROOT / "bench/sink.py"), "--listen", f"127.0.0.1:{port}"]
    return serve("sink", argv, port, "/stats", placement.load, workdir / "sink.log")


def bare(workdir: Path, placement: Placement) -> contextlib.AbstractAsyncContextManager[Server]:
    port = free_port()
    argv = [PYTHON, str(ROOT / "bench/bare_handler.py"), "--listen", f"127.0.0.1:{port}"]
    return serve("bare", argv, port, "/-/ready", placement.server, workdir / "bare.log")


def forwarder(
    workdir: Path, placement: Placement, sink_server: Server
) -> contextlib.AbstractAsyncContextManager[Server]:
    port = free_port()
    argv = [PYTHON, str(ROOT / "bench/forwarder.py"), "--listen", f"127.0.0.1:{port}"]
    argv += ["--sink", f"{sink_server.url}/hook"]
    return serve("floor", argv, port, "/-/ready", placement.server, workdir / "forwarder.log")


@contextlib.asynccontextmanager
async def services(
    workdir: Path, sink_server: Server, placement: Placement, options: ServiceOptions
) -> AsyncIterator[list[Server]]:
    """``options.replicas`` ``notifier serve`` processes, each on its own config and port.

    On SQLite each part gets a fresh database under ``workdir``; on Redis every key is
    flushed (and Redis's command statistics reset) first.
    """
    if options.redis_url:
        await flush_redis(options.redis_url)
    async with contextlib.AsyncExitStack() as stack:
        replicas = []
        for index, core in enumerate(placement.replicas[: options.replicas]):
            name = "service" if options.replicas == 1 else f"service-{index + 1}"
            folder = workdir if options.replicas == 1 else workdir / name
            folder.mkdir(parents=True, exist_ok=True)
            port = free_port()
            config = write_service_config(folder, port, sink_server.port, options)
            argv = [PYTHON, "-m", "notifier", "serve", "--config", str(config)]
            argv += ["--listen", f"127.0.0.1:{port}", "--log-level", options.log_level]
            replica = serve(name, argv, port, "/-/ready", core, folder / "service.log")
            replicas.append(await stack.enter_async_context(replica))
        yield replicas


@contextlib.contextmanager
def redis_server(workdir: Path, core: int | None) -> Iterator[Server]:
    """A private redis-server for this run (AOF everysec, no snapshots); always stopped."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server not found; install it with: sudo apt-get install -y redis-server"
        )
    folder = workdir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), folder / "redis.log"
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    with running(argv, core=core, log=log) as proc:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_timeout=1.0)
        for _ in range(200):  # up to 10 s
            if proc.poll() is not None:
                break
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"redis-server not ready after 10 s:\n{log_tail(log)}")
        client.close()
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}:\n{log_tail(log)}")
        yield Server("redis", url, proc, log)


async def flush_redis(url: str) -> None:
    """Delete every key and reset the command statistics (a fresh store for a part)."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushall()
        await client.config_resetstat()
    finally:
        await client.aclose()


async def redis_commandstats(url: str) -> dict[str, dict[str, Any]]:
    """Redis's own time per command since the last flush (``INFO commandstats``), by total."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        stats: dict[str, dict[str, Any]] = await client.info("commandstats")
    finally:
        await client.aclose()
    return dict(
        sorted(
            ((name.removeprefix("cmdstat_"), value) for name, value in stats.items()),
            key=lambda item: -float(item[1].get("usec", 0)),
        )
    )
