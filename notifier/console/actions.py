"""The console's forms (POST): acknowledge, silence, replay, purge, test-send.

The guard has checked the session and the CSRF token; each action calls what the API
and CLI call (the incident engine, the store's replay and purge, a channel's send as
``notifier fire --channel`` does) and redirects to its page with a notice.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from aiohttp import web

from notifier.channels.base import DeliveryError
from notifier.console.app import PREFIX, Visit, see_other
from notifier.incidents.engine import Outcome
from notifier.runtime import sample_notification
from notifier.sample import build_payload

# "Until resolved": a silence no incident outlives; resolving the incident ends it.
UNTIL_RESOLVED = 10 * 365 * 86400.0
SILENCES = {"1h": 3600.0, "4h": 4 * 3600.0, "resolved": UNTIL_RESOLVED}


def back(page: str, notice: str) -> web.Response:
    return see_other(f"{PREFIX}/{page}?{urlencode({'notice': notice})}")


async def _form(visit: Visit) -> dict[str, str]:
    form = await visit.request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _outcome_notice(incident_id: str, outcome: Outcome, done: str) -> str:
    if outcome.refusal is not None:
        return f"Incident {incident_id}: not changed ({outcome.refusal.value})."
    if not outcome.changed:
        return f"Incident {incident_id}: already {done}."
    return f"Incident {incident_id} {done}."


async def acknowledge(visit: Visit) -> web.StreamResponse:
    form = await _form(visit)
    incident_id = visit.request.match_info["id"]
    engine = visit.runtime.incidents
    outcome = await engine.acknowledge(incident_id, form.get("by", ""), "console")
    return back("incidents", _outcome_notice(incident_id, outcome, "acknowledged"))


async def unacknowledge(visit: Visit) -> web.StreamResponse:
    form = await _form(visit)
    incident_id = visit.request.match_info["id"]
    outcome = await visit.runtime.incidents.unacknowledge(
        incident_id, form.get("by", ""), "console"
    )
    return back("incidents", _outcome_notice(incident_id, outcome, "un-acknowledged"))


async def silence(visit: Visit) -> web.StreamResponse:
    form = await _form(visit)
    incident_id = visit.request.match_info["id"]
    duration = SILENCES.get(form.get("for", ""))
    if duration is None:
        return back("incidents", "Silence for 1h, 4h or until resolved.")
    outcome = await visit.runtime.incidents.silence(
        incident_id, form.get("by", ""), duration, "console"
    )
    what = "silenced until resolved" if form["for"] == "resolved" else f"silenced for {form['for']}"
    return back("incidents", _outcome_notice(incident_id, outcome, what))


def _wake(visit: Visit) -> None:
    if visit.runtime.dispatcher is not None:
        visit.runtime.dispatcher.wake()


async def replay(visit: Visit) -> web.StreamResponse:
    letter = visit.request.match_info["id"]
    runtime = visit.runtime
    if not await runtime.store.replay(letter, runtime.clock()):
        return back("dead-letters", f"No dead letter {letter}.")
    _wake(visit)
    return back("dead-letters", f"Dead letter {letter} replayed.")


async def replay_all(visit: Visit) -> web.StreamResponse:
    count = await visit.runtime.store.replay_all(visit.runtime.clock())
    _wake(visit)
    return back("dead-letters", f"{count} dead letters replayed.")


async def purge(visit: Visit) -> web.StreamResponse:
    form = await _form(visit)
    if form.get("confirm") != "purge":
        return back("dead-letters", "Nothing purged: the purge was not confirmed.")
    count = await visit.runtime.store.purge_dead_letters()
    return back("dead-letters", f"{count} dead letters purged.")


async def test_send(visit: Visit) -> web.StreamResponse:
    """One sample alert straight through the channel, as ``notifier fire --channel`` sends."""
    name = visit.request.match_info["name"]
    runtime = visit.runtime
    if runtime.channels is None or name not in runtime.loaded.config.channels:
        return back("channels", f"No channel {name} to test.")
    payload = build_payload(
        alertname="ConsoleTestSend",
        severity="info",
        annotations={"summary": "A test notification sent from the console"},
    )
    notification = sample_notification(payload, name, route="console").model_copy(
        update={"job_id": uuid.uuid4().hex}
    )
    try:
        receipt = await runtime.channels[name].send(notification)
    except DeliveryError as exc:
        return back("channels", f"{name}: test send failed: {exc}")
    return back("channels", f"{name}: test sent {receipt.detail}".rstrip() + ".")


# (method, path under /ui, page, login required)
ROUTES = [
    ("POST", "/incidents/{id}/ack", acknowledge, True),
    ("POST", "/incidents/{id}/unack", unacknowledge, True),
    ("POST", "/incidents/{id}/silence", silence, True),
    ("POST", "/dead-letters/{id}/replay", replay, True),
    ("POST", "/dead-letters/replay-all", replay_all, True),
    ("POST", "/dead-letters/purge", purge, True),
    ("POST", "/channels/{name}/test", test_send, True),
]
