"""Twilio's inbound-SMS webhook: a responder replies "ACK 4821" to a page (DESIGN §8).

``POST /api/v1/twilio/sms`` is open to Twilio, so the request proves itself: twilio's
``RequestValidator`` checks ``X-Twilio-Signature`` over ``server.public_url`` + the path
(the URL Twilio was given, whatever proxy is in between) and the form fields, against
every SMS channel's ``auth_token``. A form that cannot be read is a 400 (it cannot be
checked either), a bad signature a 401; nothing in the message is believed before that.

Then a ``MessageSid`` seen before is dropped (Twilio retries a webhook it thinks failed),
and the code counts only from a responder's phone that one of the incident's paged SMS
channels sent to. Every authentic message gets TwiML that confirms or says why not:
Twilio sends it back as an SMS only for a 200 answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from notifier.channels.sms import mask_number
from notifier.config import Config, SmsChannel
from notifier.incidents.inbound import BodyRefused, error, read_body
from notifier.incidents.machine import Incident

if TYPE_CHECKING:
    from notifier.runtime import Runtime

log = logging.getLogger(__name__)

SMS_PATH = "/api/v1/twilio/sms"
SEEN_TTL = 7 * 24 * 3600.0  # Twilio's retries of one message come within this
ACK_REPLY = re.compile(r"\s*ack\s+([0-9]{4})\s*", re.IGNORECASE)
_NEEDED = ("MessageSid", "From", "Body")


def auth_tokens(config: Config) -> list[str]:
    return [
        channel.auth_token.get_secret_value()
        for channel in config.channels.values()
        if isinstance(channel, SmsChannel)
    ]


def parse_form(body: bytes) -> MultiDict[str]:
    """The form fields of an url-encoded body; ``ValueError`` when it is not one."""
    try:
        text = body.decode("utf-8")
        fields = parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("the body is not an UTF-8 url-encoded form") from None
    return MultiDict(fields)


def verified(url: str, form: MultiDict[str], signature: str | None, tokens: Sequence[str]) -> bool:
    """True when one of ``tokens`` signed ``url`` and ``form`` as Twilio does."""
    if not signature or not signature.isascii():
        return False
    return any(RequestValidator(token).validate(url, form, signature) for token in tokens)


def ack_code(text: str) -> str | None:
    """The code of an "ACK 4821" reply (any case), or None for anything else."""
    match = ACK_REPLY.fullmatch(text)
    return match.group(1) if match else None


def paged_phones(incident: Incident, config: Config) -> set[str]:
    """The numbers the incident's paged SMS channels send to."""
    phones: set[str] = set()
    for name in incident.paged_channels:
        channel = config.channels.get(name)
        if isinstance(channel, SmsChannel):
            phones.update(channel.to)
    return phones


def twiml(text: str | None) -> web.Response:
    """The TwiML answer: one SMS back with ``text``, or none."""
    response = MessagingResponse()
    if text is not None:
        response.message(text)
    return web.Response(text=str(response), content_type="application/xml")


def sms_handler(
    runtime_of: Callable[[web.Request], Runtime],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def twilio_sms(request: web.Request) -> web.Response:
        runtime = runtime_of(request)
        config = runtime.loaded.config
        tokens = auth_tokens(config)
        public_url = config.server.public_url
        if not tokens or public_url is None:
            return error(
                403, "SMS replies need an sms channel and server.public_url to check signatures"
            )
        try:
            body = await read_body(request, config)
        except BodyRefused as refused:
            return refused.response
        try:
            form = parse_form(body)
        except ValueError as exc:
            log.warning("twilio sms refused: %s", exc)
            return error(400, str(exc))
        url = public_url.rstrip("/") + request.path_qs
        if not verified(url, form, request.headers.get("X-Twilio-Signature"), tokens):
            log.warning("twilio sms refused: bad signature", extra={"remote": request.remote})
            return error(401, "missing or invalid X-Twilio-Signature")
        missing = [name for name in _NEEDED if len(form.getall(name, [])) != 1]
        if missing:
            return error(400, "the form needs exactly one of each field", missing)
        if not await runtime.store.remember_once(
            f"twilio-sms:{form['MessageSid']}", SEEN_TTL, runtime.clock()
        ):
            log.info("twilio sms dropped: a repeated MessageSid")
            return twiml(None)
        return twiml(await _answer(runtime, config, form["From"], form["Body"]))

    return twilio_sms


async def _answer(runtime: Runtime, config: Config, phone: str, text: str) -> str:
    """What to tell the sender; acknowledges when everything holds."""
    engine = runtime.incidents
    responder = engine.responder_by_phone(phone)
    if responder is None:
        log.warning("twilio sms refused: not a responder", extra={"from": mask_number(phone)})
        return "Not acknowledged: this number is not a responder."
    code = ack_code(text)
    if code is None:
        return "Not understood. Reply ACK followed by the code in the page, e.g. ACK 4821."
    incident = await engine.incident_by_code(code)
    if incident is None:
        log.warning("twilio sms refused: no open incident", extra={"by": responder.name})
        return f"Not acknowledged: no open incident with code {code}."
    if phone not in paged_phones(incident, config):
        log.warning(
            "twilio sms refused: not paged by sms",
            extra={"by": responder.name, "incident": incident.id},
        )
        return f"Not acknowledged: this number was not paged for incident {incident.id}."
    outcome = await engine.acknowledge(incident.id, responder.name, "sms")
    log.info(
        "sms acknowledgement",
        extra={"incident": incident.id, "by": responder.name, "changed": outcome.changed},
    )
    if outcome.refusal is not None:
        return f"Not acknowledged: incident {incident.id}: {outcome.refusal.value}."
    if outcome.changed:
        return f"Acknowledged incident {incident.id}, {responder.name}. Escalation stopped."
    acknowledged_by = outcome.incident.acknowledged_by if outcome.incident else None
    return f"Incident {incident.id} was already acknowledged by {acknowledged_by}."
