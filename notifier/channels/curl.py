"""``CurlSession``: HTTP requests through libcurl (pycurl's ``CurlMulti``) on the asyncio loop.

The webhook channel sends a storm's every notification, and in profiles aiohttp's client
cost more CPU per notification than any other part of the service; libcurl does the
same request in C, with the event loop only told which sockets to watch. One session
holds one multi handle (its connection cache is the keep-alive pool) and a stack of
easy handles kept for reuse.

What the channel relies on, as aiohttp gave it:

- TLS is verified (libcurl's default: peer and host name) against the trust store
  Python's ``ssl`` uses (``ssl.get_default_verify_paths()``, which honours
  ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``).
- Proxies come from the environment as libcurl reads it (``http_proxy``,
  ``https_proxy``, ``HTTPS_PROXY``, ``all_proxy``, ``no_proxy``).
- Redirects are not followed; each request has its own total timeout.
- Failures leave as exceptions the channels' shared rules classify
  (``notifier.channels.classify``): ``TimeoutError``, ``CannotConnect``,
  ``ConnectionLost``, or ``RequestFailed``, each built from libcurl's error code (and
  the socket's errno), never from libcurl's message, which quotes the URL.

libcurl's socket and timer callbacks only (un)register readers, writers and one timer
handle on the loop; transfers are driven from those loop callbacks, never from inside a
libcurl callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO

import pycurl

# libcurl's error codes for a failure to reach the peer at all: resolving, connecting,
# the proxy, the TLS handshake and its verification.
_CONNECT_ERRORS = {
    pycurl.E_COULDNT_RESOLVE_PROXY: "cannot resolve the proxy",
    pycurl.E_COULDNT_RESOLVE_HOST: "cannot resolve the host",
    pycurl.E_COULDNT_CONNECT: "connection failed",
    pycurl.E_SSL_CONNECT_ERROR: "TLS handshake failed",
    pycurl.E_PEER_FAILED_VERIFICATION: "TLS certificate not trusted",
    pycurl.E_SSL_CACERT_BADFILE: "CA certificates unreadable",
    pycurl.E_SSL_CERTPROBLEM: "client certificate problem",
    pycurl.E_SSL_CIPHER: "no TLS cipher in common",
}
# ...and for a connection that broke once the request was on its way.
_LOST_ERRORS = frozenset(
    {pycurl.E_SEND_ERROR, pycurl.E_RECV_ERROR, pycurl.E_GOT_NOTHING, pycurl.E_PARTIAL_FILE}
)
_IDLE_HANDLES = 64  # easy handles kept for reuse, at most
MAX_ANSWER_BYTES = 64 * 1024
_CONNECTIONS = 100


class CannotConnect(ConnectionError):
    """The peer could not be reached (DNS, refused, TLS handshake or verification)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class ConnectionLost(ConnectionError):
    """The connection broke during the exchange."""


class RequestFailed(OSError):
    """Any other libcurl failure; ``code`` is libcurl's ``CURLcode``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"curl error {code}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    retry_after: str | None


def _trust_options() -> list[tuple[int, str]]:
    """CA options pointing libcurl at the trust store Python's ``ssl`` would use."""
    paths = ssl.get_default_verify_paths()
    options = []
    if paths.cafile and os.path.isfile(paths.cafile):
        options.append((pycurl.CAINFO, paths.cafile))
    if paths.capath and os.path.isdir(paths.capath):
        options.append((pycurl.CAPATH, paths.capath))
    return options


def _failure(code: int, os_errno: int) -> Exception:
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return TimeoutError()
    if code in _CONNECT_ERRORS:
        if code == pycurl.E_COULDNT_CONNECT and os_errno:
            return CannotConnect(os.strerror(os_errno))
        return CannotConnect(_CONNECT_ERRORS[code])
    if code in _LOST_ERRORS:
        return ConnectionLost(f"curl error {code}")
    return RequestFailed(code)


