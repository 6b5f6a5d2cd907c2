"""The aiohttp app: the Alertmanager receiver, health, reload, status, metrics (DESIGN §2).

The receiver's status codes are a protocol with Alertmanager, which retries only on
5xx and network errors: 202 only after the jobs are durably stored, 503 when the store
cannot take them, 400/413/415/422 for a payload that retrying will not fix, 401 for
bad credentials, 408 for a body that does not arrive within ``server.read_timeout``.
No request ever gets a traceback: errors are JSON ``{"error", "details"}``.

What every route shares is done once, by middleware, outermost first: the receiver's
request metric and log line, errors as JSON (``StoreUnavailable`` is a 503 there and
nowhere else), and the credentials check (every path but ``OPEN_PATHS``). This module
never imports a channel or a store implementation; it talks to the ``Runtime``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from typing import Any

from aiohttp import HttpVersion11, web
from prometheus_client.aiohttp import make_aiohttp_handler
from pydantic import ValidationError

from notifier import __version__, console
from notifier.config import AuthConfig
from notifier.dead_letter_view import dead_letter_json
from notifier.health import StoreCheck
from notifier.heartbeats.status import heartbeats_json
from notifier.incidents.http import incident_routes
from notifier.incidents.slack_inbound import SLACK_PATH, slack_interactions_handler
from notifier.incidents.sms_inbound import SMS_PATH, sms_handler
from notifier.payload import WebhookPayload
from notifier.runtime import Runtime
from notifier.store.base import StoreUnavailable

log = logging.getLogger(__name__)

RUNTIME = web.AppKey("runtime", Runtime)
STORE_CHECK = web.AppKey("store_check", StoreCheck)
# Parsing and planning a payload hold the event loop for a time that grows with its
# alerts (a 10,000-alert group: a few hundred ms). Bodies this large take turns
# (``one_large_at_a_time``), so /-/healthy and small payloads answer between them.
LARGE_BODY_BYTES = 256 * 1024
LARGE_INGEST = web.AppKey("large_ingest", asyncio.Semaphore)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALERTS_PATH = "/api/v1/alerts"
# Probes and scrapes need no credentials; every other route does, but for Slack's and
# Twilio's requests, which their handlers check by signature instead.
OPEN_PATHS = frozenset({"/-/healthy", "/-/ready", "/metrics", SLACK_PATH, SMS_PATH})


def json_error(status: int, error: str, details: list[Any] | None = None) -> web.Response:
    return web.json_response({"error": error, "details": details or []}, status=status)


def _authorized(auth: AuthConfig | None, header: str | None) -> bool:
    """Constant-time check of a bearer token or basic credentials."""
    if auth is None:
        return True
    if not header:
        return False
    # aiohttp keeps header bytes that are not UTF-8 as surrogates: compare the bytes sent.
    scheme, _, value = header.encode("utf-8", "surrogateescape").partition(b" ")
    if auth.bearer_token is not None:
        expected = auth.bearer_token.get_secret_value().encode()
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), expected)
    assert auth.basic is not None
    if scheme.lower() != b"basic":
        return False
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    user_ok = hmac.compare_digest(user, auth.basic.username.encode())
    password_ok = hmac.compare_digest(password, auth.basic.password.get_secret_value().encode())
    return user_ok and password_ok


def _needs_credentials(request: web.Request) -> bool:
    # A path or method no route serves answers 404/405 whoever asks. The console checks
    # its own login (a session cookie, not these credentials).
    return (
        request.match_info.http_exception is None
        and request.path not in OPEN_PATHS
        and not console.is_console(request.path)
    )


def _credentials_ok(request: web.Request) -> bool:
    auth = request.app[RUNTIME].loaded.config.server.auth
    return not _needs_credentials(request) or _authorized(
        auth, request.headers.get("Authorization")
    )


@web.middleware
async def count_webhook_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One metric sample and one log line per receiver request, whatever answered it."""
    if request.path != ALERTS_PATH:
        return await handler(request)
    metrics = request.app[RUNTIME].metrics
    started = time.perf_counter()
    response = await handler(request)
    elapsed = time.perf_counter() - started
    metrics.count_request(response.status, elapsed)
    # An accepted request is routine and the metrics count it: its line is for debugging
    # (at info it was a visible share of a storm's CPU). A refused one is worth a warning.
    level = logging.DEBUG if response.status < 300 else logging.WARNING
    if log.isEnabledFor(level):
        _log_request(level, request, response.status, elapsed)
    if response.status in (400, 413, 415, 422):
        metrics.alerts_invalid.inc()
    return response


