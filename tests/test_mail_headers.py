"""The last check on a composed mail's headers, against what Python really writes."""

from __future__ import annotations

import email.errors
import email.policy
from email.message import EmailMessage

import pytest
from aiosmtplib.email import flatten_message

from notifier.channels.mail_headers import header_problem

# Safe on Pythons with the gh-121650 fix (3.11.10, 3.12.5); header injection on 3.11.7.
HOSTILE = [
    "=?utf-8?q?X=0D=0ABcc:_attacker@evil.example?=",
    "=?utf-8?b?WA0KQmNjOiBhdHRhY2tlckBldmlsLmV4YW1wbGU=?=",
    "x =?UTF-8?Q?=0D=0A=0D=0Abody?= y",
    "=?iso-8859-1?q?=0A?==?utf-8?q?=0D?=",
]
HARMLESS = ["[FIRING] DiskFull", "Straße 東京 \U0001f525", "= ?utf-8?q?X=0D=0A?=", "long " * 60]
PATCHED = hasattr(email.errors, "HeaderWriteError")


def _message(subject: str) -> EmailMessage:
    # Subject first: a value that ends the header block early then loses From and To.
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "Alerts <alerts@example.com>"
    message["To"] = "ops@example.com"
    return message


def _written_as_set(message: EmailMessage) -> bool:
    """Whether a mail parser reads back exactly the headers ``message`` has, in order, from
    what the SMTP client (aiosmtplib) writes."""
    try:
        written = flatten_message(message)
    except email.errors.MessageError:  # HeaderWriteError on patched Pythons
        return False
    return email.message_from_bytes(written, policy=email.policy.default).keys() == message.keys()


@pytest.mark.parametrize("subject", HOSTILE + HARMLESS)
def test_a_problem_is_reported_exactly_when_the_written_headers_differ(subject: str) -> None:
    message = _message(subject)

    assert (header_problem(message) is None) == _written_as_set(message)


@pytest.mark.skipif(PATCHED, reason="this Python writes encoded words with CR/LF safely")
@pytest.mark.parametrize("subject", HOSTILE)
def test_an_encoded_line_break_is_a_problem_on_this_python(subject: str) -> None:
    assert header_problem(_message(subject)) is not None


@pytest.mark.parametrize("subject", HARMLESS)
def test_ordinary_subjects_are_fine(subject: str) -> None:
    assert header_problem(_message(subject)) is None
