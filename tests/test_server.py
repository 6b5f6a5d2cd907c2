"""The receiver over HTTP: every fixture is accepted, every bad input gets its status and a JSON
error, and the service stays ready afterwards (DESIGN §2)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from notifier.channels.registry import Channels, open_channels
from notifier.config import parse_config
from notifier.runtime import Runtime, retire_after
from tests.conftest import FIXTURES, LOG_CONFIG, ROOT, AppFactory
from tests.processes import WebhookSink, serve_app, wait_until

AUTH = {"Authorization": "Bearer s3cret-token"}
JSON = {"Content-Type": "application/json", **AUTH}
FIRING = (FIXTURES / "firing_single.json").read_bytes()
PAYLOADS = sorted(FIXTURES.glob("*.json"))


def schema_broken(change: Any) -> bytes:
    data = json.loads(FIRING)
    change(data)
    return json.dumps(data).encode()


@pytest.mark.parametrize("path", PAYLOADS, ids=[p.stem for p in PAYLOADS])
async def test_every_fixture_is_accepted(app_client: AppFactory, path: Path) -> None:
    client = await app_client()
    body = path.read_bytes()  # noqa: ASYNC240 - a small fixture file
    response = await client.post("/api/v1/alerts", data=body, headers=JSON)
    assert response.status == 202
    answer = await response.json()
    alerts = json.loads(body)["alerts"]
    assert answer["accepted"] == len(alerts)
    if any(alert["status"] == "firing" for alert in alerts):
        assert answer["notifications"] >= 1
        assert answer["deduplicated"] == 0
    else:  # no channel heard these fire: nothing to tell them (Alertmanager's rule too)
        assert answer["notifications"] == 0
        assert answer["deduplicated"] >= 1


BAD_INPUTS = [
    # (name, body, headers, status, error fragment)
    ("malformed json", b'{"version": "4",', JSON, 400, "malformed JSON"),
    ("invalid utf-8", b'{"receiver": "\xff\xfe"}', JSON, 400, "malformed JSON"),
    ("huge nested body", b"[" * 100_000 + b"]" * 100_000, JSON, 413, "max_body_bytes"),
    ("deep nesting", b'{"a":' * 3000 + b"1" + b"}" * 3000, JSON, 400, "malformed JSON"),
    ("empty body", b"", JSON, 400, "malformed JSON"),
    ("a list", b"[1, 2]", JSON, 422, "JSON object"),
    ("wrong content type", FIRING, {"Content-Type": "text/plain", **AUTH}, 415, "application/json"),
    (
        "form content type",
        FIRING,
        {"Content-Type": "application/x-www-form-urlencoded", **AUTH},
        415,
        "application/json",
    ),
    ("no version", schema_broken(lambda d: d.pop("version")), JSON, 422, "webhook format"),
    ("no alerts", schema_broken(lambda d: d.update(alerts=[])), JSON, 422, "webhook format"),
    (
        "label not a string",
        schema_broken(lambda d: d["alerts"][0]["labels"].update(x=1)),
        JSON,
        422,
        "webhook format",
    ),
    ("too big", b'{"pad": "' + b"x" * 70_000 + b'"}', JSON, 413, "max_body_bytes"),
    ("no credentials", FIRING, {"Content-Type": "application/json"}, 401, "credentials"),
    (
        "wrong token",
        FIRING,
        {"Content-Type": "application/json", "Authorization": "Bearer nope"},
        401,
        "credentials",
    ),
    (
        "basic instead of bearer",
        FIRING,
        {
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(b"a:s3cret-token").decode(),
        },
        401,
        "credentials",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
async def test_bad_input_gets_a_clear_error_and_changes_nothing(
    app_client: AppFactory, body: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    client = await app_client()
    response = await client.post("/api/v1/alerts", data=body, headers=headers)
    assert response.status == status
    error = await response.json()
    assert fragment in error["error"]
    assert "Traceback" not in json.dumps(error)
    assert (await client.get("/-/ready")).status == 200
    deliveries = await client.get("/api/v1/status", headers=AUTH)
    assert (await deliveries.json())["queue"]["queued"] == 0
    # the same service still takes a good payload
    ok = await client.post("/api/v1/alerts", data=FIRING, headers=JSON)
    assert ok.status == 202


async def test_schema_errors_carry_pydantic_locations(app_client: AppFactory) -> None:
    client = await app_client()
    body = schema_broken(lambda d: d["alerts"][0].pop("startsAt"))
    response = await client.post("/api/v1/alerts", data=body, headers=JSON)
    details = (await response.json())["details"]
    assert {"loc": ["alerts", 0, "startsAt"], "msg": "Field required", "type": "missing"} in details


async def test_same_payload_twice_is_deduplicated(app_client: AppFactory) -> None:
    client = await app_client()
    first = await (await client.post("/api/v1/alerts", data=FIRING, headers=JSON)).json()
    second = await (await client.post("/api/v1/alerts", data=FIRING, headers=JSON)).json()
    assert first == {"accepted": 1, "notifications": 2, "deduplicated": 0}
    assert second == {"accepted": 1, "notifications": 0, "deduplicated": 2}


async def test_request_lines_accepted_at_debug_refused_at_warning(
    app_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await app_client()
    with caplog.at_level(logging.DEBUG, logger="notifier.server"):
        assert (await client.post("/api/v1/alerts", data=FIRING, headers=JSON)).status == 202
        assert (await client.post("/api/v1/alerts", data=b"{", headers=JSON)).status == 400
    lines = [(r.levelno, r.status) for r in caplog.records if r.msg == "webhook request"]
    assert lines == [(logging.DEBUG, 202), (logging.WARNING, 400)]


async def test_basic_auth(app_client: AppFactory) -> None:
    config = LOG_CONFIG.replace(
        'auth: {bearer_token: "s3cret-token"}', "auth: {basic: {username: am, password: pw}}"
    )
    client = await app_client(config)
    good = "Basic " + base64.b64encode(b"am:pw").decode()
    bad = "Basic " + base64.b64encode(b"am:nope").decode()
    headers = {"Content-Type": "application/json"}
    ok = await client.post(
        "/api/v1/alerts", data=FIRING, headers={**headers, "Authorization": good}
    )
    no = await client.post("/api/v1/alerts", data=FIRING, headers={**headers, "Authorization": bad})
    junk = await client.post(
        "/api/v1/alerts", data=FIRING, headers={**headers, "Authorization": "Basic %%%"}
    )
    assert (ok.status, no.status, junk.status) == (202, 401, 401)


async def test_probes_and_metrics_stay_open_the_api_does_not(app_client: AppFactory) -> None:
    client = await app_client()
    for path in ("/-/healthy", "/-/ready", "/metrics"):
        assert (await client.get(path)).status == 200, path
    for method, path in [
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/deliveries"),
        ("GET", "/api/v1/dead-letters"),
        ("POST", "/-/reload"),
    ]:
        assert (await client.request(method, path)).status == 401, path
        assert (await client.request(method, path, headers=AUTH)).status == 200, path


async def test_unknown_path_and_method_answer_json(app_client: AppFactory) -> None:
    client = await app_client()
    missing = await client.get("/nope")
    wrong_method = await client.get("/api/v1/alerts")
    assert missing.status == 404 and (await missing.json())["error"]
    assert wrong_method.status == 405 and (await wrong_method.json())["error"]


async def test_reload_keeps_the_old_config_when_the_new_one_is_bad(
    app_client: AppFactory, write_config: Any
) -> None:
    client = await app_client()
    status_before = await (await client.get("/api/v1/status", headers=AUTH)).json()
    write_config(LOG_CONFIG.replace("channels: [console-sms, console]", "channels: [pager]"))
    response = await client.post("/-/reload", headers=AUTH)
    assert response.status == 400
    assert "routes[0].channels[0]: undefined channel 'pager'" in (await response.json())["details"]
    assert (
        "notifier_config_last_reload_successful 0.0" in await (await client.get("/metrics")).text()
    )
    assert (await client.post("/api/v1/alerts", data=FIRING, headers=JSON)).status == 202

    write_config(
        LOG_CONFIG.replace(
            "console-sms: {type: log, template: critical_alert.txt}", "console-sms: {type: log}"
        )
    )
    response = await client.post("/-/reload", headers=AUTH)
    assert response.status == 200
    status_after = await (await client.get("/api/v1/status", headers=AUTH)).json()
    assert status_after["config_hash"] != status_before["config_hash"]
    assert (
        "notifier_config_last_reload_successful 1.0" in await (await client.get("/metrics")).text()
    )


WEBHOOK_CONFIG = LOG_CONFIG.replace(
    "  console: {type: log}\n",
    "  console: {type: log}\n"
    '  hook: {type: webhook, url: "http://127.0.0.1:9/hook", timeout: 30s}\n',
)


def _sink_config(sink_url: str, extra_channels: str = "") -> str:
    return LOG_CONFIG.replace(
        "  console: {type: log}\n",
        f'  console: {{type: log}}\n  hook: {{type: webhook, url: "{sink_url}/hook"}}\n'
        + extra_channels,
    ).replace("channels: [console-sms, console]", "channels: [hook]")


# Configs that pass ``load_checked`` but cannot be built: (extra channels, the reason given).
UNBUILDABLE = {
    "a lane's protection": (
        "  limited: {type: log, rate_limit: .inf}\n",
        "channels.limited: rate_per_second must be a positive number, got inf",
    ),
    "a channel": (
        '  bad: {type: webhook, url: "http://127.0.0.1:99999/hook"}\n',
        "channels.bad: cannot open it: ValueError: Port out of range 0-65535",
    ),
}


@pytest.mark.parametrize(("extra", "reason"), UNBUILDABLE.values(), ids=list(UNBUILDABLE))
async def test_reload_that_cannot_be_built_keeps_the_old_config_whole(
    app_client: AppFactory,
    write_config: Any,
    monkeypatch: pytest.MonkeyPatch,
    extra: str,
    reason: str,
) -> None:
    sink = WebhookSink()
    async with serve_app(sink.app()) as sink_url:
        client = await app_client(_sink_config(sink_url))
        before = await (await client.get("/api/v1/status", headers=AUTH)).json()
        # Watch (not replace) channel opening, to see what the failed reload opened.
        opened: list[Channels] = []

        async def watched_open(*args: Any, **kwargs: Any) -> Channels:
            opened.append(await open_channels(*args, **kwargs))
            return opened[-1]

        monkeypatch.setattr("notifier.runtime.open_channels", watched_open)
        write_config(_sink_config(sink_url, extra))
        response = await client.post("/-/reload", headers=AUTH)

        assert response.status == 400
        assert (await response.json())["details"] == [reason]
        after = await (await client.get("/api/v1/status", headers=AUTH)).json()
        assert after["config_hash"] == before["config_hash"]
        metrics = await (await client.get("/metrics")).text()
        assert "notifier_config_last_reload_successful 0.0" in metrics
        assert 'channel="limited"' not in metrics and 'channel="bad"' not in metrics
        for channels in opened:  # opened for the new config, closed once it failed
            assert channels["hook"]._session.closed  # type: ignore[attr-defined]
        # The old channels still deliver.
        assert (await client.post("/api/v1/alerts", data=FIRING, headers=JSON)).status == 202
        await wait_until(lambda: len(sink.requests) == 1, "the old channel's delivery")


def test_channels_a_reload_replaced_outlive_their_longest_send() -> None:
    loaded = parse_config(WEBHOOK_CONFIG, ROOT / "notifier.yaml", {})
    # The webhook's own 30s timeout bounds its sends, not defaults.timeout (10s).
    assert retire_after(loaded) == 31.0


async def test_stop_closes_the_channels_a_reload_replaced(write_config: Any) -> None:
    runtime = Runtime(write_config(WEBHOOK_CONFIG), {})
    async with runtime.running(dispatch=False):
        assert runtime.channels is not None
        session = runtime.channels["hook"]._session  # type: ignore[attr-defined]
        assert (await runtime.reload()).ok
        assert not session.closed  # sends started before the reload may still use it
    assert session.closed


async def test_metrics_count_requests_and_alerts(app_client: AppFactory) -> None:
    client = await app_client()
    await client.post("/api/v1/alerts", data=FIRING, headers=JSON)
    await client.post("/api/v1/alerts", data=b"{", headers=JSON)
    text = await (await client.get("/metrics")).text()
    assert 'notifier_http_requests_total{code="202"} 1.0' in text
    assert 'notifier_http_requests_total{code="400"} 1.0' in text
    assert 'notifier_alerts_received_total{severity="critical",status="firing"} 1.0' in text
    assert "s3cret-token" not in text
