"""``notifier serve``: run the app until SIGTERM/SIGINT, reload on SIGHUP, exit 0.

On SIGTERM the listener closes first (Alertmanager's next try goes to another replica
or waits), then the dispatcher finishes or releases in-flight jobs within
``server.shutdown_grace``, then the store closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from notifier import garbage_collector
from notifier.channels.registry import ChannelOpenError
from notifier.config import ConfigError
from notifier.logs import setup_logging
from notifier.runtime import Runtime
from notifier.server import create_app, install_reload_signal

log = logging.getLogger(__name__)

_KEEPALIVE_TIMEOUT = 75.0  # seconds


def run_server(
    config_path: Path, env: Mapping[str, str], *, listen: str | None, log_level: str
) -> None:
    setup_logging(log_level)
    runtime = Runtime(config_path, env)
    server = runtime.loaded.config.server
    if listen:
        server = server.model_copy(update={"listen": listen})  # checked by the CLI
    host, port = server.host, server.port
    app = create_app(runtime)

    async def on_startup(app: web.Application) -> None:
        install_reload_signal(runtime)
        log.info(
            "notifier listening",
            extra={
                "address": f"{host}:{port}",
                "config": str(config_path),
                "config_hash": runtime.loaded.digest,
                "store": runtime.loaded.config.storage.url.partition("://")[0],
                "channels": len(runtime.loaded.config.channels),
            },
        )

    async def on_shutdown(app: web.Application) -> None:
        grace = server.shutdown_grace.total_seconds()
        log.info("notifier shutting down", extra={"grace_seconds": grace})

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    try:
        asyncio.run(_serve(app, host, port, server.shutdown_grace.total_seconds()))
    except ChannelOpenError as exc:
        raise ConfigError(str(config_path), [str(exc)]) from exc


async def _serve(app: web.Application, host: str, port: int, grace: float) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then close the listener, then the app.

    Not ``web.run_app``: when a startup step fails it does not run the app's cleanup, so
    resources opened before the failing one (the store, when a channel cannot open)
    would never be closed. Here cleanup runs whatever happened.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=grace,
        handle_signals=False,
        # web.run_app's default: an idle connection, or one that never finishes its
        # headers, is closed after this long (README "Limits").
        keepalive_timeout=_KEEPALIVE_TIMEOUT,
    )
    try:
        await runner.setup()
        garbage_collector.settle()
        await web.TCPSite(runner, host, port).start()
        await stop.wait()
    finally:
        await runner.cleanup()
