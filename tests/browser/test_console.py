"""The console in a real headless browser against a real ``notifier serve`` (DESIGN §12).

The notifier (SQLite) pages webhook sinks: route ``critical`` escalates under policy
``oncall`` (step 1 ``pager`` at once, step 2 ``standin`` after ``STEP_2`` seconds), and
route ``warning`` goes to ``flaky``, a sink that refuses (400, so a dead letter at once)
until the test lets it answer 200. Alerts arrive through the real receiver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from playwright.async_api import Browser, BrowserContext, Page

from tests.browser.support import chromium, screenshot
from tests.processes import (
    TOKEN,
    NotifierProcess,
    WebhookSink,
    running_notifier,
    serve_app,
    wait_until,
    webhook_payload,
)

pytestmark = pytest.mark.e2e

STEP_2 = 6  # seconds from step 1 to step 2: time enough to log in and click
WAIT = 30.0  # a bound for a hang, not a speed
HMAC_SECRET = "hmac-Secret-4b1d"
HEADER_SECRET = "header-Secret-77ce"
SECRETS = [TOKEN, HMAC_SECRET, HEADER_SECRET]


def console_config(folder: Path, sinks: str, flaky: str) -> Path:
    document: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:0", "auth": {"bearer_token": TOKEN}},
        "storage": {"url": f"sqlite:///{folder / 'notifier.db'}"},
        "templates_dir": str(folder),
        "defaults": {"retry": {"initial_backoff": "100ms", "max_backoff": "1s", "max_age": "1h"}},
        "channels": {
            "pager": {"type": "webhook", "url": f"{sinks}/pager", "hmac_secret": HMAC_SECRET},
            "standin": {
                "type": "webhook",
                "url": f"{sinks}/standin",
                "headers": {"X-Api-Key": HEADER_SECRET},
            },
            "flaky": {"type": "webhook", "url": f"{flaky}/flaky"},
            "console": {"type": "log"},
        },
        "heartbeats": [
            {
                "name": "prometheus-watchdog",
                "matchers": ['alertname="Watchdog"'],
                "timeout": "10m",
                "channels": ["console"],
            }
        ],
        "responders": [{"name": "kim", "phone": "+821012345678"}],
        "escalation_policies": {
            "oncall": {
                "steps": [
                    {"after": "0s", "channels": ["pager"]},
                    {"after": f"{STEP_2}s", "channels": ["standin"]},
                ]
            }
        },
        "routes": [
            {
                "name": "critical",
                "matchers": ['severity="critical"'],
                "channels": [],
                "escalation": "oncall",
            },
            {"name": "warning", "matchers": ['severity="warning"'], "channels": ["flaky"]},
        ],
        "default_channels": ["console"],
    }
    path = folder / "notifier.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


class Setup:
    def __init__(self, notifier: NotifierProcess, sink: WebhookSink, flaky: WebhookSink) -> None:
        self.notifier = notifier
        self.sink = sink
        self.flaky = flaky
        self.ui = f"{notifier.url}/ui"

    def paged(self, path: str, alertname: str) -> int:
        return sum(
            1
            for r in self.sink.requests
            if r.path == f"/{path}"
            and any(a["labels"]["alertname"] == alertname for a in r.json()["alerts"])
        )

    async def incident_of(self, alertname: str) -> dict[str, Any]:
        for incident in (await self.notifier.get_json("/api/v1/incidents"))["incidents"]:
            if incident["alerts"][0]["labels"]["alertname"] == alertname:
                return dict(incident)
        raise AssertionError(f"no incident for {alertname}")


@asynccontextmanager
async def console_setup(tmp_path: Path) -> AsyncIterator[Setup]:
    sink, flaky = WebhookSink(), WebhookSink(status=400)
    async with serve_app(sink.app()) as sinks, serve_app(flaky.app()) as flaky_url:
        config = console_config(tmp_path, sinks, flaky_url)
        async with running_notifier(config, tmp_path) as notifier:
            yield Setup(notifier, sink, flaky)


async def new_page(browser: Browser) -> tuple[BrowserContext, Page]:
    # A zone other than the machine's, so the page shows both the browser's zone and UTC.
    context = await browser.new_context(
        viewport={"width": 1280, "height": 860}, timezone_id="Asia/Seoul", locale="en-GB"
    )
    return context, await context.new_page()


async def log_in(page: Page, ui: str, token: str = TOKEN) -> None:
    await page.goto(f"{ui}/incidents")
    assert page.url.startswith(f"{ui}/login")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Log in").click()


async def test_acknowledge_in_the_console_stops_the_escalation(tmp_path: Path) -> None:
    async with console_setup(tmp_path) as setup, chromium() as browser:
        context, page = await new_page(browser)
        await log_in(page, setup.ui)
        assert page.url == f"{setup.ui}/incidents"
        cookie = next(c for c in await context.cookies() if c["name"] == "notifier_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > 0
        assert not cookie["secure"]  # no https public_url

        # Two incidents through the real receiver: "Acked" is acknowledged in the console,
        # "Control" is not, so its step 2 shows when Acked's would have come.
        for name in ("Acked", "Control"):
            assert await setup.notifier.post_alerts(webhook_payload(name)) == 202
        await wait_until(
            lambda: setup.paged("pager", "Acked") > 0 and setup.paged("pager", "Control") > 0,
            "step 1 of both incidents",
            WAIT,
        )
        acked = await setup.incident_of("Acked")
        await page.reload()
        card = page.locator(f"#incident-{acked['id']}")
        assert await card.locator(".state").inner_text() == "open"
        assert "pager" in await card.locator(".paged").inner_text()
        assert "1 of 2" in await card.locator(".step").inner_text()
        await card.get_by_role("button", name="Acknowledge").click()
        await page.wait_for_url("**/incidents?notice=*")
        assert "acknowledged" in await page.locator(".notice").inner_text()
        assert await card.locator(".state").inner_text() == "acknowledged"

        await wait_until(lambda: setup.paged("standin", "Control") > 0, "Control's step 2", WAIT)
        assert setup.paged("standin", "Acked") == 0
        shown = await setup.incident_of("Acked")
        assert (shown["state"], shown["acknowledged_by"]) == ("acknowledged", "kim")
        assert [e["event"] for e in shown["timeline"]] == ["opened", "step", "acknowledged"]
        await context.close()


async def test_replay_a_dead_letter_and_see_it_delivered(tmp_path: Path) -> None:
    async with console_setup(tmp_path) as setup, chromium() as browser:
        context, page = await new_page(browser)
        await log_in(page, setup.ui)
        payload = webhook_payload("QueueBacklog", severity="warning")
        assert await setup.notifier.post_alerts(payload) == 202

        async def dead_lettered() -> bool:
            letters = (await setup.notifier.get_json("/api/v1/dead-letters"))["dead_letters"]
            return len(letters) == 1

        await wait_until(dead_lettered, "the flaky sink's 400 to dead-letter", WAIT)
        await page.goto(f"{setup.ui}/dead-letters")
        row = page.locator("tbody tr")
        assert await row.count() == 1
        assert "QueueBacklog" in await row.inner_text()
        assert "400" in await row.locator(".error").inner_text()
        await screenshot(page, "dead-letters")

        setup.flaky.status = 200
        await row.get_by_role("button", name="Replay").click()
        await page.wait_for_url("**/dead-letters?notice=*")
        assert "replayed" in await page.locator(".notice").inner_text()
        await wait_until(lambda: len(setup.flaky.answered) == 2, "the replayed delivery", WAIT)

        async def delivered_shown() -> bool:
            await page.goto(f"{setup.ui}/deliveries?channel=flaky&outcome=delivered")
            return await page.locator("tbody tr").count() == 1

        await wait_until(delivered_shown, "the delivery in the log", WAIT, interval=0.2)
        await page.goto(f"{setup.ui}/dead-letters")
        assert await page.locator("tbody tr").count() == 0
        await context.close()


async def test_a_wrong_password_is_refused(tmp_path: Path) -> None:
    async with console_setup(tmp_path) as setup, chromium() as browser:
        context, page = await new_page(browser)
        await log_in(page, setup.ui, token="not-the-token")
        assert page.url.startswith(f"{setup.ui}/login")
        assert await page.get_by_role("alert").inner_text() == "Wrong credentials."
        assert not [c for c in await context.cookies() if "user" in c["value"]]
        await page.goto(f"{setup.ui}/dead-letters")
        assert page.url.startswith(f"{setup.ui}/login")  # still not logged in
        await screenshot(page, "login")
        await context.close()


async def test_a_post_without_the_csrf_token_or_with_a_forged_cookie_changes_nothing(
    tmp_path: Path,
) -> None:
    async with console_setup(tmp_path) as setup, chromium() as browser:
        context, page = await new_page(browser)
        await log_in(page, setup.ui)
        assert await setup.notifier.post_alerts(webhook_payload("Forged")) == 202
        await wait_until(lambda: setup.paged("pager", "Forged") > 0, "step 1", WAIT)
        incident = await setup.incident_of("Forged")
        ack = f"{setup.ui}/incidents/{incident['id']}/ack"

        # The browser's own session, but no token, then a wrong one: 403.
        for form in ({"by": "kim"}, {"by": "kim", "csrf": "guess"}):
            answer = await page.request.post(ack, form=form)
            assert answer.status == 403
        # A forged session cookie with a token made up to match it: 403.
        await page.goto(f"{setup.ui}/incidents")
        token = await page.locator("input[name=csrf]").first.get_attribute("value")
        forged = "c2Vzc2lvbjo5OTk5OTk5OTk5Om9wZXJhdG9y.forgedsignature"
        async with aiohttp.ClientSession(cookies={"notifier_console": forged}) as session:
            async with session.post(ack, data={"by": "kim", "csrf": token}) as answer:
                assert answer.status == 403
            async with session.get(f"{setup.ui}/incidents", allow_redirects=False) as answer:
                assert answer.status == 303  # to the login form: the cookie is no session
        assert (await setup.incident_of("Forged"))["state"] == "open"
        await context.close()


async def test_no_page_shows_a_secret(tmp_path: Path) -> None:
    async with console_setup(tmp_path) as setup, chromium() as browser:
        context, page = await new_page(browser)
        await page.goto(f"{setup.ui}/login")
        pages = {"login": await page.content()}
        await log_in(page, setup.ui)
        assert await setup.notifier.post_alerts(webhook_payload("Leak")) == 202
        warning = webhook_payload("LeakWarning", severity="warning")
        assert await setup.notifier.post_alerts(warning) == 202
        await wait_until(lambda: len(setup.flaky.requests) > 0, "the flaky sink", WAIT)
        assert await setup.notifier.post_alerts(webhook_payload("Watchdog", "none")) == 202
        for name in [
            "incidents",
            "dead-letters",
            "dead-letters/purge",
            "deliveries",
            "deliveries?q=secret",
            "channels",
            "routes",
            "routes?labels=severity%3Dcritical",
            "heartbeats",
        ]:
            answer = await page.goto(f"{setup.ui}/{name}")
            assert answer is not None and answer.status == 200, name
            pages[name] = await page.content()
            if name == "heartbeats":  # the demo has none: this config's screenshot
                await screenshot(page, name)
        for name, html in pages.items():
            for secret in SECRETS:
                assert secret not in html, f"{name} shows a secret"
        assert "oncall" in pages["routes"] and "standin" in pages["routes"]
        assert "prometheus-watchdog" in pages["heartbeats"]
        assert (
            "escalation policy oncall (route critical)"
            in pages["routes?labels=severity%3Dcritical"]
        )
        await context.close()
