"""A local Twilio Messages API for tests, served by ``aiohttp.web`` so the real Twilio SDK talks to it.

Speaks the wire protocol of ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``:
a form body (``To``, ``From``, ``Body``), HTTP basic auth with the account SID and auth
token, ``201`` with the message resource as JSON, and errors as Twilio sends them
(``{"code", "message", "more_info", "status"}``): ``401`` / 20003 for bad credentials,
``429`` / 20429 with ``Retry-After`` when scripted. Answers can be scripted in order
(``script``) or per recipient (``script_for``); every request is recorded (``requests``).
"""

from __future__ import annotations

import base64
import itertools
from collections import deque
from dataclasses import dataclass

from aiohttp import web

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


@dataclass(frozen=True)
class TwilioRequest:
    account_sid: str
    to: str
    from_: str
    body: str
    authorized: bool


@dataclass(frozen=True)
class TwilioError:
    """One scripted failure; ``text`` replaces the JSON body (a proxy's HTML 502)."""

    status: int
    code: int | None = None
    message: str = "scripted failure"
    retry_after: str | None = None
    text: str | None = None


class FakeTwilio:
    def __init__(
        self, *, account_sid: str = "AC" + "0" * 32, auth_token: str = "fake-auth-token"
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[TwilioRequest] = []
        self.delivered: list[TwilioRequest] = []  # the requests answered 201
        self._script: deque[TwilioError] = deque()
        self._per_recipient: dict[str, deque[TwilioError]] = {}
        self._sids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        return app

    def script(self, *answers: TwilioError) -> None:
        """Answer the next requests with these failures, in order."""
        self._script.extend(answers)

    def script_for(self, to: str, *answers: TwilioError) -> None:
        """Answer the next requests to ``to`` with these failures (before ``script``)."""
        self._per_recipient.setdefault(to, deque()).extend(answers)

    def _authorized(self, request: web.Request, sid: str) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return (
            sid == self.account_sid and request.headers.get("Authorization") == f"Basic {expected}"
        )

    async def _create(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        form = await request.post()
        to, from_, body = (
            str(form.get("To", "")),
            str(form.get("From", "")),
            str(form.get("Body", "")),
        )
        authorized = self._authorized(request, sid)
        recorded = TwilioRequest(sid, to, from_, body, authorized)
        self.requests.append(recorded)
        queue = self._per_recipient.get(to)
        scripted = queue.popleft() if queue else self._script.popleft() if self._script else None
        if scripted is not None:
            return _error(scripted)
        if not authorized:
            return _error(TwilioError(401, 20003, "Authenticate"))
        self.delivered.append(recorded)
        message_sid = f"SM{next(self._sids):032x}"
        return web.json_response(
            {
                "sid": message_sid,
                "account_sid": sid,
                "to": to,
                "from": from_,
                "body": body,
                "status": "queued",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "num_media": "0",
                "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
            },
            status=201,
        )


def _error(answer: TwilioError) -> web.Response:
    headers = {"Retry-After": answer.retry_after} if answer.retry_after else {}
    if answer.text is not None:
        return web.Response(status=answer.status, text=answer.text, headers=headers)
    body = {
        "code": answer.code,
        "message": answer.message,
        "more_info": MORE_INFO.format(code=answer.code),
        "status": answer.status,
    }
    return web.json_response(body, status=answer.status, headers=headers)
