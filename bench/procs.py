"""Starting, pinning, watching and stopping the benchmark's processes.

Every process starts in its own session (its own process group) and is stopped by
``running()``'s ``finally`` (SIGTERM to the group, then SIGKILL), whatever happened.
Pinning uses ``taskset`` when this machine lets us use at least two cores: the server
under test gets core 0 alone, the sink and the load generators share core 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
SERVER_CORE, CLIENT_CORE = 0, 1


@dataclass(frozen=True)
class Placement:
    """Where processes run: a core per role, or None when not pinned.

    ``server`` and ``client`` are the baseline's cores: the bare handler alone on one, its
    load generator on the other, whatever the replicas. ``replicas`` has one core per
    ``notifier serve``; ``load`` is the core of everything else while the service runs
    (sink, load generators, driver, Redis): the client core beside one replica, None
    (not pinned, sharing every core with the replicas) when the replicas take both cores.
    """

    server: int | None
    client: int | None
    replicas: tuple[int | None, ...] = (None,)
    load: int | None = None

    @classmethod
    def detect(cls, replicas: int = 1) -> Placement:
        cores = os.sched_getaffinity(0)
        if not ({SERVER_CORE, CLIENT_CORE} <= cores and shutil.which("taskset")):
            return cls(None, None, (None,) * replicas, None)
        if replicas == 1:
            return cls(SERVER_CORE, CLIENT_CORE, (SERVER_CORE,), CLIENT_CORE)
        if replicas == 2:
            return cls(SERVER_CORE, CLIENT_CORE, (SERVER_CORE, CLIENT_CORE), None)
        raise ValueError("pinning places one or two replicas")

    def pin_self(self) -> None:
        """Run this (driver + Python load generator) process on the load core, if any."""
        if self.load is not None:
            os.sched_setaffinity(0, {self.load})

    def describe(self, redis: bool = False) -> str:
        others = "sink, load generator" + (", Redis" if redis else "")
        if self.server is None:
            return "not pinned (needs 2 cores and taskset)"
        if len(self.replicas) == 1:
            return f"server on core {self.server}; {others} on core {self.load}"
        return (
            f"replicas on cores {' and '.join(map(str, self.replicas))} (one each); "
            f"{others} and driver not pinned: they share the cores with the replicas; "
            f"bare handler baseline as with one: core {self.server}, its wrk on core "
            f"{self.client}"
        )


def pinned(argv: Sequence[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if core is not None else list(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment for our Python children: the project and bench/ importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), str(BENCH), env.get("PYTHONPATH")])
    )
    return env


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def running(
    argv: Sequence[str], *, core: int | None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (pinned to ``core``) with output to ``log``; always stopped on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            pinned(argv, core),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=child_env(),
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop(proc)


def log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def wait_ready(
    url: str, proc: subprocess.Popen[bytes], log: Path, within: float = 20.0
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{log_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {within:.0f} s:\n{log_tail(log)}")


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set) of ``pid`` in MiB, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, from /proc (0.0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of this process's waited-for children (wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU shares (fraction of one core) of some processes between creation and ``shares()``.

    With ``generator=True`` it also counts this process and its waited-for children
    (the Python load generator, or wrk), as ``"generator"``.
    """

    def __init__(self, pids: dict[str, int], *, generator: bool = False) -> None:
        self._pids = pids
        self._generator = generator
        self._start = self._sample()

    def _sample(self) -> dict[str, float]:
        sample = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        if self._generator:
            sample["generator"] = time.process_time() + children_cpu_seconds()
        sample["wall"] = time.monotonic()
        return sample

    def shares(self) -> dict[str, float]:
        end = self._sample()
        wall = end["wall"] - self._start["wall"] or 1e-9
        return {name: (end[name] - self._start[name]) / wall for name in end if name != "wall"}


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds so far of each thread of ``pid``, by thread id."""
    result = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            result[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return result
