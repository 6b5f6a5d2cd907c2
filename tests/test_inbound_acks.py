"""The Slack buttons and SMS replies that acknowledge (DESIGN §8): their verification and
parsing with hostile input (tables), then both endpoints on the real app."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from multidict import MultiDict

from notifier.channels.slack_buttons import ACKNOWLEDGE, SILENCE_1H
from notifier.incidents import slack_inbound, sms_inbound
from notifier.testing import make_payload
from tests.conftest import TEMPLATES, AppFactory
from tests.inbound_signing import (
    click_body,
    click_payload,
    slack_headers,
    twilio_form,
    twilio_headers,
)
from tests.processes import wait_until

SIGNING_SECRET = "slack-signing-s3cret"
AUTH_TOKEN = "twilio-auth-t0ken"
PUBLIC_URL = "https://notifier.example.com"
SMS_URL = PUBLIC_URL + sms_inbound.SMS_PATH
KIM_PHONE, LEE_PHONE, STRANGER_PHONE = "+821012345678", "+821087654321", "+15550000000"
AUTH = {"Authorization": "Bearer s3cret-token"}
CONFIG = f"""
server:
  listen: "127.0.0.1:0"
  public_url: "{PUBLIC_URL}"
  auth: {{bearer_token: "s3cret-token"}}
storage: {{url: "memory://"}}
templates_dir: "{TEMPLATES}"
defaults: {{timeout: 1s}}
channels:
  console: {{type: log}}
  chat:
    type: slack
    token: xoxb-unused
    channel: "#alerts"
    api_url: "http://127.0.0.1:9/api/"
    signing_secret: "{SIGNING_SECRET}"
  oncall-sms:
    type: sms
    account_sid: AC{"0" * 32}
    auth_token: "{AUTH_TOKEN}"
    from: "+15005550006"
    to: ["{KIM_PHONE}"]
    api_url: "http://127.0.0.1:9"
responders:
  - {{name: kim, slack_user_id: U0KIM, phone: "{KIM_PHONE}"}}
  - {{name: lee, slack_user_id: U0LEE, phone: "{LEE_PHONE}"}}
escalation_policies:
  oncall:
    steps:
      - {{after: 0s, channels: [console, oncall-sms]}}
      - {{after: 1h, channels: [console]}}
routes:
  - name: critical
    matchers: ['severity="critical"']
    channels: []
    escalation: oncall
