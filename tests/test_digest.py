"""Storm digests (DESIGN §10): what a fold keeps, the per-type defaults, the built-in templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notifier.config import ConfigError
from notifier.digest import TOP_GROUPS, DigestFolder, digest_template, max_drain
from notifier.notification import Notification
from notifier.templates import Renderer, template_context
from notifier.testing import config_for_tests, make_payload

TEMPLATES = Path(__file__).parents[1] / "notifier" / "builtin_templates"


def alert_notification(
    job_id: str, severity: str = "warning", *, status: str = "firing", summary: str = "disk full"
) -> Notification:
    payload = make_payload(
        alertname=f"Alert{job_id}",
        severity=severity,
        status=status,  # type: ignore[arg-type]
        annotations={"summary": summary},
        group_key=f'{{}}:{{alertname="Alert{job_id}"}}',
    )
    return Notification.for_channel(
        payload, tuple(payload.alerts), job_id=job_id, channel="slack", route="r", received_at=5.0
    )


def folder(**changes: object) -> DigestFolder:
    fields: dict[str, object] = {
        "channel": "slack",
        "channel_type": "slack",
        "storm": "slack@100",
        "started_at": 100.0,
        "now": 101.0,
        "not_before": 110.0,
        "console_url": "https://n.example/ui/",
    }
    fields.update(changes)
    return DigestFolder(**fields)  # type: ignore[arg-type]


def test_a_fold_counts_every_group_and_lists_the_most_severe_first() -> None:
    waiting = [alert_notification(f"w{i}") for i in range(12)]
    waiting += [
        alert_notification("c1", "critical"),
        alert_notification("r1", status="resolved"),
        alert_notification("i1", "info"),
    ]

    fold = folder()(waiting)

    assert fold is not None
    summary = fold.digest.digest
    assert summary is not None
    assert (summary.firing, summary.resolved, summary.groups) == (14, 1, 15)
    assert len(summary.top) == TOP_GROUPS
    assert summary.more == 15 - TOP_GROUPS
    assert summary.top[0].alertname == "Alertc1"
    assert summary.top[0].summary == "disk full"
    assert fold.folded == tuple(n.job_id for n in waiting)
    assert [r.job_id for r in fold.records] == [n.job_id for n in waiting]
    assert {r.outcome for r in fold.records} == {"digested"}
    assert fold.records[0].error.endswith(fold.digest.job_id)
    assert fold.not_before == 110.0
    assert fold.digest.severity == "critical"
    assert fold.digest.thread_key == folder()([alert_notification("x")]).digest.thread_key  # type: ignore[union-attr]


def test_a_waiting_digest_is_merged_and_keeps_its_turn() -> None:
    first = folder()([alert_notification(f"a{i}") for i in range(3)])
    assert first is not None
    later = folder(now=102.0, not_before=170.0, pending_due=110.0)
    second = later([first.digest, alert_notification("b0", "critical")])
    assert second is not None
    summary = second.digest.digest
    assert summary is not None
    assert summary.firing == 4
    assert second.not_before == 110.0  # the waiting digest's turn
    assert [r.job_id for r in second.records] == ["b0"]  # the old digest is not logged
    assert second.digest.job_id != first.digest.job_id


def test_nothing_new_to_fold_leaves_the_waiting_digest_alone() -> None:
    first = folder()([alert_notification("a0")])
    assert first is not None
    assert folder()([first.digest]) is None
    assert folder()([]) is None


def test_defaults_per_type_and_off() -> None:
    loaded = config_for_tests(
        {
            "s": {"type": "slack", "token": "x", "channel": "#a"},
            "t": {"type": "slack", "token": "x", "channel": "#a", "digest": {"max_drain": "5s"}},
            "u": {"type": "slack", "token": "x", "channel": "#a", "digest": "off"},
            "w": {"type": "webhook", "url": "http://127.0.0.1:1/"},
            "m": {
                "type": "sms",
                "account_sid": "AC1",
                "auth_token": "t",
                "from": "+15005550006",
                "to": ["+15005550007"],
            },
        },
        [{"name": "all", "channels": ["s"]}],
    )
    channels = loaded.config.channels
    assert [max_drain(channels[n]) for n in "stuwm"] == [30.0, 5.0, None, None, 60.0]
    assert digest_template(channels["s"]) == "digest.json"
    assert digest_template(channels["w"]) is None


def test_a_bad_digest_setting_is_a_config_error_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        config_for_tests(
            {"s": {"type": "slack", "token": "x", "channel": "#a", "digest": {"max_drain": "0s"}}},
            [{"name": "all", "channels": ["s"]}],
        )
    assert "channels.s.digest" in str(caught.value)
    with pytest.raises(ConfigError, match=r"channels\.s\.digest_template"):
        config_for_tests(
            {"s": {"type": "slack", "token": "x", "channel": "#a", "digest_template": "nope.json"}},
            [{"name": "all", "channels": ["s"]}],
        )


def _digest(summary_text: str = "disk <full> & *bold*") -> Notification:
    waiting = [alert_notification(f"a{i}", summary=summary_text) for i in range(13)]
    fold = folder()(waiting)
    assert fold is not None
    return fold.digest


def test_the_slack_digest_counts_lists_and_links_with_untrusted_text_escaped() -> None:
    digest = _digest()
    context = template_context(digest, "slack")
    text = Renderer(TEMPLATES).render_file("digest.json", context, "{}").text
    message = json.loads(text)
    assert "13 groups firing, 0 resolved" in message["text"]
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert len(sections) == 1 + TOP_GROUPS
    assert "disk &lt;full&gt; &amp; *bold*" in sections[1]
    footer = message["blocks"][-1]["elements"][0]["text"]
    assert "+3 more" in footer
    assert "<https://n.example/ui/|console>" in footer


def test_the_sms_and_email_digests_render() -> None:
    digest = _digest("<b>x</b>")
    renderer = Renderer(TEMPLATES)
    sms = renderer.render_file("digest.txt", template_context(digest, "sms"), "").text
    assert sms.startswith("ALERT STORM slack: 13 firing, 0 resolved.")
    assert "+10 more" in sms
    html = renderer.render_file("digest.html", template_context(digest, "email"), "").text
    assert "13 groups firing" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "+3 more" in html


def test_a_digest_without_a_console_url_links_nothing() -> None:
    fold = folder(console_url=None)([alert_notification("a0")])
    assert fold is not None
    message = json.loads(
        Renderer(TEMPLATES)
        .render_file("digest.json", template_context(fold.digest, "slack"), "{}")
        .text
    )
    assert "console" not in message["blocks"][-1]["elements"][0]["text"]


def test_the_last_digest_of_the_storm_carries_its_counts_into_the_next() -> None:
    sent = folder()([alert_notification(f"a{i}") for i in range(3)])
    assert sent is not None and sent.digest.digest is not None
    # The first digest went out; the next one replaces it in the same message.
    later = folder(now=170.0, not_before=170.0, carried=sent.digest.digest)
    fold = later([alert_notification("b0", status="resolved")])
    assert fold is not None and fold.digest.digest is not None
    assert (fold.digest.digest.firing, fold.digest.digest.resolved) == (3, 1)


def test_another_storms_waiting_digest_is_left_alone() -> None:
    old = folder(storm="slack@1")([alert_notification("a0")])
    assert old is not None
    fold = folder()([old.digest, alert_notification("b0")])
    assert fold is not None and fold.digest.digest is not None
    assert fold.folded == ("b0",)
    assert fold.digest.digest.groups == 1


def test_digests_are_refused_on_webhook_and_log_channels() -> None:
    for settings in (
        {"type": "webhook", "url": "http://127.0.0.1:1/", "digest": {"max_drain": "10s"}},
        {"type": "log", "digest_template": "digest.txt"},
    ):
        with pytest.raises(ConfigError, match=r"storm digests .* are not for"):
            config_for_tests({"c": settings}, [{"name": "all", "channels": ["c"]}])
    config_for_tests(
        {"c": {"type": "webhook", "url": "http://127.0.0.1:1/", "digest": "off"}},
        [{"name": "all", "channels": ["c"]}],
    )
