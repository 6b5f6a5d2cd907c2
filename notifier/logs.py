"""Structured logs: one JSON object per line on stderr.

Callers pass facts as ``extra={...}`` (ids, channel, outcome, reason, latency); this
module only formats them. It never receives a payload or a secret: callers log
config names, ids and our own safe error texts only.

The receiver writes one line per webhook request, so formatting is on the hot path:
the timestamp's seconds are formatted once per second, and the records skip the
process and multiprocessing lookups that no line of ours shows.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

SDK_LOGGERS = ("twilio", "slack_sdk")

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:  # a race between threads only formats it twice
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key[0] != "_":
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class MalformedRequests(logging.Filter):
    """For aiohttp's server logger: a request it cannot parse becomes one warning line.

    aiohttp answers it 400 itself and logs it at error with a traceback whose message
    quotes up to 100 bytes of the offending line, maybe a credential. The line left says
    only what was wrong (the exception class) and the status; the request was the
    client's fault, not ours.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed HTTP request", ()
            record.__dict__.update(error=type(exc).__name__, status=exc.code)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def setup_logging(level: str = "info") -> None:
    """Send every log record to stderr as JSON lines at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Documented switches (logging's "Optimization" notes): our lines show neither.
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # aiohttp's own access log is replaced by our request log line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequests())
    # The SDKs log each request (URLs, headers, phone numbers) at info: debugging only.
    sdk_level = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(sdk_level)