default_channels: [console]
"""

NOW = 1_800_000_000


# -- verification and parsing, pure ------------------------------------------------------


def signed(body: bytes, secret: str = SIGNING_SECRET, at: int = NOW) -> tuple[str, str]:
    headers = slack_headers(secret, body, at)
    return headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]


BODY = click_body("U0KIM", "abc123")


@pytest.mark.parametrize(
    ("timestamp", "signature", "ok"),
    [
        (*signed(BODY), True),
        (signed(BODY)[0], None, False),
        (None, signed(BODY)[1], False),
        (*signed(BODY, secret="another-secret"), False),
        (*signed(BODY + b"&x=1"), False),  # a body changed after signing
        (*signed(BODY, at=NOW - 301), False),  # older than 5 minutes
        (*signed(BODY, at=NOW + 301), False),  # from the future
        ("not-a-number", signed(BODY)[1], False),
        ("-1", signed(BODY)[1], False),
        (signed(BODY)[0], "v0=" + "0" * 64, False),
        (signed(BODY)[0], "v0=é" + "0" * 63, False),  # not ASCII: compare_digest would raise
        (signed(BODY)[0], "v1=" + signed(BODY)[1][3:], False),
        (signed(BODY)[0], "", False),
    ],
)
def test_slack_signature(timestamp: str | None, signature: str | None, ok: bool) -> None:
    assert slack_inbound.verified(BODY, timestamp, signature, [SIGNING_SECRET], NOW) is ok


def test_slack_signature_of_a_body_that_is_not_utf8() -> None:
    body = b"payload=\xff"
    assert not slack_inbound.verified(body, *signed(body), [SIGNING_SECRET], NOW)


def test_slack_signature_of_any_configured_secret_counts() -> None:
    timestamp, signature = signed(BODY, secret="second")
    assert slack_inbound.verified(BODY, timestamp, signature, ["first", "second"], NOW)
    assert not slack_inbound.verified(BODY, timestamp, signature, [], NOW)


def form(payload: Any) -> bytes:
    return urlencode(
        {"payload": payload if isinstance(payload, str) else json.dumps(payload)}
    ).encode()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "exactly one payload"),
        (b"payload=%FF%FE", "UTF-8"),
        (b"\xff\xfe", "UTF-8"),
        (form("{not json"), "block_actions"),
        (form([1, 2]), "block_actions"),
        (form({**click_payload("U0KIM", "abc"), "type": "view_submission"}), "block_actions"),
        (form({**click_payload("U0KIM", "abc"), "user": {}}), "user"),
        (form({**click_payload("U0KIM", "abc"), "actions": []}), "actions"),
        (form(click_payload("U0KIM", "abc", action_id="delete_everything")), "not an incident"),
        (form(click_payload("U0KIM", "")), "not an incident"),
        (form(click_payload("U0KIM", "x" * 65)), "block_actions"),
        (form("[" * 10_000 + "]" * 10_000), "block_actions"),
        (
            form(click_payload("U0KIM", "a")) + b"&" + form(click_payload("U0LEE", "b")),
            "exactly one",
        ),
    ],
)
def test_slack_click_parsing_refuses(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        slack_inbound.parse_click(body)


@pytest.mark.parametrize(
    ("action_id", "action"), [(ACKNOWLEDGE, "acknowledge"), (SILENCE_1H, "silence")]
)
def test_slack_click_parsing(action_id: str, action: str) -> None:
    click = slack_inbound.parse_click(click_body("U0KIM", "abc123", action_id))
    assert click == slack_inbound.Click("U0KIM", action, "abc123", "C0ALERTS")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("ACK 4821", "4821"),
        ("ack 4821", "4821"),
        ("  Ack   4821 \n", "4821"),
        ("4821", None),
        ("ACK", None),
        ("ACK 482", None),
        ("ACK 48211", None),
        ("ACK ４８２１", None),  # fullwidth digits are not the code
        ("ACK 4821 please", None),
        ("", None),
    ],
)
def test_sms_ack_code(text: str, code: str | None) -> None:
    assert sms_inbound.ack_code(text) == code


def test_sms_form_parsing() -> None:
    assert sms_inbound.parse_form(b"From=%2B1555&Body=ACK+4821") == MultiDict(
        [("From", "+1555"), ("Body", "ACK 4821")]
    )
    for bad in (b"\xff", b"Body=%FF"):
        with pytest.raises(ValueError, match="UTF-8"):
            sms_inbound.parse_form(bad)


@pytest.mark.parametrize(
    ("url", "tokens", "tamper", "ok"),
    [
        (SMS_URL, [AUTH_TOKEN], {}, True),
        (SMS_URL, ["other", AUTH_TOKEN], {}, True),
        (SMS_URL, ["other"], {}, False),
        (SMS_URL, [AUTH_TOKEN], {"Body": "ACK 0000"}, False),
        ("http://internal:9095" + sms_inbound.SMS_PATH, [AUTH_TOKEN], {}, False),
    ],
)
def test_sms_signature(url: str, tokens: list[str], tamper: dict[str, str], ok: bool) -> None:
    fields = twilio_form(KIM_PHONE, "ACK 4821", "SM1")
    signature = twilio_headers(AUTH_TOKEN, SMS_URL, fields)["X-Twilio-Signature"]
    received = MultiDict({**fields, **tamper})
    assert sms_inbound.verified(url, received, signature, tokens) is ok


@pytest.mark.parametrize("signature", [None, "", "nope", "é" * 28])
def test_sms_signature_malformed(signature: str | None) -> None:
    fields = MultiDict(twilio_form(KIM_PHONE, "ACK 4821", "SM1"))
    assert not sms_inbound.verified(SMS_URL, fields, signature, [AUTH_TOKEN])


# -- the endpoints on the real app -------------------------------------------------------


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record with its extra fields, as the JSON log lines would carry them."""
    return "\n".join(str(vars(record)) for record in caplog.records)


