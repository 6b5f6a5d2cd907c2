"""The generic webhook channel: one JSON POST (or PUT) per notification (DESIGN §3, §4).

The body keeps Alertmanager's payload shape (only the alerts routed here, at most
``max_alerts`` of them, the rest counted in ``truncatedAlerts`` as Alertmanager does)
plus ``"notifier": {"channel", "route", "job_id"}`` (and ``kind`` and ``incident`` for an
escalation page or announcement). That shape fills in every alert's
optional fields, so a payload of many bare alerts grows about twofold; ``max_alerts``
keeps the body within what a receiver takes. It is serialised once, and the optional
``X-Notifier-Signature: sha256=<hex>`` is an HMAC-SHA256 of those exact bytes. Every
request carries ``Idempotency-Key: <job_id>`` (stable across retries) so the receiver can
drop a repeat of an at-least-once delivery. Redirects are not followed: they would carry
the signature and the configured headers to another address.

This is the benchmark's hot path: it shares one libcurl-backed ``CurlSession`` (owned by
the registry; ``notifier.channels.curl`` says why not aiohttp's client) and does no
per-send setup beyond the body and two headers. It never retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from urllib.parse import urlsplit

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from notifier import __version__
from notifier.channels.base import DeliveryError, Receipt
from notifier.channels.classify import (
    error_for_status,
    error_for_transport,
    parse_retry_after,
    snippet,
)
from notifier.channels.curl import CurlSession
from notifier.config import WebhookChannel as WebhookConfig
from notifier.notification import IncidentContext, Notification
from notifier.payload import ALERTMANAGER_WIRE, Alert

USER_AGENT = f"notifier/{__version__}"


class _Body(TypedDict):
    """The request body: Alertmanager's payload (version 4) plus our ``notifier`` block.

    Spelled out key by key, in Alertmanager's order and camelCase, so pydantic serialises
    it in one pass straight from the already validated ``Notification``: no second
    validation through ``WebhookPayload`` and no ``json.dumps`` of an intermediate dict
    (both showed high in profiles of a storm).
    """

    version: str
    receiver: str
    status: str
    alerts: tuple[Alert, ...]
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str
    groupKey: str
    truncatedAlerts: int
    notifier: dict[str, str | IncidentContext]


_BODY = TypeAdapter(_Body)


def safe_url(url: str) -> str:
    """``scheme://host[:port]/path`` without credentials or query, for messages and previews."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class WebhookChannel:
    type = "webhook"

    def __init__(
        self,
        name: str,
        config: WebhookConfig,
        session: CurlSession,
        *,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self._url = config.url
        self._method = config.method
        self._max_alerts = config.max_alerts
        self._session = session
        self._timeout = timeout
        # libcurl ends every request within it, so the dispatcher adds no timer of its own.
        self.send_timeout = timeout
        self._clock = clock
        headers = {"User-Agent": USER_AGENT, **config.headers, "Content-Type": "application/json"}
        for key, value in headers.items():
            # Sent as written: a line break would start a header (or a body) of its own.
            if not key or any(c in key for c in ":\r\n") or any(c in value for c in "\r\n"):
                raise ValueError(f"header {key!r}: no line breaks, and no colon in the name")
        self._headers = [f"{key}: {value}" for key, value in headers.items()]
        secret = config.hmac_secret.get_secret_value() if config.hmac_secret else ""
        self._secret = secret.encode() or None
        # Peer text is quoted in errors; a peer that echoes our request must not leak these.
        self._secrets = (*config.headers.values(), secret)
        self._peer = f"webhook {safe_url(config.url)}"

    def body(self, notification: Notification) -> bytes:
        """The exact bytes sent (and signed): compact UTF-8 JSON, Alertmanager's zero ``endsAt``."""
        n = notification
        alerts = n.alerts[: self._max_alerts]
        body: _Body = {
            "version": "4",
            "receiver": n.receiver,
            "status": n.status,
            "alerts": alerts,
            "groupLabels": n.group_labels,
            "commonLabels": n.common_labels,
            "commonAnnotations": n.common_annotations,
            "externalURL": n.external_url,
            "groupKey": n.group_key,
            "truncatedAlerts": n.truncated_alerts + len(n.alerts) - len(alerts),
            "notifier": {"channel": n.channel, "route": n.route, "job_id": n.job_id},
        }
        if n.incident is not None:  # a page or an announcement (DESIGN §8)
            body["notifier"] = {**body["notifier"], "kind": n.kind, "incident": n.incident}
        return _BODY.dump_json(body, by_alias=True, context=ALERTMANAGER_WIRE)

    def _request_headers(self, body: bytes, job_id: str) -> list[str]:
        headers = [*self._headers, f"Idempotency-Key: {job_id}"]
        if self._secret is not None:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers.append(f"X-Notifier-Signature: sha256={digest}")
        return headers

    async def send(self, notification: Notification) -> Receipt:
        body = self.body(notification)
        headers = self._request_headers(body, notification.job_id)
        try:
            answer = await self._session.request(
                self._method, self._url, body, headers, self._timeout
            )
        except (TimeoutError, OSError) as exc:
            raise error_for_transport(exc, self._peer, self._timeout) from None
        status = answer.status
        if 200 <= status < 300:
            return Receipt(self.name, f"{self._peer} answered {status}")
        raise self._error(status, answer.body, answer.retry_after)

    def _error(self, status: int, answer: bytes, retry_after: str | None) -> DeliveryError:
        what = f"{self._peer} answered {status}"
        if 300 <= status < 400:
            what += " (redirects are not followed; configure the final URL)"
        elif answer:
            what += f": {snippet(answer, self._secrets)}"
        return error_for_status(status, what, parse_retry_after(retry_after, self._clock()))

    def preview(self, notification: Notification) -> str:
        pretty = json.dumps(json.loads(self.body(notification)), ensure_ascii=False, indent=2)
        return f"{self._method} {safe_url(self._url)}\n{pretty}"

    async def close(self) -> None:
        """Nothing to close: the session belongs to the registry."""
