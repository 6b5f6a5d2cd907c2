"""The last check on a composed mail's headers: each is written as one logical line. Pure.

``untrusted.header_text`` cleans what goes into a header; this module checks what comes
out, as the SMTP client will write it, so a gap in the cleaning or a quirk of the running
Python cannot add a header or end the header block early. Each header is folded with
every policy aiosmtplib may use (``SMTP``, ``SMTPUTF8``, and 7-bit for servers without
8BITMIME). Once folded, a header must end in CRLF, every further line must be a
continuation (start with a space or tab and hold more than whitespace), and no line may
hold a CR, LF or NUL. That is stricter than the check Python 3.11.10 / 3.12.5 added
(``HeaderWriteError``, CPython gh-121650); on those versions folding may raise it, and
it is reported here as a problem too. This module only reports; the email channel
decides what to send instead.
"""

from __future__ import annotations

import email.policy
from email.errors import MessageError
from email.message import EmailMessage

_POLICIES = (
    email.policy.SMTP,
    email.policy.SMTPUTF8,
    email.policy.SMTP.clone(cte_type="7bit"),
)
_CRLF = b"\r\n"
_FORBIDDEN = (b"\r", b"\n", b"\x00")


def _folded_problem(folded: bytes) -> str | None:
    if not folded.endswith(_CRLF):
        return "does not end with CRLF"
    first, *continuations = folded.removesuffix(_CRLF).split(_CRLF)
    for line in (first, *continuations):
        if any(byte in line for byte in _FORBIDDEN):
            return "holds a bare CR, LF or NUL"
    for line in continuations:
        if line[:1] not in (b" ", b"\t") or not line.strip():
            return "holds a line break that is not folding"
    return None


def header_problem(message: EmailMessage) -> str | None:
    """Why one of ``message``'s own headers would not be written as one header, or None.

    The answer names the header and the problem, never the value (it is untrusted text).
    """
    for name, value in message.items():
        for policy in _POLICIES:
            try:
                folded = policy.fold_binary(name, value)
            # HeaderWriteError (only on patched Pythons) is a MessageError; an encoding
            # failure is a UnicodeError, which is a ValueError.
            except (MessageError, ValueError) as exc:
                return f"{name}: {type(exc).__name__} when written"
            problem = _folded_problem(folded)
            if problem is not None:
                return f"{name}: {problem} when written"
    return None
