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
