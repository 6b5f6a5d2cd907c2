"""The three servers of the benchmark, each started as a process and always stopped.

- ``sink()``: ``bench/sink.py`` on the client core.
- ``service()``: the real ``notifier serve`` (``python -m notifier``) on the server core,
  on a config with SQLite under a temp dir and one webhook channel pointing at the sink.
- ``bare()``: ``bench/bare_handler.py`` on the server core.

Each is an async context manager yielding a ``Server`` (base URL, process); on exit the
process group is terminated even when the body raised.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from procs import PYTHON, ROOT, Placement, free_port, running, wait_ready

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
    store: str = "sqlite"  # or "memory" (not durable: to see what the store costs)
    workers: int | None = None  # storage.workers; None keeps the default


def write_service_config(workdir: Path, port: int, sink_port: int, options: ServiceOptions) -> Path:
    path = workdir / "notifier.yaml"
    store_url = "memory://" if options.store == "memory" else f"sqlite:///{workdir / 'notifier.db'}"
    workers = f"  workers: {options.workers}\n" if options.workers else ""
    path.write_text(
        _CONFIG.format(
            port=port,
            store_url=store_url,
            workers=workers,
            templates=ROOT / "templates",
            sink_port=sink_port,
        )
    )
    return path


@contextlib.asynccontextmanager
async def _serve(
    name: str, argv: list[str], port: int, ready_path: str, core: int | None, log: Path
) -> AsyncIterator[Server]:
    with running(argv, core=core, log=log) as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url + ready_path, proc, log)
        yield Server(name, url, proc, log)


def sink(workdir: Path, placement: Placement) -> contextlib.AbstractAsyncContextManager[Server]:
    port = free_port()
    argv = [PYTHON, str(ROOT / "bench/sink.py"), "--listen", f"127.0.0.1:{port}"]
    return _serve("sink", argv, port, "/stats", placement.client, workdir / "sink.log")


def bare(workdir: Path, placement: Placement) -> contextlib.AbstractAsyncContextManager[Server]:
    port = free_port()
    argv = [PYTHON, str(ROOT / "bench/bare_handler.py"), "--listen", f"127.0.0.1:{port}"]
    return _serve("bare", argv, port, "/-/ready", placement.server, workdir / "bare.log")


def service(
    workdir: Path, sink_server: Server, placement: Placement, options: ServiceOptions
) -> contextlib.AbstractAsyncContextManager[Server]:
    """``notifier serve`` on a fresh config and database under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_service_config(workdir, port, sink_server.port, options)
    argv = [PYTHON, "-m", "notifier", "serve", "--config", str(config)]
    argv += ["--listen", f"127.0.0.1:{port}", "--log-level", options.log_level]
    return _serve("service", argv, port, "/-/ready", placement.server, workdir / "service.log")
