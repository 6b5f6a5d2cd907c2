"""The console's guard, session and pages on the real app (aiohttp's test client).

The browser tests (tests/browser) drive the pages as a person does; these check the
rules one request at a time: signed cookies, CSRF, the login form, the open console.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from notifier.console.auth import is_local_request, is_loopback
from notifier.console.session import COOKIE, Sessions
from notifier.console.views import page_of
from notifier.testing import make_payload
from tests.conftest import TEMPLATES, AppFactory
from tests.processes import wait_until

BASIC = f"""
server:
  listen: "127.0.0.1:0"
  auth: {{basic: {{username: ops, password: "pa55-Word-x"}}}}
storage: {{url: "memory://"}}
templates_dir: "{TEMPLATES}"
channels:
  console: {{type: log}}
default_channels: [console]
"""
OPEN = BASIC.replace('  auth: {basic: {username: ops, password: "pa55-Word-x"}}\n', "")


def test_a_session_cookie_is_signed_and_expires() -> None:
    sessions = Sessions()
    session, cookie = sessions.new("ops", now=1000.0)
    assert sessions.read(cookie, now=1001.0) == session
    assert sessions.read(cookie, now=session.expires_at) is None  # expired
    payload, signature = cookie.split(".")
    assert sessions.read(f"{payload}.{signature[:-2]}AA", now=1001.0) is None
    assert Sessions().read(cookie, now=1001.0) is None  # another process's key
    assert sessions.csrf_ok(session, sessions.csrf_token(session))
    other, _ = sessions.new("ops", now=1000.0)
    assert not sessions.csrf_ok(other, sessions.csrf_token(session))


def test_only_loopback_callers_reach_an_open_console() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.0.2")
    assert not is_loopback("10.0.0.5") and not is_loopback(None) and not is_loopback("unix")


def test_a_page_is_the_rows_before_the_cursor() -> None:
    rows = list("abcdefg")
    first = page_of(rows, str, 3, None)
    assert (first.rows, first.next_before, first.total) == (["a", "b", "c"], "c", 7)
    assert page_of(rows, str, 3, "c").rows == ["d", "e", "f"]
    last = page_of(rows, str, 3, "f")
    assert (last.rows, last.next_before) == (["g"], None)
    assert page_of(rows, str, 3, "unknown").rows == []


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def _login(client: Any, password: str, next_path: str = "/ui/channels") -> Any:
    form = await client.get(f"/ui/login?next={next_path}")
    assert form.status == 200
    data = {"username": "ops", "password": password, "next": next_path}
    data["csrf"] = _csrf(await form.text())
    return await client.post("/ui/login", data=data, allow_redirects=False)


async def test_basic_credentials_log_in_and_the_api_stays_guarded(app_client: AppFactory) -> None:
    client = await app_client(BASIC)
    refused = await client.get("/ui/incidents", allow_redirects=False)
    assert (refused.status, refused.headers["Location"]) == (303, "/ui/login?next=/ui/incidents")
    wrong = await _login(client, "pa55-Word-y")
    assert wrong.status == 401 and "Wrong credentials." in await wrong.text()
    right = await _login(client, "pa55-Word-x")
    assert (right.status, right.headers["Location"]) == (303, "/ui/channels")
    set_cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Secure" not in set_cookie and "Max-Age=" in set_cookie
    page = await client.get("/ui/channels")
    assert page.status == 200 and "console" in await page.text()
    # The session is the console's: the API still wants the credentials.
    assert (await client.get("/api/v1/status")).status == 401


async def test_the_login_goes_only_to_a_console_page(app_client: AppFactory) -> None:
    client = await app_client(BASIC)
    for elsewhere in ("https://evil.example/ui/", "//evil.example/ui/x", "/api/v1/status"):
        answer = await _login(client, "pa55-Word-x", elsewhere)
        assert answer.headers["Location"] == "/ui/incidents"


async def test_a_public_https_url_makes_the_cookie_secure(app_client: AppFactory) -> None:
    config = BASIC.replace(
        '  listen: "127.0.0.1:0"\n',
        '  listen: "127.0.0.1:0"\n  public_url: "https://notifier.example"\n',
    )
    client = await app_client(config)
    form = await client.get("/ui/login")
    assert "Secure" in form.headers["Set-Cookie"]


async def test_logout_ends_the_session_in_this_browser(app_client: AppFactory) -> None:
    client = await app_client(BASIC)
    await _login(client, "pa55-Word-x")
    page = await client.get("/ui/routes")
    out = await client.post(
        "/ui/logout", data={"csrf": _csrf(await page.text())}, allow_redirects=False
    )
    assert out.status == 303 and f"{COOKIE}=" in out.headers["Set-Cookie"]
    assert (await client.get("/ui/routes", allow_redirects=False)).status == 303


async def test_without_auth_the_console_is_open_on_localhost_and_says_so(
    app_client: AppFactory,
) -> None:
    client = await app_client(OPEN)
    page = await client.get("/ui/dead-letters")
    html = await page.text()
    assert page.status == 200 and "this console is open, read-write" in html
    # Still a CSRF token on every form: another site cannot post through the browser.
    assert (await client.post("/ui/dead-letters/replay-all", data={})).status == 403
    done = await client.post(
        "/ui/dead-letters/replay-all", data={"csrf": _csrf(html)}, allow_redirects=False
    )
    assert done.status == 303 and "replayed" in done.headers["Location"]


async def test_a_purge_needs_its_confirmation(app_client: AppFactory) -> None:
    client = await app_client(OPEN)
    confirm = await client.get("/ui/dead-letters/purge")
    token = _csrf(await confirm.text())
    unconfirmed = await client.post(
        "/ui/dead-letters/purge", data={"csrf": token}, allow_redirects=False
    )
    assert "not+confirmed" in unconfirmed.headers["Location"]
    confirmed = await client.post(
        "/ui/dead-letters/purge", data={"csrf": token, "confirm": "purge"}, allow_redirects=False
    )
    assert "purged" in confirmed.headers["Location"]


async def test_a_large_form_is_refused_unread(app_client: AppFactory) -> None:
    client = await app_client(OPEN)
    html = await (await client.get("/ui/dead-letters")).text()
    body = {"csrf": _csrf(html), "padding": "x" * 70_000}
    assert (await client.post("/ui/dead-letters/replay-all", data=body)).status == 413


INCIDENTS = f"""
server:
  listen: "127.0.0.1:0"
