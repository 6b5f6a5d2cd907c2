"""The log channel: one JSON line per notification on stdout (demo config, debugging).

The line holds ``channel``, ``route``, ``job_id``, ``status``, ``group_key``, the number
of ``alerts`` and the rendered ``message`` (the configured template, else the built-in
plain text). It needs no credentials. A stream that cannot be written fails the delivery
with a retryable error, like any other channel whose peer is down: a line that was never
written is not reported as delivered.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from notifier.channels.base import FailureReason, Receipt, RetryableError
from notifier.config import LogChannel as LogConfig
from notifier.notification import Notification
from notifier.templates import FALLBACK_TEXT, Renderer, template_context


class LogChannel:
    type = "log"

    def __init__(
        self, name: str, config: LogConfig, renderer: Renderer, *, stream: TextIO | None = None
    ) -> None:
        self.name = name
        self._template = config.template
        self._renderer = renderer
        # None: whatever sys.stdout is at write time (pytest and the CLI swap it).
        self._stream = stream

    def _message(self, notification: Notification) -> str:
        context = template_context(notification, self.type)
        if self._template is None:
            return self._renderer.render_string(FALLBACK_TEXT, context, FALLBACK_TEXT).text
        return self._renderer.render_file(self._template, context, FALLBACK_TEXT).text

    def preview(self, notification: Notification) -> str:
        return json.dumps(
            {
                "channel": notification.channel,
                "route": notification.route,
                "job_id": notification.job_id,
                "status": notification.status,
                "group_key": notification.group_key,
                "alerts": len(notification.alerts),
                "message": self._message(notification),
            },
            ensure_ascii=False,
        )

    async def send(self, notification: Notification) -> Receipt:
        line = self.preview(notification)
        stream = self._stream or sys.stdout
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream is closed
            raise RetryableError(
                FailureReason.OTHER, f"cannot write its stream ({type(exc).__name__})"
            ) from exc
        return Receipt(self.name, "written")

    async def close(self) -> None:
        """Nothing to close: the stream is not ours."""
