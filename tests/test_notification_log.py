"""Dedup over HTTP, as Alertmanager drives it: a group grows, shrinks, resolves, fires again.

The real app on the memory and SQLite stores (the Redis store runs the same rule in
Lua: the contract suite's table and ``tests/test_replicas.py`` cover it). ``pager``
has no ``send_resolved``; ``chat`` has it.
"""

from __future__ import annotations

from typing import Any

import pytest

from notifier.testing import make_payload
from tests.conftest import TEMPLATES, AppFactory

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer s3cret-token"}


def config(storage: str) -> str:
    return f"""
server:
  listen: "127.0.0.1:0"
  auth: {{bearer_token: "s3cret-token"}}
storage: {{url: "{storage}"}}
templates_dir: "{TEMPLATES}"
channels:
  pager: {{type: log, send_resolved: false}}
  chat: {{type: log}}
routes:
  - {{name: critical, matchers: ['severity="critical"'], channels: [pager, chat]}}
"""


def alert(name: str, status: str = "firing") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "DiskFull", "instance": name, "severity": "critical"},
        "annotations": {"summary": f"disk full on {name}"},
        "startsAt": "2026-01-01T12:00:00Z",
        "endsAt": "2026-01-01T12:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "fingerprint": f"fp-{name}",
    }


@pytest.mark.parametrize("storage", ["memory://", "sqlite:///notifier.db"])
async def test_a_group_that_shrinks_never_re_pages_what_still_fires(
    app_client: AppFactory, storage: str
) -> None:
    client = await app_client(config(storage))

    async def post(*alerts: dict[str, Any]) -> tuple[int, int]:
        body = make_payload(alerts=list(alerts)).model_dump_json(by_alias=True)
        response = await client.post("/api/v1/alerts", data=body, headers=HEADERS)
        assert response.status == 202, await response.text()
        answer = await response.json()
        return answer["notifications"], answer["deduplicated"]

    assert await post(alert("a"), alert("b")) == (2, 0)
    # b resolves: chat hears it; pager, told nothing new, must not hear about a again.
    assert await post(alert("a"), alert("b", "resolved")) == (1, 1)
    # Alertmanager stops listing the resolved b: nothing new for anyone.
    assert await post(alert("a")) == (0, 2)
    # a resolves: chat hears it; pager is sent nothing, but its entry is updated...
    assert await post(alert("a", "resolved")) == (1, 0)
    # ...so a firing again is news to both, at once.
    assert await post(alert("a")) == (2, 0)
