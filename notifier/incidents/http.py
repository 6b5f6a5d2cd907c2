"""The incidents HTTP API (DESIGN §2, §8): list, show, acknowledge, un-acknowledge, silence.

Behind the service's own credentials (the server's middleware), so the caller is
trusted to say who it is; ``{"by": NAME}`` must still name a configured responder. An
answer is ``{"incident": {...}, "changed": bool}``; a request that cannot change the
incident is an error: 404 unknown incident, 409 resolved (or nothing to change in its
state), 400 a body that is not ``{"by": responder}`` (silence: and ``"for": "1h"``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from notifier.durations import parse_duration
from notifier.incidents.engine import IncidentEngine, Outcome, Refusal
from notifier.incidents.views import incident_json

EngineOf = Callable[[web.Request], IncidentEngine]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]

_STATUS = {
    Refusal.UNKNOWN_INCIDENT: 404,
    Refusal.NOT_A_RESPONDER: 400,
    Refusal.RESOLVED: 409,
    Refusal.NOT_APPLICABLE: 409,
}


MAX_SILENCE = 30 * 86400.0  # seconds: a silence longer than 30 days is a mistake


class ActRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    by: str = Field(min_length=1, max_length=200)
    # Seconds, given as "1h" or a number; finite and at most MAX_SILENCE, so a silence
    # always ends and its end is a time every store and page can hold.
    for_: float | None = Field(default=None, alias="for", gt=0, le=MAX_SILENCE, allow_inf_nan=False)

    @field_validator("for_", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return parse_duration(value).total_seconds()
            except OverflowError:
                raise ValueError(f"longer than {MAX_SILENCE:.0f} seconds") from None
        return value


# What an action endpoint asks of the engine, given the incident id and the checked body.
_Act = Callable[[IncidentEngine, str, ActRequest], Awaitable[Outcome]]


def _error(status: int, error: str, details: list[Any] | None = None) -> web.Response:
    return web.json_response({"error": error, "details": details or []}, status=status)


async def _act_request(request: web.Request) -> ActRequest | web.Response:
    try:
        body = await request.read()
        data = json.loads(body) if body.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _error(400, "malformed JSON", [str(exc)])
    try:
        return ActRequest.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": list(e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        return _error(400, 'the body must be {"by": "<responder>"}', details)


async def _ack(engine: IncidentEngine, incident_id: str, body: ActRequest) -> Outcome:
    return await engine.acknowledge(incident_id, body.by, "api")


async def _unack(engine: IncidentEngine, incident_id: str, body: ActRequest) -> Outcome:
    return await engine.unacknowledge(incident_id, body.by, "api")


async def _silence(engine: IncidentEngine, incident_id: str, body: ActRequest) -> Outcome:
    assert body.for_ is not None  # ``acting(needs_for=True)`` answered 400 otherwise
    return await engine.silence(incident_id, body.by, body.for_, "api")


def incident_routes(engine_of: EngineOf) -> list[Route]:
    """(method, path, handler) of every incidents endpoint, for the server's route list."""

    async def list_incidents(request: web.Request) -> web.Response:
        engine = engine_of(request)
        state = request.query.get("state")
        if state not in (None, "open", "all"):
            return _error(400, "state must be open or all")
        try:
            limit = max(1, min(int(request.query.get("limit", 100)), 10_000))
        except ValueError:
            return _error(400, "limit must be an integer")
        incidents = await engine.incidents(open_only=state == "open", limit=limit)
        return web.json_response(
            {"incidents": [incident_json(i, engine.policy(i)) for i in incidents]}
        )

    async def show_incident(request: web.Request) -> web.Response:
        engine = engine_of(request)
        incident = await engine.get(request.match_info["id"])
        if incident is None:
            return _error(404, f"no incident {request.match_info['id']}")
        return web.json_response({"incident": incident_json(incident, engine.policy(incident))})

    def answer(engine: IncidentEngine, outcome: Outcome, by: str) -> web.Response:
        if outcome.refusal is not None:
            what = (
                f"{by!r} is {outcome.refusal.value}"
                if outcome.refusal is Refusal.NOT_A_RESPONDER
                else outcome.refusal.value
            )
            return _error(_STATUS[outcome.refusal], what)
        assert outcome.incident is not None
        incident = incident_json(outcome.incident, engine.policy(outcome.incident))
        return web.json_response({"incident": incident, "changed": outcome.changed})

    def acting(act: _Act, *, needs_for: bool = False) -> Handler:
        """A POST on one incident: read ``{"by": ...}`` (and ``"for"``), ``act``, answer."""

        async def handler(request: web.Request) -> web.Response:
            body = await _act_request(request)
            if isinstance(body, web.Response):
                return body
            if needs_for and body.for_ is None:
                return _error(400, 'silence needs "for", a duration like "1h"')
            engine = engine_of(request)
            outcome = await act(engine, request.match_info["id"], body)
            return answer(engine, outcome, body.by)

        return handler

    return [
        ("GET", "/api/v1/incidents", list_incidents),
        ("GET", "/api/v1/incidents/{id}", show_incident),
        ("POST", "/api/v1/incidents/{id}/ack", acting(_ack)),
        ("POST", "/api/v1/incidents/{id}/unack", acting(_unack)),
        ("POST", "/api/v1/incidents/{id}/silence", acting(_silence, needs_for=True)),
    ]
