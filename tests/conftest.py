"""Shared fixtures: a running app on a config written to tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from notifier.runtime import Runtime
from notifier.server import create_app
from notifier.testing import TEMPLATES_DIR

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests/fixtures/alertmanager"
TEMPLATES = Path(TEMPLATES_DIR)

LOG_CONFIG = f"""
server:
  listen: "127.0.0.1:0"
  auth: {{bearer_token: "s3cret-token"}}
  max_body_bytes: 65536
storage: {{url: "memory://"}}
templates_dir: "{TEMPLATES}"
channels:
  console: {{type: log}}
  console-sms: {{type: log, template: critical_alert.txt}}
routes:
  - name: critical
    matchers: ['severity="critical"']
    channels: [console-sms, console]
default_channels: [console]
"""

AppFactory = Callable[..., Coroutine[Any, Any, TestClient[Any, Any]]]


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "notifier.yaml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
async def app_client(
    aiohttp_client: Any, write_config: Callable[[str], Path]
) -> AsyncIterator[AppFactory]:
    """Start the real app (runtime included) on a config text; returns (client)."""

    async def start(config_text: str = LOG_CONFIG, env: dict[str, str] | None = None) -> Any:
        runtime = Runtime(write_config(config_text), env or {})
        client = await aiohttp_client(create_app(runtime))
        return client

    yield start
