"""Store down: the receiver answers 503 (so Alertmanager retries) and readiness fails; when
the store comes back the service recovers by itself, the receiver and the dispatcher both.

The real app runs in-process on a SQLite file. Tests run as root, which ignores
permission bits, so the store is broken the way ``test_store_sqlite`` breaks it: the
immutable attribute (``chattr +i``) on the database and its WAL, which binds root too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.binaries import require_binary
from tests.conftest import TEMPLATES, AppFactory
from tests.processes import wait_until, webhook_payload

TOKEN = "store-down-token"
CONFIG = f"""
server: {{auth: {{bearer_token: "{TOKEN}"}}}}
storage: {{url: "sqlite:///data/notifier.db", lease: 5s}}
templates_dir: "{TEMPLATES}"
defaults: {{timeout: 2s}}
channels:
  console: {{type: log}}
default_channels: [console]
"""
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """Make ``paths`` unwritable even for root; skip where the filesystem can't."""
    require_binary("chattr", "e2fsprogs")
    try:
        chattr("+i", *paths)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"chattr +i is not supported here: {exc.stderr.decode().strip()}")
    try:
        yield
    finally:
        chattr("-i", *paths)


async def _store_up(client: Any) -> float:
    response = await client.get("/metrics")
    for line in (await response.text()).splitlines():
        if line.startswith("notifier_store_up "):
            return float(line.split()[1])
    raise AssertionError("notifier_store_up is not exported")


async def test_store_down_answers_503_and_recovers_by_itself(
    app_client: AppFactory, tmp_path: Path
) -> None:
    client = await app_client(CONFIG)
    post = client.post  # aiohttp's TestClient
    before = await post("/api/v1/alerts", json=webhook_payload("Before"), headers=AUTH)
    assert before.status == 202

    database = tmp_path / "data" / "notifier.db"
    wal = database.with_name(database.name + "-wal")
    assert database.is_file() and wal.is_file()
    # The -shm file is memory-mapped and must stay writable (see test_store_sqlite).
    with immutable(database, wal):
        down = await post("/api/v1/alerts", json=webhook_payload("During"), headers=AUTH)
        assert down.status == 503
        body = await down.json()
        assert set(body) == {"error", "details"} and "store" in body["error"]
        ready = await client.get("/-/ready")
        assert ready.status == 503
        assert (await ready.json())["error"] == "store unavailable"
        assert (await client.get("/-/healthy")).status == 200  # the process itself is fine
        assert await _store_up(client) == 0

    async def ready_again() -> bool:
        return (await client.get("/-/ready")).status == 200

    await wait_until(ready_again, "/-/ready to answer 200 again", timeout=10)
    after = await post("/api/v1/alerts", json=webhook_payload("After"), headers=AUTH)
    assert after.status == 202
    assert await _store_up(client) == 1

    async def both_delivered() -> bool:
        response = await client.get("/api/v1/deliveries", headers=AUTH)
        records = (await response.json())["deliveries"]
        return bool(sum(r["outcome"] == "delivered" for r in records) == 2)

    # The dispatcher, which met the broken store while claiming, delivers again too.
    await wait_until(both_delivered, "the jobs from before and after the outage", timeout=15)
