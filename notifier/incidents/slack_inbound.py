"""Slack's interactivity requests: a responder clicks Acknowledge or Silence 1h (DESIGN §8).

``POST /api/v1/slack/interactions`` is open to Slack, so the request proves itself:
slack-sdk's ``SignatureVerifier`` checks the HMAC of the raw body and the 5-minute
window against every Slack channel's ``signing_secret`` before the body is parsed, and a
(timestamp, signature) pair seen before is a replay. Only then is the ``payload`` field
read, and only a click by a Slack user who is a configured responder changes anything.

Slack shows any answer but 200 as an error to the person who clicked, so a click that is
authentic but refused (not a responder, incident resolved) is a 200, and the clicker is
told why by an ephemeral message (``chat.postEphemeral``); forged, stale, replayed or
malformed requests get 401 / 400 and change nothing. The store work is one
compare-and-set and the ephemeral post is bounded, so the answer leaves within Slack's
3 seconds; the message itself is updated by the announcement the acknowledgement enqueues.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk.signature import Clock, SignatureVerifier

from notifier.channels.slack import SlackChannel as SlackSender
from notifier.channels.slack_buttons import ACKNOWLEDGE, SILENCE_1H, SILENCE_SECONDS
from notifier.config import Config, SlackChannel
from notifier.incidents.engine import IncidentEngine, Outcome
from notifier.incidents.inbound import BodyRefused, error, read_body

if TYPE_CHECKING:
    from notifier.runtime import Runtime

log = logging.getLogger(__name__)

SLACK_PATH = "/api/v1/slack/interactions"
REPLAY_TTL = 15 * 60.0  # longer than the window in which a signature is accepted
EPHEMERAL_TIMEOUT = 1.0  # of Slack's 3 seconds for the whole answer
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class _FixedClock(Clock):
    """The service's clock, for the verifier's 5-minute window."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def signing_secrets(config: Config) -> dict[str, str]:
    """The Slack channels that can verify clicks, by name, with their signing secrets."""
    return {
        name: channel.signing_secret.get_secret_value()
        for name, channel in config.channels.items()
        if isinstance(channel, SlackChannel) and channel.signing_secret is not None
    }


def verified(
    body: bytes, timestamp: str | None, signature: str | None, secrets: Sequence[str], now: float
) -> bool:
    """True when one of ``secrets`` signed ``body`` at ``timestamp``, within 5 minutes of
    ``now``. Headers of the wrong shape are refused before the verifier sees them (it
    would raise on a timestamp that is not a number, or a body that is not UTF-8)."""
    if timestamp is None or signature is None:
        return False
    if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
        return False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False  # Slack signs UTF-8 forms only
    clock = _FixedClock(now)
    return any(SignatureVerifier(s, clock).is_valid(text, timestamp, signature) for s in secrets)


class _User(BaseModel):
    id: str = Field(min_length=1, max_length=64)


class _Action(BaseModel):
    action_id: str
    value: str = Field(default="", max_length=64)


class _Channel(BaseModel):
    id: str = Field(min_length=1, max_length=64)


