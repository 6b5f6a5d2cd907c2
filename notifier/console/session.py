"""The console's session cookie and CSRF tokens: HMAC-SHA256 under a key of this process.

The key is random and lives only in memory, so every session ends when the process
restarts (or on another replica, which has its own key): the operator logs in again.
A key derived from the configured credentials would survive restarts, but would let
anyone holding a cookie test password guesses offline; a random key gives nothing away.

A cookie is ``<payload>.<signature>``, the payload ``<session id>:<expiry>:<user>`` in
URL-safe base64. The CSRF token of a session is the HMAC of its id under the same key,
so a form token is worth nothing without that session's cookie, and vice versa.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "notifier_console"
LIFETIME = 8 * 3600.0  # seconds a login lasts


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: str  # "" for the anonymous session of a console without server.auth
    expires_at: float


class Sessions:
    """Signs and checks session cookies and CSRF tokens with one process-wide key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _sign(self, data: bytes) -> str:
        digest = hmac.new(self._key, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def new(self, user: str, now: float) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        session = Session(secrets.token_urlsafe(18), user, now + LIFETIME)
        raw = f"{session.id}:{session.expires_at:.0f}:{user}".encode()
        payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return session, f"{payload}.{self._sign(payload.encode())}"

    def read(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie carries, or None: missing, forged, tampered or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not _same(signature, self._sign(payload.encode())):
            return None
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
            session_id, expires, user = raw.split(":", 2)
            expires_at = float(expires)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if expires_at <= now:
            return None
        return Session(session_id, user, expires_at)

    def csrf_token(self, session: Session) -> str:
        return self._sign(b"csrf:" + session.id.encode())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return token is not None and _same(token, self.csrf_token(session))


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of a value from the request with ours, whatever characters
    the request holds (``compare_digest`` refuses non-ASCII text)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())
