"""Operator commands against a real ``notifier serve`` on SQLite, as an operator runs them:
dead letters listed, replayed and purged from the CLI while the service runs; the load
tester; and no configured secret in any output of a failing delivery."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.processes import (
    TOKEN,
    NotifierProcess,
    WebhookSink,
    run_cli,
    running_notifier,
    scrape,
    serve_app,
    wait_until,
    webhook_payload,
)
from tests.stand_ins import write_config

HMAC_SECRET = "hmac-secret-do-not-print"
HEADER_SECRET = "Bearer header-secret-do-not-print"
SECRETS = (HMAC_SECRET, HEADER_SECRET, "header-secret-do-not-print", TOKEN)


class EchoingRefusal:
    """A receiver that refuses (400) and echoes the request's headers back: a peer that
    would leak our credentials into error texts if we quoted it blindly."""

    def __init__(self) -> None:
        self.refused = 0

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.refused += 1
            return web.json_response({"error": "bad", "echo": dict(request.headers)}, status=400)

        app = web.Application()
        app.router.add_route("*", "/{path:.*}", handle)
        return app


@pytest.fixture
async def refusing_url() -> AsyncIterator[tuple[EchoingRefusal, str]]:
    peer = EchoingRefusal()
    async with serve_app(peer.app()) as url:
        yield peer, url


async def metrics_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        return await response.text()


async def dead_letter_service(
    tmp_path: Path, url: str
) -> tuple[Path, AsyncIterator[NotifierProcess]]:
    config = write_config(
        tmp_path / "notifier.yaml",
        {
            "hook": {
                "type": "webhook",
                "url": f"{url}/hook",
                "hmac_secret": HMAC_SECRET,
                "headers": {"Authorization": HEADER_SECRET},
            }
        },
        default_channels=["hook"],
    )
    return config, running_notifier(config, tmp_path)


async def test_dead_letters_listed_replayed_and_purged_from_the_cli(
    tmp_path: Path, refusing_url: tuple[EchoingRefusal, str]
) -> None:
    peer, refusing = refusing_url
    sink = WebhookSink()
    async with serve_app(sink.app()) as good:
        config, service = await dead_letter_service(tmp_path, refusing)
        async with service as notifier:
            for name in ("DiskFull", "HighLatency"):
                assert await notifier.post_alerts(webhook_payload(name)) == 202
            await wait_until(lambda: peer.refused >= 2, "both refused", 10)
            await wait_until(notifier.idle, "queue empty", 10)

            listed = await run_cli("dead-letters", "list", "--config", str(config), "--json")
            assert listed.code == 0, listed.stderr
            letters = json.loads(listed.stdout)
            assert len(letters) == 2
            assert {d["reason"] for d in letters} == {"client_error"}
            assert all("answered 400" in d["error"] for d in letters)

            # no secret in the CLI's output, the API, /metrics or the service's log
            api = json.dumps(await notifier.get_json("/api/v1/dead-letters"))
            metrics = await metrics_text(notifier.url)
            for text in (listed.stdout, listed.stderr, api, metrics, notifier.log()):
                for secret in SECRETS:
                    assert secret not in text

            missing = await run_cli("dead-letters", "replay", "nope", "--config", str(config))
            assert missing.code == 1 and "no dead letter nope" in missing.stderr

        # the operator fixes the channel's URL and replays one, then the rest
        write_config(
            config,
            {"hook": {"type": "webhook", "url": f"{good}/hook", "hmac_secret": HMAC_SECRET}},
            default_channels=["hook"],
        )
        async with running_notifier(config, tmp_path) as notifier:
            one = await run_cli("dead-letters", "replay", letters[0]["id"], "--config", str(config))
            assert one.code == 0, one.stderr
            await wait_until(lambda: len(sink.requests) == 1, "the replayed one delivered", 10)
            assert sink.keys() == [letters[0]["id"]]

            rest = await run_cli("dead-letters", "replay", "--all", "--config", str(config))
            assert rest.code == 0 and "replayed 1 dead letters" in rest.stdout
            await wait_until(lambda: len(sink.requests) == 2, "the rest delivered", 10)
            assert sorted(sink.keys()) == sorted(d["id"] for d in letters)

            both = await run_cli("dead-letters", "replay", "x", "--all", "--config", str(config))
            assert both.code == 2

    purged = await run_cli("dead-letters", "purge", "--yes", "--config", str(config))
    assert purged.code == 0 and "purged 0 dead letters" in purged.stdout


async def test_loadtest_against_a_running_service_prints_its_table(tmp_path: Path) -> None:
    sink = WebhookSink()
    async with serve_app(sink.app()) as url:
        config = write_config(
            tmp_path / "notifier.yaml",
            {"hook": {"type": "webhook", "url": f"{url}/hook"}},
            default_channels=["hook"],
        )
        async with running_notifier(config, tmp_path) as notifier:
            result = await run_cli(
                "loadtest",
                "--url", f"{notifier.url}/api/v1/alerts",
                "--duration", "5s",
                "--concurrency", "8",
                "--alerts-per-payload", "5",
                "--token", TOKEN,
                timeout=30,
            )  # fmt: skip
            assert result.code == 0, result.stderr
            assert "total requests" in result.stdout and "P99 response time" in result.stdout
            total = int(result.stdout.split("total requests")[1].split()[0])
            assert total > 0
            assert "error rate          0.00%" in result.stdout
            accepted = (await scrape(f"{notifier.url}/metrics")).total(
                "notifier_http_requests_total", code="202"
            )
            assert accepted == total
