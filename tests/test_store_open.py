"""``open_store`` picks the implementation from ``storage.url``."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.config import LoadedConfig, load_config
from notifier.store import open_store
from notifier.store.memory import MemoryStore
from notifier.store.redis import RedisStore
from notifier.store.sqlite import SQLiteStore
from notifier.testing import TEMPLATES_DIR

TEMPLATES = TEMPLATES_DIR


def config_with(tmp_path: Path, url: str) -> LoadedConfig:
    path = tmp_path / "conf" / "notifier.yaml"
    path.parent.mkdir()
    path.write_text(
        f"""
storage: {{url: "{url}", delivery_log_size: 500}}
templates_dir: "{TEMPLATES}"
channels:
  console: {{type: log}}
default_channels: [console]
"""
    )
    return load_config(path, {})


def test_memory_url(tmp_path: Path) -> None:
    assert isinstance(open_store(config_with(tmp_path, "memory://")), MemoryStore)


@pytest.mark.parametrize(
    ("url", "relative"),
    [("sqlite:///data/n.db", "conf/data/n.db"), ("sqlite:////ABS/n.db", "ABS/n.db")],
)
def test_sqlite_url_resolves_against_the_config_folder(
    tmp_path: Path, url: str, relative: str
) -> None:
    store = open_store(config_with(tmp_path, url.replace("/ABS", str(tmp_path / "ABS"))))
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / relative
    assert not store.path.parent.exists()  # nothing is created before open()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/2", "rediss://:pw@redis.internal:6380/0"])
def test_redis_urls(tmp_path: Path, url: str) -> None:
    store = open_store(config_with(tmp_path, url))
    assert isinstance(store, RedisStore)
    assert store.prefix == "notifier:"
