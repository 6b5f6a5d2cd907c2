"""Run one of the bench's aiohttp apps (sink, bare handler) as its own process."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from aiohttp import web


def serve_main(make_app: Callable[[], web.Application], description: str, listen: str) -> None:
    """Parse ``--listen HOST:PORT`` (default ``listen``) and serve the app until killed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--listen", default=listen, help="HOST:PORT")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(
        make_app(),
        host=host,
        port=int(port),
        access_log=None,
        print=lambda *_: None,
        shutdown_timeout=1,
    )
