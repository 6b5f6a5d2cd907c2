"""Who may use the console: the service's own credentials through a login form.

With ``server.auth`` set, a login form takes the same credentials as the API (a bearer
token as the password, or the basic username and password), compared in constant time,
and sets a signed session cookie. Without it the console answers only on loopback
addresses, read-write, and every page says so.
"""

from __future__ import annotations

import hmac
import ipaddress

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


def is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False
