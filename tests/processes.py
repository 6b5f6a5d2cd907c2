"""Real processes for the tests that run notifier as its operators do.

``notifier serve`` and Alertmanager run as children in their own process groups, their
output in a log file that is printed when the test ends (pytest shows it only for a
failed test). Every wait polls against a deadline. ``running_notifier`` and
``running_alertmanager`` kill their process group on the way out, whatever happened.
Also here: a webhook sink (a local aiohttp server recording what it is sent), a helper
to serve any aiohttp app on a free port, a ``/metrics`` scraper and the CLI runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from notifier.sample import build_payload
from tests.channel_support import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "e2e-bearer-token"


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout: float = 10.0,  # noqa: ASYNC109 (a deadline, not a cancellation)
    interval: float = 0.02,
) -> None:
    """Poll ``check`` until it holds; fail after ``timeout``, a bound for a hang, not a
    speed to assert: pass one generous enough for a loaded machine."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def webhook_payload(alertname: str, severity: str = "critical") -> dict[str, Any]:
    """An Alertmanager webhook payload (one firing alert in its own group), as JSON."""
    return build_payload(alertname=alertname, severity=severity).to_alertmanager_json()


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: ours without NOTIFIER_*, the project importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def notifier_argv(*args: str) -> list[str]:
    """The real ``notifier`` command (``python -m notifier`` of this interpreter)."""
    return [sys.executable, "-m", "notifier", *args]


class Process:
    """A child in its own process group, stdout and stderr going to ``log_path``."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=log_path.parent,
                start_new_session=True,  # its own process group: killpg reaches every child
            )

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def send(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    async def wait_exit(self, timeout: float) -> int:  # noqa: ASYNC109
        """The exit code; fails (the process still running) after ``timeout`` seconds."""
        await wait_until(lambda: self._popen.poll() is not None, f"{self.name} to exit", timeout)
        code = self._popen.poll()
        assert code is not None
        return code

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the child. Safe to call twice."""
        self.send(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def dump_log(self, last: int = 200) -> None:
        """Print the last lines of the log; pytest shows them only when the test failed."""
        lines = self.log().splitlines()[-last:]
        print(f"----- {self.name} (pid {self.pid}) log, last {len(lines)} lines -----")
        print("\n".join(lines))

    async def wait_http_ok(self, url: str, timeout: float) -> None:  # noqa: ASYNC109
        """Poll ``url`` until it answers 200; fail early if the process dies."""

        async def ok() -> bool:
            if self._popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self._popen.poll()} before it was ready:\n"
                    + self.log()[-4000:]
                )
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session,
                    session.get(url) as response,
                ):
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await wait_until(ok, f"{self.name} at {url}", timeout, interval=0.05)


class NotifierProcess(Process):
    """``notifier serve --config CONFIG --listen 127.0.0.1:PORT``."""

    def __init__(self, config: Path, port: int, log_path: Path, env: Mapping[str, str]) -> None:
        self.config = config
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        argv = notifier_argv("serve", "--config", str(config), "--listen", f"127.0.0.1:{port}")
        super().__init__(f"notifier :{port}", argv, log_path, child_env(env))

    async def wait_ready(self, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        await self.wait_http_ok(f"{self.url}/-/ready", timeout)

    async def post_alerts(self, payload: dict[str, Any], token: str = TOKEN) -> int:
        """POST an Alertmanager webhook payload to ``/api/v1/alerts``; the status code."""
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(f"{self.url}/api/v1/alerts", json=payload, headers=headers) as response,
        ):
            await response.read()
            return response.status

    async def get_json(self, path: str, token: str = TOKEN) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{self.url}{path}", headers=headers) as response,
        ):
            assert response.status == 200, f"GET {path}: {response.status} {await response.text()}"
            return await response.json()

    async def idle(self) -> bool:
        """Nothing queued, leased or due: every accepted job has had its outcome."""
        queue = (await self.get_json("/api/v1/status"))["queue"]
        return bool(queue) and queue["queued"] == 0 and queue["in_flight"] == 0