class _Transfer:
    """One request in flight: its easy handle, what came back, and who waits for it."""

    __slots__ = ("body", "curl", "future", "headers")

    def __init__(self, curl: pycurl.Curl, future: asyncio.Future[None]) -> None:
        self.curl = curl
        self.future = future
        self.body = BytesIO()
        self.headers: list[bytes] = []

    def keep(self, chunk: bytes) -> None:
        """Keep the answer's first ``MAX_ANSWER_BYTES`` (only an excerpt is ever shown);
        the rest is read and dropped, so a peer that streams without end costs no memory."""
        room = MAX_ANSWER_BYTES - self.body.tell()
        if room > 0:
            self.body.write(chunk[:room])


class CurlSession:
    """Shared HTTP client; ``request`` from any task on the loop it was first used on."""

    def __init__(self) -> None:
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._watch_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._set_timer)
        # At most this many connections open at once, as aiohttp's connector had (more
        # requests wait for one), and kept alive between bursts (libcurl's default cache
        # follows the handles in use, which is none between bursts).
        self._multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, _CONNECTIONS)
        self._multi.setopt(pycurl.M_MAXCONNECTS, _CONNECTIONS)
        self._loop: asyncio.AbstractEventLoop | None = None
        # libcurl's next deadline (loop time), the wake-up armed at or before it, and
        # whether a wake-up for "now" is queued.
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._kick_pending = False
        self._watched: dict[int, int] = {}  # fd -> the POLL_* libcurl asked for
        self._transfers: dict[pycurl.Curl, _Transfer] = {}
        self._idle: list[pycurl.Curl] = []
        self._trust = _trust_options()
        self._closed = False

    async def request(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: Iterable[str],
        timeout: float,  # noqa: ASYNC109 (libcurl's own, so the connection is dropped cleanly)
    ) -> Answer:
        """Send ``body`` with ``headers`` (``"Name: value"`` lines); the peer's answer."""
        if self._closed:
            raise RuntimeError("the HTTP session is closed")
        loop = self._loop = self._loop or asyncio.get_running_loop()
        curl = self._idle.pop() if self._idle else self._new_handle()
        transfer = _Transfer(curl, loop.create_future())
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.CUSTOMREQUEST, method)
        curl.setopt(pycurl.POSTFIELDS, body)
        # No ``Expect: 100-continue`` round trip before a larger body.
        curl.setopt(pycurl.HTTPHEADER, [*headers, "Expect:"])
        curl.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))
        curl.setopt(pycurl.WRITEFUNCTION, transfer.keep)
        curl.setopt(pycurl.HEADERFUNCTION, transfer.headers.append)
        self._transfers[curl] = transfer
        self._multi.add_handle(curl)
        try:
            await transfer.future
            status = curl.getinfo(pycurl.RESPONSE_CODE)
        finally:
            self._finish(transfer)
        return Answer(status, transfer.body.getvalue(), _retry_after(transfer.headers))

    def _new_handle(self) -> pycurl.Curl:
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        for option, value in self._trust:
            curl.setopt(option, value)
        return curl

    def _finish(self, transfer: _Transfer) -> None:
        """Take the handle out of the multi (a cancelled transfer's connection is dropped)."""
        curl = transfer.curl
        if self._transfers.pop(curl, None) is not None:
            self._multi.remove_handle(curl)
        curl.setopt(pycurl.WRITEFUNCTION, _ignore)  # drop the references to this transfer
        curl.setopt(pycurl.HEADERFUNCTION, _ignore)
        if self._closed or len(self._idle) >= _IDLE_HANDLES:
            curl.close()
        else:
            self._idle.append(curl)

    # libcurl's callbacks: they only tell the loop what to watch and when to wake.

    def _watch_socket(self, what: int, fd: int, multi: object, data: object) -> None:
        loop = self._loop
        assert loop is not None
        before = self._watched.get(fd, 0)
        if before in (pycurl.POLL_IN, pycurl.POLL_INOUT) and what not in (
            pycurl.POLL_IN,
            pycurl.POLL_INOUT,
        ):
            loop.remove_reader(fd)
        if before in (pycurl.POLL_OUT, pycurl.POLL_INOUT) and what not in (
            pycurl.POLL_OUT,
            pycurl.POLL_INOUT,
        ):
            loop.remove_writer(fd)
        if what == pycurl.POLL_REMOVE:
            self._watched.pop(fd, None)
            return
        if what in (pycurl.POLL_IN, pycurl.POLL_INOUT) and before not in (
            pycurl.POLL_IN,
            pycurl.POLL_INOUT,
        ):
            loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        if what in (pycurl.POLL_OUT, pycurl.POLL_INOUT) and before not in (
            pycurl.POLL_OUT,
            pycurl.POLL_INOUT,
        ):
            loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        self._watched[fd] = what

    def _set_timer(self, timeout_ms: int) -> None:
        """libcurl's next deadline moved: remember it; arm a wake-up only if none comes sooner.

        libcurl moves it with nearly every request (to the oldest request's timeout, or to
        "now" to start a new one). Rescheduling a loop timer each time showed in profiles,
        so one wake-up is kept armed at or before the deadline, and checks it when it fires.
        """
        loop = self._loop
        if loop is None:
            return
        if timeout_ms < 0:
            self._deadline = None  # an armed wake-up finds nothing to do
            return
        if timeout_ms == 0:
            self._deadline = loop.time()
            if not self._kick_pending:
                self._kick_pending = True
                loop.call_soon(self._kick)
            return
        deadline = self._deadline = loop.time() + timeout_ms / 1000
        if self._timer is None or self._timer.when() > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._wake)

    def _kick(self) -> None:
        self._kick_pending = False
        self._on_deadline()

    def _wake(self) -> None:
        self._timer = None
        self._on_deadline()

    def _on_deadline(self) -> None:
        """Run libcurl's timeouts if its deadline has come, else wake again at it."""
        loop, deadline = self._loop, self._deadline
        if loop is None or deadline is None:
            return
        if deadline > loop.time():
            if self._timer is None or self._timer.when() > deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(deadline, self._wake)
            return
        self._deadline = None  # libcurl sets the next one while it acts
        self._act(pycurl.SOCKET_TIMEOUT, 0)

    # Loop callbacks: drive the transfers, then settle the finished ones.

    def _act(self, fd: int, events: int) -> None:
        if self._closed:
            return
        self._multi.socket_action(fd, events)
        while True:
            queued, done, failed = self._multi.info_read()
            for curl in done:
                self._settle(curl, None)
            for curl, code, _message in failed:
                self._settle(curl, _failure(code, curl.getinfo(pycurl.OS_ERRNO)))
            if not queued:
                return

    def _settle(self, curl: pycurl.Curl, error: Exception | None) -> None:
        transfer = self._transfers.get(curl)
        if transfer is None or transfer.future.done():
            return
        if error is None:
            transfer.future.set_result(None)
        else:
            transfer.future.set_exception(error)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop watching, drop every connection; requests still waiting fail."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        transfers, self._transfers = self._transfers, {}
        for curl, transfer in transfers.items():
            self._multi.remove_handle(curl)  # the waiter closes the handle itself
            if not transfer.future.done():
                transfer.future.set_exception(ConnectionLost("the HTTP session was closed"))
        if self._loop is not None:
            for fd in self._watched:
                self._loop.remove_reader(fd)
                self._loop.remove_writer(fd)
        self._watched.clear()
        for curl in self._idle:
            curl.close()
        self._idle.clear()
        with contextlib.suppress(pycurl.error):
            self._multi.close()


def _ignore(_line: bytes) -> None:
    """A header or body callback for an idle handle."""


def _retry_after(lines: list[bytes]) -> str | None:
    """The last ``Retry-After`` among the final answer's header lines, if any."""
    value = None
    for line in lines:
        if line[:12].lower() == b"retry-after:":
            value = line[12:].decode("latin-1").strip()
        elif line.startswith(b"HTTP/"):
            value = None  # a new answer (after a 1xx): forget the earlier one's headers
    return value