class _Interaction(BaseModel):
    """The fields of a ``block_actions`` payload used here; Slack sends many more."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["block_actions"]
    user: _User
    channel: _Channel | None = None
    actions: list[_Action] = Field(min_length=1, max_length=10)


@dataclass(frozen=True, slots=True)
class Click:
    user_id: str
    action: Literal["acknowledge", "silence"]
    incident_id: str
    channel_id: str | None = None  # where the clicked message is


def parse_click(body: bytes) -> Click:
    """The button click in a verified body; ``ValueError`` says what is wrong with it."""
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    payloads = [value for name, value in fields if name == "payload"]
    if len(payloads) != 1:
        raise ValueError("the form must have exactly one payload field")
    try:
        interaction = _Interaction.model_validate_json(payloads[0])
    except ValidationError as exc:
        where = sorted({".".join(map(str, e["loc"])) or "payload" for e in exc.errors()})
        raise ValueError(f"not a block_actions payload ({', '.join(where)})") from None
    action = interaction.actions[0]
    if action.action_id not in (ACKNOWLEDGE, SILENCE_1H) or not action.value:
        raise ValueError("not an incident button")
    kind: Literal["acknowledge", "silence"] = (
        "acknowledge" if action.action_id == ACKNOWLEDGE else "silence"
    )
    channel_id = interaction.channel.id if interaction.channel else None
    return Click(interaction.user.id, kind, action.value, channel_id)


async def answer_click(
    runtime: Runtime, channel_name: str, click: Click, text: str
) -> web.Response:
    """Tell the person who clicked, and only them: Slack ignores the body of the answer
    to a block action, so the text also goes out as ``chat.postEphemeral`` through the
    channel whose secret verified the click (bounded: Slack waits 3 seconds at most)."""
    channel = runtime.channels.get(channel_name) if runtime.channels else None
    if isinstance(channel, SlackSender) and click.channel_id:
        await channel.tell_user(click.channel_id, click.user_id, text, EPHEMERAL_TIMEOUT)
    return web.json_response(
        {"response_type": "ephemeral", "replace_original": False, "text": text}
    )


def outcome_text(click: Click, by: str, outcome: Outcome) -> str:
    if outcome.refusal is not None:
        return f"Incident {click.incident_id}: {outcome.refusal.value}."
    assert outcome.incident is not None
    incident = outcome.incident
    if click.action == "acknowledge":
        if outcome.changed:
            return f"You acknowledged incident {incident.id}."
        return f"Incident {incident.id} was already acknowledged by {incident.acknowledged_by}."
    if outcome.changed:
        return f"You silenced incident {incident.id} for 1h."
    return f"Incident {incident.id}: nothing to change."


def slack_interactions_handler(
    runtime_of: Callable[[web.Request], Runtime],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def slack_interactions(request: web.Request) -> web.Response:
        runtime = runtime_of(request)
        config = runtime.loaded.config
        secrets = signing_secrets(config)
        if not secrets:
            return error(403, "no Slack channel has a signing_secret: clicks cannot be verified")
        try:
            body = await read_body(request, config)
        except BodyRefused as refused:
            return refused.response
        now = runtime.clock()
        timestamp = request.headers.get("X-Slack-Request-Timestamp")
        signature = request.headers.get("X-Slack-Signature")
        channel_name = next(
            (
                name
                for name, secret in secrets.items()
                if verified(body, timestamp, signature, [secret], now)
            ),
            None,
        )
        if channel_name is None:
            log.warning(
                "slack interaction refused: bad or stale signature",
                extra={"remote": request.remote},
            )
            return error(401, "missing, invalid or stale Slack signature")
        if not await runtime.store.remember_once(
            f"slack-interaction:{timestamp}:{signature}", REPLAY_TTL, now
        ):
            log.warning("slack interaction refused: replayed", extra={"remote": request.remote})
            return error(401, "this request was already received (a replay)")
        try:
            click = parse_click(body)
        except ValueError as exc:
            log.warning("slack interaction refused: %s", exc)
            return error(400, str(exc))
        engine = runtime.incidents
        responder = engine.responder_by_slack_user(click.user_id)
        if responder is None:
            log.warning(
                "slack click refused: not a responder",
                extra={"slack_user": click.user_id, "incident": click.incident_id},
            )
            return await answer_click(
                runtime, channel_name, click, "You are not a responder: nothing was changed."
            )
        outcome = await _act(engine, click, responder.name)
        log.info(
            "slack click",
            extra={
                "incident": click.incident_id,
                "action": click.action,
                "by": responder.name,
                "changed": outcome.changed,
            },
        )
        return await answer_click(
            runtime, channel_name, click, outcome_text(click, responder.name, outcome)
        )

    return slack_interactions


async def _act(engine: IncidentEngine, click: Click, by: str) -> Outcome:
    if click.action == "acknowledge":
        return await engine.acknowledge(click.incident_id, by, "slack")
    return await engine.silence(click.incident_id, by, SILENCE_SECONDS, "slack")
