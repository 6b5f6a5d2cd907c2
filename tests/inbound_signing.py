"""Signing requests as Slack and Twilio do, for the tests of the inbound endpoints."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from notifier.channels.slack_buttons import ACKNOWLEDGE


def slack_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's headers: HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the signing secret."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def click_payload(user_id: str, incident_id: str, action_id: str = ACKNOWLEDGE) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack sends it for a button click (trimmed)."""
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": "someone", "team_id": "T000"},
        "api_app_id": "A000",
        "container": {"type": "message", "message_ts": "1700000000.000001"},
        "channel": {"id": "C0ALERTS", "name": "alerts"},
        "response_url": "https://hooks.slack.com/actions/T000/1/abc",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "incident_actions",
                "value": incident_id,
                "action_ts": "1700000001.000000",
            }
        ],
    }


def click_body(user_id: str, incident_id: str, action_id: str = ACKNOWLEDGE) -> bytes:
    return urlencode(
        {"payload": json.dumps(click_payload(user_id, incident_id, action_id))}
    ).encode()


def twilio_form(phone: str, text: str, sid: str) -> dict[str, str]:
    """An inbound SMS as Twilio posts it (the fields that matter, and a few that do not)."""
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": "+15005550006",
        "Body": text,
        "NumMedia": "0",
    }


def twilio_headers(token: str, url: str, form: dict[str, str]) -> dict[str, str]:
    return {
        "X-Twilio-Signature": RequestValidator(token).compute_signature(url, form),
        "Content-Type": "application/x-www-form-urlencoded",
    }
