"""The floor of ``--against alertmanager``: the least a Python service on our stack does per alert.

Run: ``python bench/forwarder.py --listen 127.0.0.1:PORT --sink URL`` (with the project
root on ``PYTHONPATH``). ``POST /api/v1/alerts`` reads the body, validates it with
``WebhookPayload.model_validate_json``, answers 202 at once, and forwards the body
unchanged with one POST to ``URL`` through notifier's own libcurl client
(``CurlSession``), in a task of its own. No durability, routing, dedup, metrics or
logging: aiohttp's server and pycurl's ``CurlMulti`` on the loop, nothing else, so what
notifier spends beyond this is what its own work costs. ``GET /stats`` reports the
forwards that failed (an exception, or an answer other than 2xx) and those in flight.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from notifier import garbage_collector
from notifier.channels.curl import CurlSession
from notifier.payload import WebhookPayload

_ACCEPTED = b'{"accepted": 1, "notifications": 1, "deduplicated": 0}'
_HEADERS = ("Content-Type: application/json",)
_TIMEOUT_S = 10.0


class Forwarder:
    """One libcurl session to the sink, the forwards in flight and the failures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = CurlSession()
        self.in_flight: set[asyncio.Task[None]] = set()  # referenced until done
        self.failures = 0

    def forward(self, body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._post(body))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _post(self, body: bytes) -> None:
        try:
            answer = await self.session.request("POST", self.url, body, _HEADERS, _TIMEOUT_S)
        except (TimeoutError, OSError):
            self.failures += 1
        else:
            if not 200 <= answer.status < 300:
                self.failures += 1


FORWARDER = web.AppKey("forwarder", Forwarder)


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    WebhookPayload.model_validate_json(body)
    request.app[FORWARDER].forward(body)
    return web.Response(body=_ACCEPTED, status=202, content_type="application/json")


async def stats(request: web.Request) -> web.Response:
    forwarder = request.app[FORWARDER]
    return web.json_response(
        {"failures": forwarder.failures, "in_flight": len(forwarder.in_flight)}
    )


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


async def settle_garbage_collector(app: web.Application) -> None:
    """The service's GC setting, so the floor is comparable."""
    garbage_collector.settle()


async def close_session(app: web.Application) -> None:
    await app[FORWARDER].session.close()


def make_app(sink_url: str) -> web.Application:
    app = web.Application()
    app[FORWARDER] = Forwarder(sink_url)
    app.router.add_post("/api/v1/alerts", receive)
    app.router.add_get("/stats", stats)
    app.router.add_get("/-/ready", ready)
    app.on_startup.append(settle_garbage_collector)  # the last step before listening
    app.on_cleanup.append(close_session)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9097", help="HOST:PORT")
    parser.add_argument("--sink", required=True, help="the URL every body is forwarded to")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(
        make_app(args.sink),
        host=host,
        port=int(port),
        access_log=None,
        print=lambda *_: None,
        shutdown_timeout=1,
    )


if __name__ == "__main__":
    main()
