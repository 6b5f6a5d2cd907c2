"""Who may use the console: the service's own credentials through a login form.

With ``server.auth`` set, a login form takes the same credentials as the API (a bearer
token as the password, or the basic username and password), compared in constant time,
and sets a signed session cookie. Without it the console answers only on loopback
addresses, read-write, and every page says so.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

from notifier.config import AuthConfig

TOKEN_USER = "operator"  # the name a bearer-token login goes by


def login_user(auth: AuthConfig, username: str, password: str) -> str | None:
    """The user the form's credentials log in as, or None when they are wrong."""
    given = password.encode("utf-8", "surrogateescape")
    if auth.bearer_token is not None:
        expected = auth.bearer_token.get_secret_value().encode()
        return TOKEN_USER if hmac.compare_digest(given, expected) else None
    assert auth.basic is not None
    user_ok = hmac.compare_digest(
        username.encode("utf-8", "surrogateescape"), auth.basic.username.encode()
    )
    password_ok = hmac.compare_digest(given, auth.basic.password.get_secret_value().encode())
    return username if user_ok and password_ok else None


_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def is_local_request(remote: str | None, headers: Mapping[str, str], host: str) -> bool:
    """A request from this host itself, as the open console (no ``server.auth``) requires:
    a loopback peer, not relayed by a proxy on this host (it would make every visitor
    look local), and addressed to a local name (a browser page of another site that
    rebinds its name to 127.0.0.1 still sends that name)."""
    if not is_loopback(remote) or any(name in headers for name in _PROXY_HEADERS):
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in _LOCAL_HOSTS


def is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False
