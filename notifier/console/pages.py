"""The console's pages (GET): each reads through ``views`` and renders one template."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from notifier.console import views
from notifier.console.app import PREFIX, SESSIONS, Visit, see_other, set_session_cookie
from notifier.console.auth import login_user
from notifier.console.session import COOKIE
from notifier.store.base import StoreUnavailable


async def show(visit: Visit, template: str, status: int = 200, **context: Any) -> web.Response:
    """``template`` with the status strip every page carries."""
    strip = await views.status_strip(visit.runtime)
    return visit.render(template, status=status, strip=strip, **context)


def _limit(visit: Visit) -> int:
    try:
        return max(1, min(int(visit.request.query.get("limit", views.PAGE)), 500))
    except ValueError:
        return views.PAGE


async def home(visit: Visit) -> web.StreamResponse:
    raise web.HTTPSeeOther(f"{PREFIX}/incidents")


async def incidents(visit: Visit) -> web.StreamResponse:
    try:
        data = await views.incidents(visit.runtime)
    except StoreUnavailable:
        return await show(visit, "unavailable.html", status=503, title="Incidents")
    return await show(visit, "incidents.html", title="Incidents", **data)


async def dead_letters(visit: Visit) -> web.StreamResponse:
    before = visit.request.query.get("before") or None
    try:
        paged = await views.dead_letters(visit.runtime, _limit(visit), before)
    except StoreUnavailable:
        return await show(visit, "unavailable.html", status=503, title="Dead letters")
    return await show(
        visit,
        "dead_letters.html",
        title="Dead letters",
        page=paged,
        before=before,
        filter_query="",
        window=views.WINDOW,
    )


async def confirm_purge(visit: Visit) -> web.StreamResponse:
    strip = await views.status_strip(visit.runtime)
    count = strip["queue"]["dead_letters"] if strip["queue"] else None
    return visit.render("purge.html", title="Purge dead letters", strip=strip, count=count)


async def deliveries(visit: Visit) -> web.StreamResponse:
    query = visit.request.query
    channel, outcome, text = query.get("channel", ""), query.get("outcome", ""), query.get("q", "")
    try:
        paged = await views.deliveries(
            visit.runtime, channel, outcome, text, _limit(visit), query.get("before") or None
        )
    except StoreUnavailable:
        return await show(visit, "unavailable.html", status=503, title="Deliveries")
    return await show(
        visit,
        "deliveries.html",
        title="Deliveries",
        page=paged,
        channel=channel,
        outcome=outcome,
        q=text,
        channel_names=list(visit.runtime.loaded.config.channels),
        before=query.get("before"),
        filter_query=urlencode({k: v for k, v in query.items() if k != "before" and v}),
        window=views.WINDOW,
    )


async def channels(visit: Visit) -> web.StreamResponse:
    try:
        rows = await views.channels(visit.runtime)
    except StoreUnavailable:
        return await show(visit, "unavailable.html", status=503, title="Channels")
    return await show(visit, "channels.html", title="Channels", channels=rows)


def _labels(text: str) -> tuple[dict[str, str], list[str]]:
    """``name=value`` pairs, one per line or separated by commas; and the bad ones."""
    labels, bad = {}, []
    for part in text.replace(",", "\n").splitlines():
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            bad.append(part.strip())
        else:
            labels[name.strip()] = value.strip().strip('"')
    return labels, bad


async def routes(visit: Visit) -> web.StreamResponse:
    text = visit.request.query.get("labels", "")
    labels, bad = _labels(text)
    tested = views.route_test(visit.runtime, labels) if labels and not bad else None
    return await show(
        visit,
        "routes.html",
        title="Routes",
        labels=text,
        bad_labels=bad,
        tested=tested,
        **views.routes(visit.runtime),
    )


async def heartbeats(visit: Visit) -> web.StreamResponse:
    rows = await views.heartbeats(visit.runtime)
    return await show(visit, "heartbeats.html", title="Heartbeats", heartbeats=rows)


def console_target(target: str) -> str:
    """Where to go after logging in: a console path only, never another site, and nothing a
    ``Location`` header could not carry (control characters)."""
    unsafe = target.startswith("//") or "\\" in target or not target.isprintable()
    if not target.startswith(PREFIX + "/") or unsafe:
        return f"{PREFIX}/incidents"
    return target


def _next(visit: Visit) -> str:
    return console_target(str(visit.request.query.get("next") or ""))


async def login_form(visit: Visit) -> web.StreamResponse:
    auth = visit.runtime.loaded.config.server.auth
    if auth is None:
        raise web.HTTPSeeOther(f"{PREFIX}/incidents")
    return visit.render(
        "login.html",
        title="Log in",
        token_login=auth.bearer_token is not None,
        next=_next(visit),
        error="",
        strip=None,
    )


async def login(visit: Visit) -> web.StreamResponse:
    auth = visit.runtime.loaded.config.server.auth
    if auth is None:
        raise web.HTTPSeeOther(f"{PREFIX}/incidents")
    form = await visit.request.post()
    user = login_user(auth, str(form.get("username", "")), str(form.get("password", "")))
    target = console_target(str(form.get("next", "")))
    if user is None:
        return visit.render(
            "login.html",
            status=401,
            title="Log in",
            token_login=auth.bearer_token is not None,
            next=target,
            error="Wrong credentials.",
            strip=None,
        )
    _, cookie = visit.request.app[SESSIONS].new(user, visit.runtime.clock())
    response = see_other(target)
    set_session_cookie(visit.request, response, cookie)
    return response


async def logout(visit: Visit) -> web.StreamResponse:
    response = see_other(f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX + "/")
    return response


# (method, path under /ui, page, login required)
ROUTES = [
    ("GET", "", home, True),
    ("GET", "/", home, True),
    ("GET", "/incidents", incidents, True),
    ("GET", "/dead-letters", dead_letters, True),
    ("GET", "/dead-letters/purge", confirm_purge, True),
    ("GET", "/deliveries", deliveries, True),
    ("GET", "/channels", channels, True),
    ("GET", "/routes", routes, True),
    ("GET", "/heartbeats", heartbeats, True),
    ("GET", "/login", login_form, False),
    ("POST", "/login", login, False),
    ("POST", "/logout", logout, True),
]
