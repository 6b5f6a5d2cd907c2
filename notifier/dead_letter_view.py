"""A dead letter as JSON, the way the HTTP API answers and the console shows it."""

from __future__ import annotations

from typing import Any

from notifier.store.base import DeadLetter


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "channel": letter.channel,
        "reason": letter.reason,
        "error": letter.error,
        "attempts": letter.attempts,
        "first_attempt_at": letter.first_attempt_at,
        "last_attempt_at": letter.last_attempt_at,
        "route": letter.notification.route,
        "group_key": letter.notification.group_key,
        "alerts": [a.model_dump(mode="json", by_alias=True) for a in letter.notification.alerts],
    }
