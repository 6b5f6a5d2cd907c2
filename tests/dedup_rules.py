"""One table of notification-log cases, rule by rule (DESIGN §4, Alertmanager's ``needsUpdate``).

``tests/test_dedup.py`` runs it against the pure ``needs_update``; the store contract
runs it against every store's enqueue, so the Redis store's Lua stays a faithful mirror
of the Python rule. Fingerprints are single letters; the entry was written at ``AT``
and the repeat interval is ``REPEAT`` unless a case says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from notifier.dedup import LogEntry, Reason

AT = 1_000.0
REPEAT = 60.0


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    entry: LogEntry | None  # what the channel was last told
    firing: frozenset[str]  # routed to the channel now
    resolved: frozenset[str]
    send_resolved: bool
    now: float
    expected: Reason


def entry(firing: str, resolved: str = "", at: float = AT) -> LogEntry:
    return LogEntry(frozenset(firing), frozenset(resolved), at)


def case(
    name: str,
    entry: LogEntry | None,
    firing: str,
    resolved: str,
    expected: Reason,
    *,
    send_resolved: bool = True,
    now: float = AT + 10,
) -> Case:
    return Case(name, entry, frozenset(firing), frozenset(resolved), send_resolved, now, expected)


R = Reason
CASES = [
    # Rule 1: no entry.
    case("1-no-entry-firing", None, "A", "", R.FIRST_NOTIFICATION),
    case("1-no-entry-only-resolved", None, "", "A", R.DO_NOT_NOTIFY),
    # Rule 2: a firing alert the entry does not list as firing.
    case("2-new-alert", entry("A"), "AB", "", R.NEW_ALERTS_IN_GROUP),
    case("2-one-alert-replaces-another", entry("A"), "B", "A", R.NEW_ALERTS_IN_GROUP),
    case(
        "2-new-alert-without-send-resolved",
        entry("A"),
        "AB",
        "",
        R.NEW_ALERTS_IN_GROUP,
        send_resolved=False,
    ),
    case("2-fires-again-after-resolving", entry("", "A"), "A", "", R.FIRST_NOTIFICATION),
    case("2-resolved-alert-fires-again", entry("AB", "C"), "AC", "B", R.NEW_ALERTS_IN_GROUP),
    # Rule 3: nothing fires now.
    case("3-all-resolved", entry("AB"), "", "AB", R.ALL_ALERTS_RESOLVED),
    case(
        "3-all-resolved-without-send-resolved",
        entry("AB"),
        "",
        "AB",
        R.ALL_ALERTS_RESOLVED,
        send_resolved=False,
    ),
    case("3-resolution-told-already", entry("", "AB"), "", "AB", R.DO_NOT_NOTIFY),
    case("3-fired-and-resolved-unseen", entry("", "A"), "", "AB", R.DO_NOT_NOTIFY),
    # Rule 4: send_resolved and a resolved alert the entry does not list.
    case("4-one-resolves", entry("AB"), "A", "B", R.NEW_RESOLVED_ALERTS),
    case(
        "4-shrinking-group-without-send-resolved",
        entry("AB"),
        "A",
        "B",
        R.DO_NOT_NOTIFY,
        send_resolved=False,
    ),
    case("4-resolution-told-already", entry("A", "B"), "A", "B", R.DO_NOT_NOTIFY),
    case("4-resolved-alert-no-longer-listed", entry("A", "B"), "A", "", R.DO_NOT_NOTIFY),
    case("4-alert-left-the-group", entry("AB"), "A", "", R.DO_NOT_NOTIFY),
    # Rule 5: otherwise only once repeat_interval has passed since the entry.
    case("5-unchanged", entry("AB"), "AB", "", R.DO_NOT_NOTIFY),
    case("5-exactly-repeat-interval", entry("A"), "A", "", R.DO_NOT_NOTIFY, now=AT + REPEAT),
    case(
        "5-past-repeat-interval",
        entry("A"),
        "A",
        "",
        R.REPEAT_INTERVAL_ELAPSED,
        now=AT + REPEAT + 0.5,
    ),
    case(
        "5-shrunk-group-repeats-later",
        entry("AB"),
        "A",
        "B",
        R.REPEAT_INTERVAL_ELAPSED,
        send_resolved=False,
        now=AT + REPEAT + 0.5,
    ),
]
