"""The incidents HTTP API on the real app: list, show, ack, unack, silence, and its errors."""

from __future__ import annotations

from typing import Any

import pytest

from notifier.testing import make_payload
from tests.conftest import TEMPLATES, AppFactory
from tests.processes import wait_until

AUTH = {"Authorization": "Bearer s3cret-token"}
CONFIG = f"""
server:
  listen: "127.0.0.1:0"
  auth: {{bearer_token: "s3cret-token"}}
storage: {{url: "memory://"}}
templates_dir: "{TEMPLATES}"
channels:
  console: {{type: log}}
  pager: {{type: log, template: critical_alert.txt}}
responders:
  - {{name: kim, phone: "+821012345678"}}
escalation_policies:
  oncall:
    steps:
      - {{after: 0s, channels: [pager]}}
      - {{after: 1h, channels: [console]}}
routes:
  - name: critical
    matchers: ['severity="critical"']
    channels: []
    escalation: oncall
default_channels: [console]
"""


async def fire(client: Any, status: str = "firing") -> None:
    body = make_payload(group_key="g1", status=status).model_dump_json(by_alias=True)
    response = await client.post(
        "/api/v1/alerts", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 202


async def only_incident(client: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/incidents", headers=AUTH)
    assert response.status == 200
    incidents = (await response.json())["incidents"]
    assert len(incidents) == 1
    return incidents[0]  # type: ignore[no-any-return]


async def paged(client: Any) -> dict[str, Any]:
    async def step_1_sent() -> bool:
        return bool((await only_incident(client))["pages_sent"] == 1)

    await wait_until(step_1_sent, "step 1 to be sent")
    return await only_incident(client)


async def test_acknowledge_through_the_api(app_client: AppFactory) -> None:
    client = await app_client(CONFIG)
    await fire(client)
    incident = await paged(client)
    assert (incident["state"], incident["step"], incident["steps"]) == ("open", 1, 2)
    assert incident["paged_channels"] == ["pager"]
    assert incident["alerts"][0]["labels"]["alertname"] == "TestAlert"
    path = f"/api/v1/incidents/{incident['id']}"

    response = await client.post(f"{path}/ack", json={"by": "kim"}, headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert body["changed"] is True
    assert body["incident"]["state"] == "acknowledged"
    assert body["incident"]["acknowledged_by"] == "kim"
    again = await client.post(f"{path}/ack", json={"by": "kim"}, headers=AUTH)
    assert again.status == 200 and (await again.json())["changed"] is False

    shown = await (await client.get(path, headers=AUTH)).json()
    assert [e["event"] for e in shown["incident"]["timeline"]] == ["opened", "step", "acknowledged"]
    assert "by kim via api" in shown["incident"]["timeline"][-1]["detail"]

    unack = await client.post(f"{path}/unack", json={"by": "kim"}, headers=AUTH)
    assert unack.status == 200 and (await unack.json())["incident"]["state"] == "open"


async def test_silence_needs_a_duration_and_pauses(app_client: AppFactory) -> None:
    client = await app_client(CONFIG)
    await fire(client)
    incident = await paged(client)
    path = f"/api/v1/incidents/{incident['id']}/silence"
    missing = await client.post(path, json={"by": "kim"}, headers=AUTH)
    assert missing.status == 400 and "for" in (await missing.json())["error"]
    bad = await client.post(path, json={"by": "kim", "for": "soon"}, headers=AUTH)
    assert bad.status == 400
    response = await client.post(path, json={"by": "kim", "for": "1h"}, headers=AUTH)
    assert response.status == 200
    silenced = (await response.json())["incident"]
    assert silenced["state"] == "silenced" and silenced["silenced_until"] > incident["opened_at"]


@pytest.mark.parametrize(
    "raw_for", ["NaN", "Infinity", "-Infinity", "-60", "0", "1e300", '"99999999999999d"', '"0s"']
)
async def test_a_silence_that_would_never_end_is_refused(
    app_client: AppFactory, raw_for: str
) -> None:
    client = await app_client(CONFIG)
    await fire(client)
    incident = await paged(client)
    path = f"/api/v1/incidents/{incident['id']}/silence"
    # Raw JSON: Python's json module writes (and reads) NaN and Infinity.
    body = f'{{"by": "kim", "for": {raw_for}}}'
    headers = {**AUTH, "Content-Type": "application/json"}
    refused = await client.post(path, data=body, headers=headers)
    assert refused.status == 400, await refused.text()
    assert (await only_incident(client))["state"] == "open"
    # The service still answers: a silence that never ends would spin the timer loop.
    assert (await client.get("/-/healthy")).status == 200


async def test_the_errors(app_client: AppFactory) -> None:
    client = await app_client(CONFIG)
    await fire(client)
    incident = await paged(client)
    path = f"/api/v1/incidents/{incident['id']}/ack"

    unknown = await client.post("/api/v1/incidents/nope/ack", json={"by": "kim"}, headers=AUTH)
    assert unknown.status == 404
    stranger = await client.post(path, json={"by": "mallory"}, headers=AUTH)
    assert stranger.status == 400 and "not a responder" in (await stranger.json())["error"]
    no_by = await client.post(path, json={}, headers=AUTH)
    assert no_by.status == 400
    malformed = await client.post(path, data=b"{nope", headers=AUTH)
    assert malformed.status == 400
    assert (await client.post(path, json={"by": "kim"})).status == 401
    assert (await client.get("/api/v1/incidents?state=closed", headers=AUTH)).status == 400
    assert (await client.get("/api/v1/incidents/nope", headers=AUTH)).status == 404
    assert (await only_incident(client))["state"] == "open"  # nothing changed

    await fire(client, status="resolved")
    resolved = await client.post(path, json={"by": "kim"}, headers=AUTH)
    assert resolved.status == 409 and "resolved" in (await resolved.json())["error"]
    open_only = await client.get("/api/v1/incidents?state=open", headers=AUTH)
    assert (await open_only.json())["incidents"] == []


async def test_open_incidents_are_a_metric(app_client: AppFactory) -> None:
    client = await app_client(CONFIG)
    await fire(client)
    await paged(client)
    text = await (await client.get("/metrics")).text()
    assert 'notifier_incidents_open{state="open"} 1.0' in text
    assert 'notifier_escalation_steps_total{policy="oncall",step="1"} 1.0' in text
    assert 'notifier_incident_acknowledgements_total{path="sms"} 0.0' in text
