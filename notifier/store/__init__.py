"""Choose the ``Store`` implementation named by ``storage.url``.

``open_store`` only builds the store; the caller ``open()``s and ``close()``s it. The
SQLite and Redis modules are imported on demand so that a deployment using one never
loads the other's driver.
"""

from __future__ import annotations

from notifier.config import LoadedConfig
from notifier.store.base import Store


def open_store(config: LoadedConfig) -> Store:
    """The store for ``config.config.storage.url``: ``sqlite:///``, ``memory://`` or ``redis(s)://``."""
    storage = config.config.storage
    url = storage.url
    if url.startswith("memory://"):
        from notifier.store.memory import MemoryStore

        return MemoryStore(delivery_log_size=storage.delivery_log_size)
    if url.startswith("sqlite:///"):
        from notifier.store.sqlite import SQLiteStore

        path = config.sqlite_path()
        assert path is not None  # the sqlite:/// scheme always has a path
        return SQLiteStore(path, delivery_log_size=storage.delivery_log_size)
    if url.startswith(("redis://", "rediss://")):
        from notifier.store.redis import RedisStore

        return RedisStore(url, delivery_log_size=storage.delivery_log_size)
    # StorageConfig validates the scheme, so this is a programming error.
    raise ValueError(f"unsupported storage url scheme: {url.partition('://')[0]!r}")
