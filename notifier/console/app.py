"""The console's routes under ``/ui/``, and the guard every one of them goes through.

The server's credentials middleware leaves ``/ui/`` paths to this guard (``is_console``):
a page needs the console's session cookie (with ``server.auth``) or a loopback caller
(without), and every POST a CSRF token matching its session. A refusal is an HTML page,
never a redirect loop: a GET without a session goes to the login form, a POST is 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from notifier import __version__
from notifier.console.auth import is_local_request
from notifier.console.session import COOKIE, LIFETIME, Session, Sessions
from notifier.runtime import Runtime

PREFIX = "/ui"
MAX_FORM_BYTES = 64 * 1024
RUNTIME = web.AppKey("console_runtime", Runtime)
SESSIONS = web.AppKey("console_sessions", Sessions)
TEMPLATES = web.AppKey("console_templates", jinja2.Environment)


def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


@dataclass(frozen=True, slots=True)
class Visit:
    """One request the guard let through: who asks, and what every page shows."""

    request: web.Request
    runtime: Runtime
    session: Session
    csrf: str
    open_console: bool  # no server.auth: loopback callers only, read-write

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        env = self.request.app[TEMPLATES]
        runtime = self.runtime
        html = env.get_template(template).render(
            csrf=self.csrf,
            user=self.session.user,
            open_console=self.open_console,
            version=__version__,
            config_hash=runtime.loaded.digest,
            config_loaded_at=runtime.loaded_at,
            path=self.request.path,
            notice=self.request.query.get("notice", ""),
            prefix=PREFIX,
            **context,
        )
        return web.Response(text=html, status=status, content_type="text/html", headers=_HEADERS)


Page = Callable[[Visit], Awaitable[web.StreamResponse]]

# No framing, no inline script from elsewhere, no referrer leaking ids.
_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def see_other(location: str) -> web.Response:
    """A redirect after a form (Post/Redirect/Get), returned rather than raised so that
    the guard can still add a cookie to it."""
    return web.Response(status=303, headers={"Location": location})


def refusal(request: web.Request, status: int, message: str) -> web.Response:
    html = (
        request.app[TEMPLATES]
        .get_template("refused.html")
        .render(status=status, message=message, prefix=PREFIX)
    )
    return web.Response(text=html, status=status, content_type="text/html", headers=_HEADERS)


def set_session_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        path=PREFIX + "/",
        max_age=int(LIFETIME),
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )


def _secure(request: web.Request) -> bool:
    public_url = request.app[RUNTIME].loaded.config.server.public_url
    return bool(public_url and public_url.startswith("https://"))


def guard(
    page: Page, *, login_required: bool = True
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``page`` behind the console's rules: a session (or, without ``server.auth``, a
    loopback caller), and on a POST a small form whose CSRF token matches the session."""

    async def handler(request: web.Request) -> web.StreamResponse:
        runtime = request.app[RUNTIME]
        sessions = request.app[SESSIONS]
        now = runtime.clock()
        auth = runtime.loaded.config.server.auth
        session = sessions.read(request.cookies.get(COOKIE), now)
        new_cookie = None
        if auth is None:
            if not is_local_request(request.remote, request.headers, request.host):
                return refusal(
                    request,
                    403,
                    "Without server.auth the console answers on localhost only"
                    " (not through a proxy).",
                )
            if session is None:
                session, new_cookie = sessions.new("", now)
        elif session is None or not session.user:
            if request.method == "POST" and login_required:
                return refusal(request, 403, "Log in first: no valid session.")
            if login_required:
                raise web.HTTPSeeOther(f"{PREFIX}/login?next={quote(request.path_qs)}")
            if session is None:  # the login form's own anonymous session, for its CSRF token
                session, new_cookie = sessions.new("", now)
        if request.method == "POST":
            # The app takes huge webhook bodies; a console form is small, read only if so.
            if request.content_length is None or request.content_length > MAX_FORM_BYTES:
                return refusal(request, 413, "A console form is at most 64 KiB.")
            form = await request.post()
            token = form.get("csrf")
            if not sessions.csrf_ok(session, token if isinstance(token, str) else None):
                return refusal(request, 403, "The form's CSRF token does not match your session.")
        visit = Visit(request, runtime, session, sessions.csrf_token(session), auth is None)
        response = await page(visit)
        if new_cookie is not None:
            set_session_cookie(request, response, new_cookie)
        return response

    return handler
