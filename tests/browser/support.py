"""A real headless browser for the console tests: Debian's chromium driven by Playwright.

Playwright never downloads a browser here: it launches the ``chromium`` on PATH (skipped
when missing, a failure under ``CI=true``). Screenshots for the README are written only
when ``NOTIFIER_SCREENSHOTS=1``, so a test run leaves the tree clean.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

from tests.binaries import require_binary

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs/console"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    binary = require_binary("chromium", "chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=binary, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Page, name: str) -> None:
    """``docs/console/NAME.png`` of the whole page, when screenshots are asked for."""
    if os.environ.get("NOTIFIER_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
