"""The Acknowledge and Silence 1h buttons on an escalation page in Slack (DESIGN §8).

One Block Kit ``actions`` block; each button's ``value`` is the incident's id and its
``action_id`` says what a click asks for. ``notifier.incidents.slack_inbound`` reads
the clicks back with the same names.
"""

from __future__ import annotations

from typing import Any

ACKNOWLEDGE = "incident_acknowledge"
SILENCE_1H = "incident_silence_1h"
SILENCE_SECONDS = 3600.0  # what SILENCE_1H asks for
BLOCK_ID = "incident_actions"


def incident_buttons(incident_id: str) -> dict[str, Any]:
    """The actions block a responder clicks to acknowledge or silence ``incident_id``."""
    return {
        "type": "actions",
        "block_id": BLOCK_ID,
        "elements": [
            {
                "type": "button",
                "action_id": ACKNOWLEDGE,
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "style": "primary",
                "value": incident_id,
            },
            {
                "type": "button",
                "action_id": SILENCE_1H,
                "text": {"type": "plain_text", "text": "Silence 1h"},
                "value": incident_id,
            },
        ],
    }
