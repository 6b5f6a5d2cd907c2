"""Mounting the console: its pages and forms under ``/ui/``, each behind the guard."""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web

from notifier.console import actions, pages
from notifier.console.app import PREFIX, RUNTIME, SESSIONS, TEMPLATES, guard
from notifier.console.render import environment
from notifier.console.session import Sessions
from notifier.runtime import Runtime


def mount(app: web.Application, runtime: Runtime) -> None:
    """Add the console's routes to ``app``; a new session key for this process."""
    app[SESSIONS] = Sessions()
    app[TEMPLATES] = environment()
    app[RUNTIME] = runtime
    for method, path, page, login_required in [*pages.ROUTES, *actions.ROUTES]:
        app.router.add_route(method, PREFIX + path, guard(page, login_required=login_required))
    app.router.add_static(PREFIX + "/static/", str(files("notifier.console") / "static"))