storage: {{url: "memory://"}}
templates_dir: "{TEMPLATES}"
channels:
  console: {{type: log}}
  pager: {{type: log}}
responders:
  - {{name: kim}}
escalation_policies:
  oncall:
    steps:
      - {{after: 0s, channels: [pager]}}
      - {{after: 1h, channels: [console]}}
routes:
  - name: critical
    matchers: ['severity="critical"']
    channels: []
    escalation: oncall
default_channels: [console]
"""


async def test_the_incident_forms_go_through_the_engine(app_client: AppFactory) -> None:
    client = await app_client(INCIDENTS)
    body = make_payload(group_key="g1").model_dump_json(by_alias=True)
    fired = await client.post(
        "/api/v1/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    assert fired.status == 202

    async def incident() -> dict[str, Any]:
        return dict((await (await client.get("/api/v1/incidents")).json())["incidents"][0])

    await wait_until(lambda: _paged(incident), "step 1")
    path = f"/ui/incidents/{(await incident())['id']}"
    token = _csrf(await (await client.get("/ui/incidents")).text())

    async def act(action: str, **form: str) -> str:
        answer = await client.post(
            f"{path}/{action}", data={"csrf": token, **form}, allow_redirects=False
        )
        assert answer.status == 303
        return unquote_plus(answer.headers["Location"])

    assert "not changed (not a responder)" in await act("ack", by="mallory")
    assert (await incident())["state"] == "open"
    assert "acknowledged" in await act("ack", by="kim")
    assert (await incident())["acknowledged_by"] == "kim"
    assert "un-acknowledged" in await act("unack", by="kim")
    assert (await incident())["state"] == "open"
    assert "silenced until resolved" in await act("silence", by="kim", **{"for": "resolved"})
    assert (await incident())["state"] == "silenced"
    assert "1h, 4h or until resolved" in await act("silence", by="kim", **{"for": "2d"})


async def _paged(incident: Any) -> bool:
    return bool((await incident())["pages_sent"] == 1)


async def test_the_channels_page_shows_each_channels_storm_mode(app_client: AppFactory) -> None:
    with_digests = OPEN.replace(
        "  console: {type: log}\n",
        "  console: {type: log}\n"
        '  pager: {type: sms, account_sid: AC1, auth_token: t0ken, from: "+15005550006",'
        ' to: ["+15005550001"], rate_limit: 1, api_url: "http://127.0.0.1:9"}\n',
    )
    client = await app_client(with_digests)
    html = await (await client.get("/ui/channels")).text()
    rows = {
        name: re.sub(r"<[^>]+>", " ", row)
        for name, row in re.findall(r'<tr id="channel-([\w-]+)">(.*?)</tr>', html, re.S)
    }
    assert "no digests" in rows["console"]  # a log channel has no storm mode
    assert " off " in rows["pager"] and "no digests" not in rows["pager"]


def test_the_open_console_is_for_this_host_itself_not_through_a_proxy() -> None:
    assert is_local_request("127.0.0.1", {}, "127.0.0.1:9095")
    assert is_local_request("::1", {}, "localhost:9095")
    assert is_local_request("::1", {}, "[::1]:9095")
    # A proxy on this host relays every visitor from 127.0.0.1.
    assert not is_local_request("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, "localhost")
    assert not is_local_request("127.0.0.1", {"Forwarded": "for=203.0.113.9"}, "localhost")
    # Another site's page whose name was rebound to 127.0.0.1 still sends its name.
    assert not is_local_request("127.0.0.1", {}, "evil.example:9095")
    assert not is_local_request("10.0.0.5", {}, "localhost")


async def test_hostile_cookies_csrf_and_next_get_an_answer_not_a_500(
    app_client: AppFactory,
) -> None:
    client = await app_client(BASIC)
    for cookie in ("abc.é", "é.é", "x" * 5000 + ".y"):
        page = await client.get("/ui/incidents", headers={"Cookie": f"{COOKIE}={cookie}"})
        assert page.status in (200, 303, 401), (cookie, page.status)
    answer = await _login(client, "pa55-Word-x", "/ui/x\r\nX-Evil: 1")
    assert answer.status == 303
    assert answer.headers["Location"] == "/ui/incidents"
    assert "X-Evil" not in answer.headers
    form = await client.get("/ui/login")
    assert form.status == 200
    forged = await client.post(
        "/ui/login", data={"csrf": "é", "username": "ops", "password": "pa55-Word-x"}
    )
    assert forged.status == 403
