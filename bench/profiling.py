"""Optional py-spy profile of the service during the storm (``run.py --profile``).

``py_spy()`` attaches ``py-spy record --gil`` (only the thread holding the GIL is
sampled, so the profile shows where Python code spends the CPU; SQLite's C code runs
with the GIL released and shows only as the per-thread CPU shares the storm measures
from /proc) in collapsed-stack "raw" format, aggregated by function, and stops it with
SIGINT, which makes py-spy write its file. ``summarize()`` turns that file into samples
by thread, top functions by self time and top project functions by inclusive time.
The raw file also opens as a flame graph in https://www.speedscope.app.
``thread_names()`` maps thread ids to Python thread names with one ``py-spy dump``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from procs import PYTHON, pinned, stop

INSTALL_HINT = ".venv/bin/pip install py-spy"
PROJECT = "notifier/"


def py_spy_path() -> str | None:
    beside_python = Path(PYTHON).parent / "py-spy"
    return str(beside_python) if beside_python.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def py_spy(pid: int, output: Path, core: int | None, log: Path) -> Iterator[Path | None]:
    """Profile ``pid`` while the block runs; yields the output path (None without py-spy)."""
    exe = py_spy_path()
    if exe is None:
        yield None
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--format", "raw", "--function", "--threads", "--gil"]
    argv += ["--rate", "200", "--output", str(output)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            pinned(argv, core), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        time.sleep(0.5)  # let py-spy attach before the load starts
        yield output
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
        stop(proc)


def _frame(frame: str) -> tuple[str, str]:
    """``name (path:line)`` -> (``name (short path)``, path)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = path if path.startswith(PROJECT) else "/".join(Path(path).parts[-2:])
    return (f"{name} ({short})" if short else name), path


def _parse(raw: Path) -> Iterator[tuple[str, list[tuple[str, str]], int]]:
    """(thread, frames outermost first, samples) per line of py-spy's raw output."""
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames.pop(0).partition(": ")[2] if frames[0].startswith("thread (") else "?"
        if frames:
            yield thread, [_frame(f) for f in frames], int(count)


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Samples by thread, top functions by self time, top project functions by inclusive time.

    Percentages are of all samples taken (with ``--gil``: of the time some thread held
    the GIL, i.e. ran Python code).
    """
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for thread, frames, count in _parse(raw):
        threads[thread] += count
        own[frames[-1][0]] += count
        for name in {name for name, path in frames if path.startswith(PROJECT)}:
            inclusive[name] += count
    total = sum(threads.values())
    if not total:
        return {}

    def ranked(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "threads": ranked(threads),
        "self": ranked(own),
        "inclusive (project code)": ranked(inclusive),
    }


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by thread id, from one ``py-spy dump`` (empty without py-spy)."""
    exe = py_spy_path()
    if exe is None:
        return {}
    try:
        answer = subprocess.run(
            [exe, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names = {}
    for match in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', answer.stdout, re.MULTILINE):
        names[int(match.group(1))] = match.group(2)
    return names


# The parts of the service a sample is charged to. First the specific parts, most specific
# first: a sample goes to the first one any of its frames matches (so logging or metrics
# called from anywhere count as logging or metrics, a pydantic parse inside a claim counts
# as the claim). A rule is (part, substring of the frame's file path, function names or
# None for any).
_SPECIFIC: list[tuple[str, str, frozenset[str] | None]] = [
    ("logging", "/logging/", None),
    ("logging", "notifier/logs.py", None),
    ("metrics", "prometheus_client/", None),
    ("metrics", "notifier/metrics.py", None),
    ("store enqueue", "notifier/store/", frozenset({"enqueue", "_enqueue"})),
    ("claim", "notifier/store/", frozenset({"claim", "_claim"})),
    ("claim", "notifier/dispatcher.py", frozenset({"_claim", "_claim_until_it_works"})),
    ("completion write", "notifier/store/", frozenset({"complete", "_complete"})),
    ("completion write", "notifier/delivery.py", frozenset({"_write", "_delivered"})),
    # Redis: the calls of one loop turn go out together from the batcher's own task.
    ("Redis client: pipelined script calls", "notifier/store/redis_batch.py", None),
    ("store, other (wake-ups, next_due_at, release)", "notifier/store/", None),
    ("validation (pydantic)", "pydantic/", None),
    ("validation (pydantic)", "notifier/payload.py", None),
    ("planning / dedup", "notifier/routing.py", None),
    ("planning / dedup", "notifier/dedup.py", None),
    ("planning / dedup", "notifier/runtime.py", frozenset({"ingest", "_new_job_id"})),
    ("rendering", "jinja2/", None),
    ("rendering", "notifier/templates.py", None),
    ("delivery HTTP client", "notifier/channels/", None),
    ("delivery HTTP client", "aiohttp/client", None),
    ("delivery HTTP client", "aiohttp/connector", None),
]
# Then the frameworks every sample runs under: the innermost frame that matches decides
# (aiohttp's server code vs our middlewares and handler around it, vs the loop itself).
_INNERMOST: list[tuple[str, str]] = [
    ("HTTP server: aiohttp", "aiohttp/"),
    ("HTTP server: notifier middlewares, handler", "notifier/server.py"),
    ("dispatcher, delivery bookkeeping", "notifier/dispatcher.py"),
    ("dispatcher, delivery bookkeeping", "notifier/delivery.py"),
    ("event loop", "asyncio/"),
    ("event loop", "selectors.py"),
]
UNSAMPLED = "native, GIL released (unsampled)"
# SQLite's threads run the SQL of every store call (enqueue, claim, completion) and the
# commits, mostly in C with the GIL released: their samples cannot tell the calls apart,
# so their whole CPU time is one part.
SQLITE_THREADS = ("notifier-sqlite-", "SQLite threads: SQL and commits of every store call")


def _part(frames: list[tuple[str, str]]) -> str:
    names = [(name.partition(" (")[0].rpartition(".")[2], path) for name, path in frames]
    for part, where, functions in _SPECIFIC:
        for function, path in names:
            if where in path and (functions is None or function in functions):
                return part
    for _function, path in reversed(names):
        for part, where in _INNERMOST:
            if where in path:
                return part
    return "other"


def parts_per_notification(
    raw: Path, thread_cpu_s: dict[int, float], notifications: int
) -> dict[str, float]:
    """CPU µs per notification by part of the service, from the profile and /proc.

    Each thread's CPU time over the storm (``thread_cpu_s``, by thread id) is split over
    the parts in proportion to that thread's samples. With ``--gil`` a thread is sampled
    only while it holds the GIL, so its native time with the GIL released (SQLite's C
    code, socket syscalls) is spread over its parts in the same proportions; a thread
    never sampled is ``UNSAMPLED``.
    """
    samples: dict[int, Counter[str]] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        match = re.match(r"thread \((\d+)\): ([^;]*)", stack)
        if not match or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")[1:]]
        if match.group(2).startswith(SQLITE_THREADS[0]):
            part = SQLITE_THREADS[1]
        elif frames:
            part = _part(frames)
        else:
            continue
        samples.setdefault(int(match.group(1)), Counter())[part] += int(count)
    parts: Counter[str] = Counter()
    for tid, seconds in thread_cpu_s.items():
        us = seconds * 1e6 / max(notifications, 1)
        counted = samples.get(tid)
        if not counted:
            parts[UNSAMPLED] += us
            continue
        total = sum(counted.values())
        for part, n in counted.items():
            parts[part] += us * n / total
    return {part: round(us, 1) for part, us in parts.most_common()}
