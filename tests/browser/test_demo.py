"""The console over ``config/demo.yaml`` as ``make run`` starts it: no ``server.auth``, so
open on localhost and saying so on every page; the README's screenshots come from here.

The demo's storage moves to the test's folder; everything else is the file as shipped.
A critical and a warning alert arrive through the real receiver; the critical one opens
an incident under the demo's escalation policy.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.browser.support import ROOT, chromium, screenshot
from tests.processes import NotifierProcess, running_notifier, wait_until, webhook_payload

pytestmark = pytest.mark.e2e

WAIT = 30.0  # a bound for a hang, not a speed
PAGES = ["incidents", "deliveries", "channels", "routes?labels=severity%3Dcritical"]


def demo_config(folder: Path) -> Path:
    document = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    document["storage"]["url"] = f"sqlite:///{folder / 'demo.db'}"
    document["templates_dir"] = str(ROOT / "templates")
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


async def post(notifier: NotifierProcess, name: str, severity: str) -> None:
    body = json.dumps(webhook_payload(name, severity))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{notifier.url}/api/v1/alerts",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as answer,
    ):
        assert answer.status == 202


async def test_the_demo_console_is_open_on_localhost_and_shows_its_incident(
    tmp_path: Path,
) -> None:
    async with running_notifier(demo_config(tmp_path), tmp_path) as notifier:
        await post(notifier, "HighErrorRate", "critical")
        await post(notifier, "DiskFilling", "warning")

        async def incident_paged() -> bool:
            incidents = (await notifier.get_json("/api/v1/incidents"))["incidents"]
            return len(incidents) == 1 and incidents[0]["pages_sent"] == 1

        await wait_until(incident_paged, "the demo incident's step 1", WAIT)
        async with chromium() as browser:
            context = await browser.new_context(
                viewport={"width": 1280, "height": 860}, timezone_id="Europe/Berlin"
            )
            page = await context.new_page()
            for name in PAGES:
                answer = await page.goto(f"{notifier.url}/ui/{name}")
                assert answer is not None and answer.status == 200, name
                banner = page.get_by_role("note")
                assert "open, read-write" in await banner.inner_text(), name
                await screenshot(page, name.partition("?")[0])
            await page.goto(f"{notifier.url}/ui/incidents")
            assert "HighErrorRate" in await page.locator("article.incident").inner_text()
            await page.set_viewport_size({"width": 390, "height": 844})  # a phone
            await page.reload()
            await screenshot(page, "incidents-phone")
            await context.close()