async def opened(app_client: AppFactory) -> tuple[Any, dict[str, Any]]:
    client = await app_client(CONFIG)
    body = make_payload(group_key="g1").model_dump_json(by_alias=True)
    response = await client.post(
        "/api/v1/alerts", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 202

    async def paged() -> bool:
        incidents = (await (await client.get("/api/v1/incidents", headers=AUTH)).json())[
            "incidents"
        ]
        return bool(incidents) and incidents[0]["pages_sent"] == 1

    await wait_until(paged, "step 1")
    return client, await incident(client)


async def incident(client: Any) -> dict[str, Any]:
    found = (await (await client.get("/api/v1/incidents", headers=AUTH)).json())["incidents"]
    return found[0]  # type: ignore[no-any-return]


async def click(client: Any, body: bytes, headers: dict[str, str]) -> Any:
    return await client.post(slack_inbound.SLACK_PATH, data=body, headers=headers)


async def test_a_responders_slack_click_acknowledges(app_client: AppFactory) -> None:
    client, before = await opened(app_client)
    body = click_body("U0KIM", before["id"])

    response = await click(client, body, slack_headers(SIGNING_SECRET, body))

    assert response.status == 200
    answer = await response.json()
    assert answer["response_type"] == "ephemeral" and "acknowledged" in answer["text"]
    after = await incident(client)
    assert after["state"] == "acknowledged" and after["acknowledged_by"] == "kim"
    assert "by kim via slack" in after["timeline"][-1]["detail"]


async def test_silence_1h_button(app_client: AppFactory) -> None:
    client, before = await opened(app_client)
    body = click_body("U0LEE", before["id"], SILENCE_1H)

    response = await click(client, body, slack_headers(SIGNING_SECRET, body))

    assert response.status == 200
    after = await incident(client)
    assert after["state"] == "silenced"
    assert after["silenced_until"] == pytest.approx(time.time() + 3600, abs=120)


def hostile_clicks(incident_id: str) -> list[tuple[str, bytes, dict[str, str], int]]:
    good = click_body("U0KIM", incident_id)
    headers = slack_headers(SIGNING_SECRET, good)
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    return [
        ("no signature", good, form_type, 401),
        ("wrong secret", good, slack_headers("guess", good), 401),
        ("stale", good, slack_headers(SIGNING_SECRET, good, int(time.time()) - 600), 401),
        ("body swapped", click_body("U0KIM", "other"), headers, 401),
        ("bad timestamp", good, {**headers, "X-Slack-Request-Timestamp": "yesterday"}, 401),
        (
            "not a block action",
            form({"type": "shortcut"}),
            slack_headers(SIGNING_SECRET, form({"type": "shortcut"})),
            400,
        ),
        ("not UTF-8", b"\xff\x00", slack_headers(SIGNING_SECRET, b"\xff\x00"), 401),
        ("not a form", b"%FF", slack_headers(SIGNING_SECRET, b"%FF"), 400),
    ]


async def test_hostile_slack_requests_change_nothing(
    app_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client, before = await opened(app_client)
    caplog.set_level(logging.DEBUG)
    for what, body, headers, status in hostile_clicks(before["id"]):
        response = await click(client, body, headers)
        assert response.status == status, what
        assert "error" in await response.json(), what
    assert await incident(client) == before
    assert SIGNING_SECRET not in logged(caplog) and AUTH_TOKEN not in logged(caplog)


async def test_a_replayed_slack_request_is_refused(app_client: AppFactory) -> None:
    client, before = await opened(app_client)
    body = click_body("U0KIM", before["id"], SILENCE_1H)
    headers = slack_headers(SIGNING_SECRET, body)
    assert (await click(client, body, headers)).status == 200
    unsilence = await client.post(
        f"/api/v1/incidents/{before['id']}/unack", json={"by": "kim"}, headers=AUTH
    )
    assert unsilence.status in (200, 409)
    silenced = await incident(client)

    again = await click(client, body, headers)

    assert again.status == 401 and "replay" in (await again.json())["error"]
    assert await incident(client) == silenced


async def test_a_click_from_someone_who_is_not_a_responder(
    app_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client, before = await opened(app_client)
    body = click_body("U0MALLORY", before["id"])

    response = await click(client, body, slack_headers(SIGNING_SECRET, body))

    assert response.status == 200  # Slack shows anything else as a failure
    answer = await response.json()
    assert answer["response_type"] == "ephemeral" and "not a responder" in answer["text"]
    assert await incident(client) == before
    assert "U0MALLORY" in logged(caplog)


async def text_to(
    client: Any, phone: str, text: str, sid: str, token: str = AUTH_TOKEN
) -> tuple[int, str]:
    fields = twilio_form(phone, text, sid)
    response = await client.post(
        sms_inbound.SMS_PATH, data=fields, headers=twilio_headers(token, SMS_URL, fields)
    )
    return response.status, await response.text()


async def test_an_sms_reply_acknowledges_once(app_client: AppFactory) -> None:
    client, before = await opened(app_client)

    status, answer = await text_to(client, KIM_PHONE, f"ack {before['ack_code']}", "SM1")

    assert status == 200 and answer.startswith("<?xml")
    assert f"Acknowledged incident {before['id']}" in answer
    after = await incident(client)
    assert after["state"] == "acknowledged" and after["acknowledged_by"] == "kim"
    assert "by kim via sms" in after["timeline"][-1]["detail"]
    repeated = await text_to(client, KIM_PHONE, f"ACK {before['ack_code']}", "SM1")
    assert repeated == (200, '<?xml version="1.0" encoding="UTF-8"?><Response />')
    assert await incident(client) == after


async def test_sms_replies_that_change_nothing(
    app_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client, before = await opened(app_client)
    caplog.set_level(logging.DEBUG)
    code = before["ack_code"]
    wrong = f"{(int(code) + 1) % 10_000:04d}"
    cases = [
        (STRANGER_PHONE, f"ACK {code}", "not a responder"),
        (KIM_PHONE, f"ACK {wrong}", f"no open incident with code {wrong}"),
        (KIM_PHONE, "yes I am on it", "Reply ACK"),
        (LEE_PHONE, f"ACK {code}", "was not paged"),  # a responder, but not paged by SMS
    ]
    for index, (phone, text, said) in enumerate(cases):
        status, answer = await text_to(client, phone, text, f"SM-refused-{index}")
        assert status == 200 and said in answer, text
    assert await incident(client) == before
    assert "+1…0000" in logged(caplog)  # masked
    assert STRANGER_PHONE not in logged(caplog) and AUTH_TOKEN not in logged(caplog)


async def test_hostile_twilio_requests_change_nothing(app_client: AppFactory) -> None:
    client, before = await opened(app_client)
    fields = twilio_form(KIM_PHONE, f"ACK {before['ack_code']}", "SM9")
    headers = twilio_headers(AUTH_TOKEN, SMS_URL, fields)
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    missing = {k: v for k, v in fields.items() if k != "MessageSid"}
    cases = [
        ("no signature", fields, form_type, 401),
        ("wrong token", fields, twilio_headers("guess", SMS_URL, fields), 401),
        ("other url", fields, twilio_headers(AUTH_TOKEN, "http://127.0.0.1/x", fields), 401),
        ("tampered", {**fields, "From": LEE_PHONE}, headers, 401),
        ("not UTF-8", b"Body=%FF", form_type, 400),
        ("no MessageSid", missing, twilio_headers(AUTH_TOKEN, SMS_URL, missing), 400),
    ]
    for what, data, sent_headers, status in cases:
        response = await client.post(sms_inbound.SMS_PATH, data=data, headers=sent_headers)
        assert response.status == status, what
        assert "error" in await response.json(), what
    assert await incident(client) == before


async def test_without_secrets_to_check_both_endpoints_refuse(app_client: AppFactory) -> None:
    client = await app_client()  # log channels only, no public_url
    body = click_body("U0KIM", "abc")
    slack = await click(client, body, slack_headers(SIGNING_SECRET, body))
    sms = await text_to(client, KIM_PHONE, "ACK 4821", "SM1")
    assert slack.status == 403 and "signing_secret" in (await slack.json())["error"]
    assert sms[0] == 403 and "public_url" in sms[1]


@pytest.mark.parametrize("path", [slack_inbound.SLACK_PATH, sms_inbound.SMS_PATH])
async def test_a_body_over_the_limit_is_refused_unread(app_client: AppFactory, path: str) -> None:
    client = await app_client(
        CONFIG.replace('  listen: "127.0.0.1:0"', '  listen: "127.0.0.1:0"\n  max_body_bytes: 1000')
    )
    response = await client.post(
        path,
        data=b"Body=" + b"x" * 2000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 413
