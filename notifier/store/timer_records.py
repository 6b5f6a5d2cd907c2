"""Timers as JSON, the way the SQLite and Redis stores keep them (never pickle).

Floats are written with ``repr`` (``json``'s way), so a due time reads back exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from notifier.store.base import Timer

TimerData = Mapping[str, str | int | float | bool | None]


def timer_data_to_json(data: TimerData) -> str:
    return json.dumps(dict(data), separators=(",", ":"), ensure_ascii=False)


def timer_to_json(timer: Timer) -> str:
    """The whole timer: the Redis store keeps it in one hash field."""
    return json.dumps(
        {
            "id": timer.id,
            "key": timer.key,
            "group": timer.group,
            "kind": timer.kind,
            "due_at": timer.due_at,
            "data": dict(timer.data),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def timer_from_json(text: str | bytes) -> Timer:
    fields: dict[str, Any] = json.loads(text)
    return Timer(**fields)
