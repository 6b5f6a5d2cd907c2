"""How the heartbeats look from outside: ``/api/v1/status`` (and the console) list them so."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from notifier.heartbeats.state import Heartbeat, HeartbeatState


def heartbeats_json(
    states: Sequence[tuple[Heartbeat, HeartbeatState | None]],
) -> list[dict[str, Any]]:
    """Each heartbeat: ``state`` waiting / ok / missed, times as unix seconds (None: not yet).

    A heartbeat with no stored state yet (the notifier is starting) counts as waiting.
    """
    return [
        {
            "name": heartbeat.name,
            "state": "waiting" if state is None else state.status,
            "timeout_seconds": heartbeat.timeout,
            "channels": list(heartbeat.channels),
            "last_seen": None if state is None else state.last_seen,
            "due_at": None if state is None or state.missed_since is not None else state.due_at,
            "missed_since": None if state is None else state.missed_since,
        }
        for heartbeat, state in states
    ]
