"""Payload models against every real Alertmanager 0.25 capture, and the edge cases of the format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from notifier.payload import WebhookPayload, labels_fingerprint, unquote_meta

FIXTURES = Path(__file__).parent / "fixtures/alertmanager"
PAYLOADS = sorted(FIXTURES.glob("*.json"))


@pytest.mark.parametrize("path", PAYLOADS, ids=[p.stem for p in PAYLOADS])
def test_every_capture_validates_and_round_trips(path: Path) -> None:
    raw = json.loads(path.read_bytes())
    payload = WebhookPayload.model_validate_json(path.read_bytes())
    assert len(payload.alerts) == len(raw["alerts"])
    assert payload.group_key == raw["groupKey"]
    for alert, raw_alert in zip(payload.alerts, raw["alerts"], strict=True):
        assert alert.fingerprint == raw_alert["fingerprint"]
        assert (alert.ends_at is None) == raw_alert["endsAt"].startswith("0001-01-01")
    again = payload.to_alertmanager_json()
    for alert, raw_alert in zip(again["alerts"], raw["alerts"], strict=True):  # type: ignore[call-overload]
        if raw_alert["endsAt"].startswith("0001-01-01"):
            assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert WebhookPayload.model_validate(again) == payload


def test_receiver_is_unescaped_like_go_quote_meta() -> None:
    assert unquote_meta(r"web\.hook") == "web.hook"
    assert unquote_meta(r"a\+b\(c\)\[d\]\{e\}\^\$\|\?\*\\") == "a+b(c)[d]{e}^$|?*\\"
    raw = json.loads((FIXTURES / "firing_single.json").read_bytes())
    raw["receiver"] = r"team\.infra\-pager"
    assert WebhookPayload.model_validate(raw).receiver == r"team.infra\-pager"


def test_unknown_fields_are_ignored() -> None:
    raw = json.loads((FIXTURES / "firing_single.json").read_bytes())
    raw["notification_reason"] = "repeat"
    raw["routeLabels"] = {"team": "infra"}
    raw["alerts"][0]["newField"] = 1
    assert WebhookPayload.model_validate(raw).alerts[0].labels["team"] == "infra"


@pytest.mark.parametrize(
    ("change", "location"),
    [
        (lambda d: d.pop("alerts"), ("alerts",)),
        (lambda d: d.update(version="3"), ("version",)),
        (lambda d: d.update(status="pending"), ("status",)),
        (lambda d: d["alerts"][0].pop("labels"), ("alerts", 0, "labels")),
        (lambda d: d["alerts"][0].update(startsAt="yesterday"), ("alerts", 0, "startsAt")),
        (lambda d: d.update(alerts=[]), ("alerts",)),
        (lambda d: d["alerts"][0]["labels"].update(n=1), ("alerts", 0, "labels", "n")),
    ],
)
def test_core_fields_are_required(change, location) -> None:  # type: ignore[no-untyped-def]
    raw = json.loads((FIXTURES / "firing_single.json").read_bytes())
    change(raw)
    with pytest.raises(ValidationError) as caught:
        WebhookPayload.model_validate(raw)
    assert location in [tuple(e["loc"]) for e in caught.value.errors()]


def test_missing_fingerprint_is_derived_from_labels() -> None:
    raw = json.loads((FIXTURES / "firing_single.json").read_bytes())
    del raw["alerts"][0]["fingerprint"]
    alert = WebhookPayload.model_validate(raw).alerts[0]
    assert alert.fingerprint == labels_fingerprint(alert.labels)
    assert labels_fingerprint({"a": "1", "b": "2"}) == labels_fingerprint({"b": "2", "a": "1"})
    assert labels_fingerprint({"a": "1"}) != labels_fingerprint({"a": "2"})