def _log_request(level: int, request: web.Request, status: int, elapsed: float) -> None:
    log.log(
        level,
        "webhook request",
        extra={
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
            "remote": request.remote,
            "bytes": request.content_length,
        },
    )


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON: a store that cannot answer is a 503 (retry later);
    an unexpected error is logged here and never shown."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except StoreUnavailable as exc:
        log.error("store unavailable, answering 503", extra={"error": str(exc)})
        request.app[STORE_CHECK].failed(exc)
        return json_error(503, "store unavailable, retry later")
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return json_error(500, "internal error")


@web.middleware
async def require_credentials(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _credentials_ok(request):
        return json_error(401, "missing or invalid credentials")
    return await handler(request)


async def continue_if_acceptable(request: web.Request) -> None:
    """Answer ``Expect: 100-continue`` only for a body we would read: with valid credentials
    and a ``Content-Length`` within ``server.max_body_bytes``. Otherwise send nothing and
    let the handler answer (401, 413) without the body being sent first."""
    if request.version != HttpVersion11:
        return
    if request.headers.get("Expect", "").lower() != "100-continue":
        return  # an expectation we cannot meet: the handler answers as if it was not there
    limit = request.app[RUNTIME].loaded.config.server.max_body_bytes
    if not _credentials_ok(request) or (request.content_length or 0) > limit:
        return
    # What aiohttp's default expect handler writes.
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0


@contextlib.asynccontextmanager
async def one_large_at_a_time(app: web.Application, size: int) -> AsyncIterator[None]:
    """Hold the large-ingest permit for a body of ``size`` bytes when it is large."""
    if size < LARGE_BODY_BYTES:
        yield
        return
    async with app[LARGE_INGEST]:
        yield
        await asyncio.sleep(0)  # a request waiting on the loop goes before the next large one


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None once it grows past ``limit`` bytes."""
    length = request.content_length
    if length is not None:
        if length > limit:
            return None
        # aiohttp holds the body to its Content-Length: one read instead of a chunk loop.
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError as exc:  # the client went away mid-body
            return exc.partial
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_body_in_time(request: web.Request, limit: int, seconds: float) -> bytes | None:
    """``_read_body`` within ``seconds``; raises ``TimeoutError``."""
    if request.content.is_eof():
        # The whole body has arrived (the usual case for a small payload): nothing to time.
        # Arming and cancelling a timer per request showed in the storm profile.
        return await _read_body(request, limit)
    async with asyncio.timeout(seconds):
        return await _read_body(request, limit)


def _validation_details(exc: ValidationError) -> tuple[int, str, list[Any]]:
    errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return 400, "malformed JSON", [e["msg"] for e in errors]
    if any(e["type"] == "model_type" or e["type"] == "model_attributes_type" for e in errors):
        return 422, "payload must be a JSON object", []
    details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    return 422, "payload does not match Alertmanager's webhook format (version 4)", details


async def receive_alerts(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    server = runtime.loaded.config.server
    if request.content_type != "application/json":
        return json_error(415, "Content-Type must be application/json")
    read_timeout = server.read_timeout.total_seconds()
    try:
        body = await _read_body_in_time(request, server.max_body_bytes, read_timeout)
    except TimeoutError:
        # The rest of the body may still arrive: close the connection rather than read it.
        response = json_error(
            408, f"body not received within server.read_timeout ({read_timeout:g}s)"
        )
        response.force_close()
        return response
    if body is None:
        return json_error(413, f"body larger than server.max_body_bytes ({server.max_body_bytes})")
    if len(body) < LARGE_BODY_BYTES:
        return await _take_payload(runtime, body)
    async with one_large_at_a_time(request.app, len(body)):
        return await _take_payload(runtime, body)


async def _take_payload(runtime: Runtime, body: bytes) -> web.Response:
    """Validate, ingest and count one body, and answer for it.

    It yields the loop between parsing and planning. Requests waiting on the loop then go
    between the two halves of a large body's work; and in a storm the requests that
    arrived together reach the store together, as one batch of the SQLite writer:
    without that turn a storm cost about 10% more CPU per notification.
    """
    try:
        payload = WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        status, error, details = _validation_details(exc)
        return json_error(status, error, details)
    await asyncio.sleep(0)
    try:
        result = await runtime.ingest(payload)
    except StoreUnavailable:
        raise
    except Exception as exc:
        # Nothing was acknowledged: a 503 makes Alertmanager retry, where a 500 would too
        # but would say "our bug" to a client that can do nothing about it.
        log.exception("could not enqueue the notifications")
        raise StoreUnavailable("could not store the notifications") from exc
    metrics = runtime.metrics
    metrics.count_alerts(
        (alert.status, metrics.severity_label(alert.labels.get("severity", "none")))
        for alert in payload.alerts
    )
    if result.deduplicated:
        metrics.deduplicated.inc(result.deduplicated)
    return _accepted(len(payload.alerts), len(result.enqueued), result.deduplicated)


def _accepted(alerts: int, notifications: int, deduplicated: int) -> web.Response:
    """The 202, written without ``json.dumps``: it is on every payload's path."""
    body = b'{"accepted": %d, "notifications": %d, "deduplicated": %d}' % (
        alerts,
        notifications,
        deduplicated,
    )
    return web.Response(body=body, status=202, content_type="application/json", charset="utf-8")


async def healthy(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy"})


async def ready(request: web.Request) -> web.Response:
    problem = await request.app[STORE_CHECK].check()
    request.app[RUNTIME].metrics.store_up.set(problem is None)
    if problem is not None:
        return json_error(503, "store unavailable", [str(problem)])
    return web.json_response({"status": "ready"})


async def reload_config(request: web.Request) -> web.Response:
    result = await request.app[RUNTIME].reload()
    if not result.ok:
        return json_error(400, "invalid config, keeping the running one", result.problems)
    return web.json_response({"status": "reloaded", "config_hash": result.digest})


async def status(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    now = runtime.clock()
    try:
        stats = asdict(await runtime.store.stats(now))
    except StoreUnavailable:
        stats = None
    dispatcher = runtime.dispatcher
    try:
        heartbeats: list[dict[str, Any]] | None = heartbeats_json(await runtime.heartbeats.states())
    except StoreUnavailable:
        heartbeats = None
    return web.json_response(
        {
            "version": __version__,
            "config_hash": runtime.loaded.digest,
            "config_loaded_at": runtime.loaded_at,
            "uptime_seconds": round(now - runtime.started_at, 3),
            "queue": stats,
            "circuits": dispatcher.circuit_states() if dispatcher else {},
            "heartbeats": heartbeats,
            # Channels with storm digests (DESIGN §10): whether each is in storm mode now.
            "storms": runtime.storm_watch.in_storm() if runtime.storm_watch else {},
        }
    )


def _limit(request: web.Request, default: int = 100) -> int:
    try:
        return max(1, min(int(request.query.get("limit", default)), 10_000))
    except ValueError:
        raise web.HTTPBadRequest(reason="limit must be an integer") from None


async def deliveries(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    records = await runtime.store.deliveries(_limit(request))
    return web.json_response({"deliveries": [asdict(r) for r in records]})


async def dead_letters(request: web.Request) -> web.Response:
    letters = await request.app[RUNTIME].store.dead_letters(_limit(request))
    return web.json_response({"dead_letters": [dead_letter_json(d) for d in letters]})


async def replay_dead_letter(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    job_id = request.match_info["id"]
    if job_id == "all":
        count = await runtime.store.replay_all(runtime.clock())
    else:
        count = int(await runtime.store.replay(job_id, runtime.clock()))
        if not count:
            return json_error(404, f"no dead letter {job_id}")
    if runtime.dispatcher is not None:
        runtime.dispatcher.wake()
    return web.json_response({"replayed": count})


async def purge_dead_letters(request: web.Request) -> web.Response:
    return web.json_response({"purged": await request.app[RUNTIME].store.purge_dead_letters()})


async def _refresh_gauges(runtime: Runtime) -> None:
    """Queue gauges come from the store; refresh them for scrapes."""
    stats = await runtime.store.stats(runtime.clock())
    metrics = runtime.metrics
    metrics.queue_depth.set(stats.queued)
    metrics.queue_in_flight.set(stats.in_flight)
    metrics.queue_oldest_age.set(stats.oldest_due_age)
    metrics.dead_letters.set(stats.dead_letters)
    await runtime.incidents.refresh_gauges()


def metrics_handler(runtime: Runtime, store_check: StoreCheck) -> Handler:
    expose = make_aiohttp_handler(runtime.metrics.registry)

    async def handler(request: web.Request) -> web.StreamResponse:
        problem = await store_check.check()
        if problem is None:
            try:
                await _refresh_gauges(runtime)
            except StoreUnavailable as exc:
                problem = exc
        runtime.metrics.store_up.set(problem is None)
        return await expose(request)

    return handler


def _cleanup_ctx(
    resource: Callable[[], AbstractAsyncContextManager[None]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with resource():
            yield

    return ctx


def create_app(runtime: Runtime) -> web.Application:
    """The app; it opens the runtime's resources on startup and closes them on cleanup."""
    app = web.Application(
        middlewares=[count_webhook_requests, json_errors, require_credentials],
        client_max_size=2**31,
    )
    app[RUNTIME] = runtime
    app[LARGE_INGEST] = asyncio.Semaphore(1)
    store_check = app[STORE_CHECK] = StoreCheck(runtime.store)
    # One cleanup context per resource: one that fails to open closes those before it.
    app.cleanup_ctx.extend(_cleanup_ctx(resource) for resource in runtime.resources())
    routes = [
        (web.post, ALERTS_PATH, receive_alerts),
        (web.get, "/-/healthy", healthy),
        (web.get, "/-/ready", ready),
        (web.get, "/metrics", metrics_handler(runtime, store_check)),
        (web.post, "/-/reload", reload_config),
        (web.get, "/api/v1/status", status),
        (web.get, "/api/v1/deliveries", deliveries),
        (web.get, "/api/v1/dead-letters", dead_letters),
        (web.delete, "/api/v1/dead-letters", purge_dead_letters),
        (web.post, "/api/v1/dead-letters/{id}/replay", replay_dead_letter),
        (web.post, SLACK_PATH, slack_interactions_handler(lambda request: request.app[RUNTIME])),
        (web.post, SMS_PATH, sms_handler(lambda request: request.app[RUNTIME])),
    ]
    app.add_routes(
        route(path, handler, expect_handler=continue_if_acceptable)
        for route, path, handler in routes
    )
    app.add_routes(
        web.route(method, path, handler, expect_handler=continue_if_acceptable)
        for method, path, handler in incident_routes(lambda request: request.app[RUNTIME].incidents)
    )
    console.mount(app, runtime)
    return app


def install_reload_signal(runtime: Runtime) -> None:
    """SIGHUP reloads the config, as for Prometheus and Alertmanager."""
    loop = asyncio.get_running_loop()
    # The loop keeps only a weak reference to a task: hold each reload until it is done.
    reloads: set[asyncio.Task[Any]] = set()

    def reload() -> None:
        task = loop.create_task(runtime.reload())
        reloads.add(task)
        task.add_done_callback(_reload_done)

    def _reload_done(task: asyncio.Task[Any]) -> None:
        reloads.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("config reload on SIGHUP failed", exc_info=exc)

    loop.add_signal_handler(signal.SIGHUP, reload)
