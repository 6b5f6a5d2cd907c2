"""Incidents as JSON, the way every store keeps them (never pickle)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from notifier.incidents.machine import Incident, State, TimelineEntry


def incident_to_json(incident: Incident) -> str:
    return json.dumps(asdict(incident), separators=(",", ":"))


def incident_from_json(text: str | bytes) -> Incident:
    data: dict[str, Any] = json.loads(text)
    data["state"] = State(data["state"])
    data["paged_channels"] = tuple(data["paged_channels"])
    data["timeline"] = tuple(TimelineEntry(**entry) for entry in data["timeline"])
    return Incident(**data)
