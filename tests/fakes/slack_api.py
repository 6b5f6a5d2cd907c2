"""A local Slack for tests: the Web API (``chat.postMessage``, ``chat.update``,
``chat.postEphemeral``) and incoming
webhooks, served by ``aiohttp.web`` so the real slack_sdk clients talk to it.

Speaks Slack's wire protocol as the SDK sees it: JSON (or form) bodies, ``Authorization:
Bearer <token>``, ``{"ok": false, "error": "..."}`` answered with HTTP 200, HTTP 429 with
``Retry-After`` and ``"error": "ratelimited"``; an incoming webhook answers ``ok`` as
``text/plain``, or a plain-text error code with a 4xx status. Like Slack, it refuses
blocks holding more than ``MAX_BLOCKS_TEXT`` characters of text in all with
``msg_blocks_too_long`` (an incoming webhook: 400 and that code; Slack's own answer there
is unconfirmed). Answers can be scripted per method (``script``); every request is
recorded (``requests``). Messages posted and updated are kept (``messages``) so a test
can check what a channel looks like.

``rate_limit`` (messages per second per channel, as Slack allows about one) answers a
``chat.postMessage`` or ``chat.update`` that comes too soon after the channel's last one
with HTTP 429, ``Retry-After`` (whole seconds, as Slack sends it) and ``ratelimited``.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WEBHOOK = "webhook"  # the ``method`` recorded for incoming-webhook posts
MAX_BLOCKS_TEXT = 12_000  # Slack's total, as measured in slackapi/bolt-js#2509


def blocks_text(node: Any) -> int:
    """The characters of every ``text`` string within ``node``."""
    if isinstance(node, list):
        return sum(blocks_text(item) for item in node)
    if isinstance(node, dict):
        return sum(
            len(value) if key == "text" and isinstance(value, str) else blocks_text(value)
            for key, value in node.items()
        )
    return 0


@dataclass(frozen=True)
class SlackRequest:
    method: str  # a Web API method (``chat.postMessage``) or ``webhook``
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Scripted:
    """One scripted answer. ``error`` makes a Web API ``ok: false``; ``text`` a raw body."""

    status: int = 200
    error: str | None = None
    text: str | None = None
    retry_after: str | None = None


@dataclass
class SlackMessage:
    channel: str
    ts: str
    text: str
    blocks: list[Any]
    thread_ts: str | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)


class FakeSlack:
    def __init__(
        self,
        *,
        token: str = "xoxb-fake-token",
        webhook_path: str = "/services/T000/B000/fake-webhook-secret",
        channels: dict[str, str] | None = None,
        rate_limit: float | None = None,
    ) -> None:
        self.token = token
        self.rate_limit = rate_limit
        self.rate_limited = 0  # calls answered 429
        self._last_write: dict[str, float] = {}  # channel id -> monotonic time of its last write
        self.webhook_path = webhook_path
        self.channels = channels if channels is not None else {"#alerts": "C0ALERTS"}
        self.requests: list[SlackRequest] = []
        self.messages: dict[tuple[str, str], SlackMessage] = {}
        self._scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self._ts = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._web_api)
        app.router.add_post("/services/{path:.*}", self._webhook)
        return app

    def script(self, method: str, *answers: Scripted) -> None:
        """Answer the next calls of ``method`` (or ``WEBHOOK``) with these, in order."""
        self._scripts[method].extend(answers)

    def calls(self, method: str) -> list[SlackRequest]:
        return [r for r in self.requests if r.method == method]

    async def _record(self, request: web.Request, method: str) -> SlackRequest:
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = dict(await request.post())
        recorded = SlackRequest(method, dict(request.headers), body)
        self.requests.append(recorded)
        return recorded

    def _scripted(self, method: str) -> web.Response | None:
        if not self._scripts[method]:
            return None
        answer = self._scripts[method].popleft()
        headers = {"Retry-After": answer.retry_after} if answer.retry_after else {}
        if answer.text is not None:
            return web.Response(status=answer.status, text=answer.text, headers=headers)
        return web.json_response(
            {"ok": answer.error is None, "error": answer.error},
            status=answer.status,
            headers=headers,
        )

    async def _web_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = await self._record(request, method)
        scripted = self._scripted(method)
        if scripted is not None:
            return scripted
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return _api_error("not_authed")
        if authorization != f"Bearer {self.token}":
            return _api_error("invalid_auth")
        if method in ("chat.postMessage", "chat.update"):
            limited = self._limited(str(call.body.get("channel", "")))
            if limited is not None:
                return limited
        if method == "chat.postMessage":
            return self._post(call.body)
        if method == "chat.update":
            return self._update(call.body)
        if method == "chat.postEphemeral":
            if self._channel_id(str(call.body.get("channel", ""))) is None:
                return _api_error("channel_not_found")
            return web.json_response({"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"})
        return _api_error("unknown_method")

    def _limited(self, channel: str) -> web.Response | None:
        """A 429 when ``channel`` was written to less than 1/rate_limit seconds ago."""
        if self.rate_limit is None:
            return None
        key = self._channel_id(channel) or channel
        now, gap = time.monotonic(), 1.0 / self.rate_limit
        last = self._last_write.get(key)
        if last is not None and now - last < gap:
            self.rate_limited += 1
            retry_after = str(max(1, math.ceil(gap - (now - last))))
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": retry_after},
            )
        self._last_write[key] = now
        return None

    def _channel_id(self, channel: str) -> str | None:
        if channel in self.channels.values():
            return channel
        return self.channels.get(channel)

    def _post(self, body: dict[str, Any]) -> web.Response:
        channel = self._channel_id(str(body.get("channel", "")))
        if channel is None:
            return _api_error("channel_not_found")
        if not body.get("text") and not body.get("blocks"):
            return _api_error("no_text")
        if blocks_text(body.get("blocks", [])) > MAX_BLOCKS_TEXT:
            return _api_error("msg_blocks_too_long")
        ts = f"1700000000.{next(self._ts):06d}"
        message = SlackMessage(
            channel, ts, body.get("text", ""), body.get("blocks", []), body.get("thread_ts")
        )
        self.messages[(channel, ts)] = message
        return web.json_response(
            {"ok": True, "channel": channel, "ts": ts, "message": {"text": message.text}}
        )

    def _update(self, body: dict[str, Any]) -> web.Response:
        key = (str(body.get("channel", "")), str(body.get("ts", "")))
        message = self.messages.get(key)
        if message is None:
            return _api_error("message_not_found")
        if blocks_text(body.get("blocks", [])) > MAX_BLOCKS_TEXT:
            return _api_error("msg_blocks_too_long")
        message.edits.append({"text": message.text, "blocks": message.blocks})
        message.text = body.get("text", message.text)
        message.blocks = body.get("blocks", message.blocks)
        return web.json_response(
            {"ok": True, "channel": key[0], "ts": key[1], "text": message.text}
        )

    async def _webhook(self, request: web.Request) -> web.Response:
        try:
            call = await self._record(request, WEBHOOK)
        except json.JSONDecodeError:
            return web.Response(status=400, text="invalid_payload")
        scripted = self._scripted(WEBHOOK)
        if scripted is not None:
            return scripted
        if request.path != self.webhook_path:
            return web.Response(status=404, text="no_service")
        if not call.body.get("text") and not call.body.get("blocks"):
            return web.Response(status=400, text="no_text")
        if blocks_text(call.body.get("blocks", [])) > MAX_BLOCKS_TEXT:
            return web.Response(status=400, text="msg_blocks_too_long")
        ts = f"1700000000.{next(self._ts):06d}"
        self.messages[(WEBHOOK, ts)] = SlackMessage(
            WEBHOOK, ts, call.body.get("text", ""), call.body.get("blocks", [])
        )
        return web.Response(text="ok")


def _api_error(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})
