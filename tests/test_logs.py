"""``setup_logging`` in a child interpreter (it configures the process's root logger)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.processes import child_env

_LOG_A_LINE_EACH = """
import logging, sys
from notifier.logs import setup_logging
setup_logging(sys.argv[1])
for name in ("twilio.http_client", "slack_sdk.web.async_base_client", "notifier.delivery"):
    logging.getLogger(name).info("from %s", name)
"""


def _loggers_heard(level: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _LOG_A_LINE_EACH, level],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line)["logger"] for line in done.stderr.splitlines()]


@pytest.mark.parametrize(
    ("level", "heard"),
    [
        ("info", ["notifier.delivery"]),
        (
            "debug",
            ["twilio.http_client", "slack_sdk.web.async_base_client", "notifier.delivery"],
        ),
    ],
)
def test_sdk_request_logs_only_at_debug(level: str, heard: list[str]) -> None:
    assert _loggers_heard(level) == heard
