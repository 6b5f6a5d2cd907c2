"""The baseline for the ingest ratio: aiohttp plus payload validation, nothing else.

Run: ``python bench/bare_handler.py --listen 127.0.0.1:PORT`` (with the project root on
``PYTHONPATH``). ``POST /api/v1/alerts`` only does
``WebhookPayload.model_validate_json(await request.read())`` and answers 202 with a body
of the same shape as the service's; no auth, routing, dedup, store or metrics. What the
real service reaches as a fraction of this is the cost of everything it adds.
"""

from __future__ import annotations

from aiohttp import web
from standalone import serve_main

from notifier.payload import WebhookPayload


async def receive(request: web.Request) -> web.Response:
    payload = WebhookPayload.model_validate_json(await request.read())
    accepted = len(payload.alerts)
    return web.json_response(
        {"accepted": accepted, "notifications": 1, "deduplicated": 0}, status=202
    )


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/api/v1/alerts", receive)
    app.router.add_get("/-/ready", ready)
    return app


def main() -> None:
    serve_main(make_app, __doc__.splitlines()[0], "127.0.0.1:9098")


if __name__ == "__main__":
    main()
