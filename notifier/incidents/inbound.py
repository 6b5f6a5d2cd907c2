"""What the two inbound acknowledgement endpoints share (DESIGN §8): Slack's and Twilio's
requests arrive without the service's credentials, so each is read whole (bounded by
``server.max_body_bytes`` and ``server.read_timeout``) and its signature checked before
anything in it is believed."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from notifier.config import Config


class BodyRefused(Exception):
    """The body could not be read within the limits: ``response`` says why."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def error(status: int, message: str, details: list[Any] | None = None) -> web.Response:
    return web.json_response({"error": message, "details": details or []}, status=status)


async def read_body(request: web.Request, config: Config) -> bytes:
    """The raw body; raises ``BodyRefused`` (413, 408) past the server's limits."""
    limit = config.server.max_body_bytes
    if (request.content_length or 0) > limit:
        raise BodyRefused(error(413, f"body larger than server.max_body_bytes ({limit})"))
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(config.server.read_timeout.total_seconds()):
            async for chunk in request.content.iter_chunked(65536):
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(
                        error(413, f"body larger than server.max_body_bytes ({limit})")
                    )
                chunks.append(chunk)
    except TimeoutError:
        response = error(408, "body not received within server.read_timeout")
        response.force_close()
        raise BodyRefused(response) from None
    return b"".join(chunks)
