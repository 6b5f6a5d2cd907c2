"""``RecentNotifications``: bounded, taken once, falls back to parsing the stored JSON."""

from __future__ import annotations

from notifier.store.recent import RecentNotifications
from tests.store_contract import notification


def test_a_remembered_notification_is_handed_back_once() -> None:
    recent = RecentNotifications()
    original = notification("a")
    recent.remember([original])
    assert recent.take("a", "not parsed when remembered") is original
    parsed = recent.take("a", original.model_dump_json())
    assert parsed == original
    assert parsed is not original


def test_the_oldest_entries_make_room() -> None:
    recent = RecentNotifications(capacity=3)
    recent.remember(notification(f"j{i}") for i in range(5))
    assert len(recent) == 3
    assert recent.take("j4", "{}").job_id == "j4"
    assert recent.take("j2", "{}").job_id == "j2"
    assert recent.take("j1", notification("j1").model_dump_json()).job_id == "j1"  # parsed
