"""The request bodies the benchmark posts, all distinct so that dedup never drops one.

Two kinds:

- ``ten_alert_template()``: the fixture ``synthetic_10_alerts.json`` with a placeholder
  (``TAG``) in every alert's ``run`` label and ``fingerprint`` and in the ``groupKey``.
  Replacing the placeholder with a unique tag (``tagged_body``, or the wrk Lua script)
  gives a group the notification log has never seen.
- ``SingleAlert``: one firing alert whose label ``bench_id`` identifies it and whose
  annotation ``sent_at_ns`` carries the wall-clock send time (``time.time_ns()``), so the
  sink can compute the latency of each alert.

The sink reads both back with ``alert_ids()``. Nothing here does I/O beyond reading the
fixture once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/alertmanager/synthetic_10_alerts.json"
TAG = "@@BENCH@@"
ALERTS_PER_TEN_PAYLOAD = 10


def _compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def ten_alert_template() -> str:
    """The 10-alert fixture as compact JSON with ``TAG`` wherever a request must differ."""
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    for alert in data["alerts"]:
        alert["labels"]["run"] = TAG
        alert["fingerprint"] = f"{alert['fingerprint']}-{TAG}"
    data["groupKey"] = f"{data['groupKey']}-{TAG}"
    text = _compact(data)
    assert text.count(TAG) == 2 * len(data["alerts"]) + 1
    return text


def tagged_body(pieces: list[str], tag: str) -> bytes:
    """The template (split on ``TAG``) with ``tag`` in every placeholder."""
    return tag.join(pieces).encode()


_ID, _NS = "\x00ID\x00", "\x00NS\x00"


class _Stamped:
    """A JSON body prebuilt around two markers: the alert's id and its send time."""

    def __init__(self, payload: Any) -> None:
        # json.dumps escapes the NUL markers as \u0000, which cannot occur otherwise.
        text = _compact(payload).replace("\\u0000ID\\u0000", _ID)
        text = text.replace("\\u0000NS\\u0000", _NS)
        self._parts = [[piece.encode() for piece in chunk.split(_ID)] for chunk in text.split(_NS)]

    def body(self, bench_id: str, sent_at_ns: int) -> bytes:
        """The body for alert ``bench_id`` sent at ``sent_at_ns`` (wall clock)."""
        ident = bench_id.encode()
        chunks = [ident.join(part) for part in self._parts]
        return str(sent_at_ns).encode().join(chunks)


class SingleAlert(_Stamped):
    """One-alert Alertmanager webhook payloads (what notifier takes in), built cheaply."""

    def __init__(self, alertname: str = "BenchStorm") -> None:
        super().__init__(
            {
                "version": "4",
                "receiver": "bench",
                "status": "firing",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"alertname": alertname, "severity": "warning", "bench_id": _ID},
                        "annotations": {"sent_at_ns": _NS},
                        "startsAt": "2024-05-14T09:31:07.482913Z",
                        "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus.bench:9090/graph",
                        "fingerprint": _ID,
                    }
                ],
                "groupLabels": {"alertname": alertname},
                "commonLabels": {"alertname": alertname, "severity": "warning"},
                "commonAnnotations": {},
                "externalURL": "http://alertmanager.bench:9093",
                "groupKey": f'{{}}:{{bench_id="{_ID}"}}',
                "truncatedAlerts": 0,
            }
        )


class PrometheusAlert(_Stamped):
    """One alert as Prometheus posts it to Alertmanager's ``/api/v2/alerts`` (a list of one).

    Same labels and annotations as ``SingleAlert``, so Alertmanager's webhook carries the
    same ``bench_id`` and ``sent_at_ns`` to the sink.
    """

    def __init__(self, alertname: str = "BenchStorm") -> None:
        super().__init__(
            [
                {
                    "labels": {"alertname": alertname, "severity": "warning", "bench_id": _ID},
                    "annotations": {"sent_at_ns": _NS},
                    "generatorURL": "http://prometheus.bench:9090/graph",
                }
            ]
        )


def alert_ids(notification: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """``(bench_id, sent_at_ns)`` of each alert of a delivered webhook notification.

    Alerts without ``bench_id`` (the 10-alert payloads) are identified by fingerprint,
    with a send time of 0 (unknown).
    """
    for alert in notification.get("alerts", []):
        labels = alert.get("labels", {})
        ident = labels.get("bench_id") or alert.get("fingerprint", "")
        sent = alert.get("annotations", {}).get("sent_at_ns", "0")
        yield ident, int(sent) if sent.isdigit() else 0