@asynccontextmanager
async def running_notifier(
    config: Path,
    log_dir: Path,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    name: str = "notifier",
) -> AsyncIterator[NotifierProcess]:
    """A ready ``notifier serve``; killed (process group, SIGKILL) on the way out."""
    process = NotifierProcess(
        config, port or free_port(), log_dir / f"{name}-{time.monotonic_ns()}.log", env or {}
    )
    try:
        await process.wait_ready()
        yield process
    finally:
        process.kill()
        process.dump_log()


class AlertmanagerProcess(Process):
    def __init__(self, binary: str, config: Path, folder: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # empty: no gossip, each instance on its own
            "--log.level=debug",
        ]
        super().__init__(f"alertmanager :{port}", argv, folder / "alertmanager.log", child_env())

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """``POST /api/v2/alerts``, as Prometheus does."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(f"{self.url}/api/v2/alerts", json=alerts) as response,
        ):
            text = await response.text()
            assert response.status == 200, f"alertmanager answered {response.status}: {text}"

    async def webhook_notifications(self) -> float:
        """How many webhook notifications this Alertmanager sent successfully."""
        sent = await scrape(f"{self.url}/metrics")
        failed = sent.total("alertmanager_notifications_failed_total", integration="webhook")
        return sent.total("alertmanager_notifications_total", integration="webhook") - failed


def alertmanager_config(
    webhook_url: str,
    token: str = TOKEN,
    *,
    group_wait: str = "0s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> str:
    """One route to one webhook receiver (notifier), resolutions included, with bearer auth."""
    return yaml.safe_dump(
        {
            "route": {
                "receiver": "notifier",
                "group_by": ["alertname"],
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
            "receivers": [
                {
                    "name": "notifier",
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials": token}
                            },
                        }
                    ],
                }
            ],
        },
        sort_keys=False,
    )


def _write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "alertmanager.yml"
    config.write_text(text)
    return config


@asynccontextmanager
async def running_alertmanager(
    binary: str, config_text: str, folder: Path
) -> AsyncIterator[AlertmanagerProcess]:
    """A ready Alertmanager (no clustering) in ``folder``; killed on the way out."""
    process = AlertmanagerProcess(binary, _write_config(folder, config_text), folder, free_port())
    try:
        await process.wait_http_ok(f"{process.url}/-/ready", timeout=20)
        yield process
    finally:
        process.kill()
        process.dump_log(last=60)


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 in this event loop; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class SinkRequest:
    at: float  # time.monotonic() when the body was read
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookSink:
    """Records every request it is sent, optionally holding each one ``delay`` seconds first.

    ``hold`` (when set) makes every request wait until it is set: a receiver that hangs.
    """

    delay: float = 0.0
    status: int = 200
    hold: asyncio.Event | None = None
    requests: list[SinkRequest] = field(default_factory=list)
    answered: list[SinkRequest] = field(default_factory=list)  # answered ``status``, in order

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        recorded = SinkRequest(
            time.monotonic(), request.path, dict(request.headers), await request.read()
        )
        self.requests.append(recorded)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.hold is not None:
            await self.hold.wait()
        self.answered.append(recorded)
        return web.json_response({"ok": True}, status=self.status)

    def keys(self) -> list[str]:
        return [r.key for r in self.requests]

    def duplicates(self) -> int:
        keys = self.keys()
        return len(keys) - len(set(keys))


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` scrape: ``(name, labels) -> value`` for every sample."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def matching(self, name: str, **labels: str) -> Iterator[float]:
        wanted = set(labels.items())
        for (sample, sample_labels), value in self.samples.items():
            if sample == name and wanted <= sample_labels:
                yield value

    def total(self, name: str, **labels: str) -> float:
        return sum(self.matching(name, **labels))


async def scrape(url: str) -> Scrape:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(url) as response,
    ):
        assert response.status == 200, f"GET {url}: {response.status}"
        text = await response.text()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return Scrape(samples)


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


async def run_cli(
    *args: str,
    timeout: float = 30.0,  # noqa: ASYNC109 (a deadline for the child, which is killed)
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> CliResult:
    """Run ``notifier ARGS...`` as a child without blocking this event loop (the stand-ins
    it may talk to live here), in ``cwd`` (default: ours); killed if it outlives ``timeout``."""
    process = await asyncio.create_subprocess_exec(
        *notifier_argv(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())
