"""Runs the one store contract (``tests/store_contract.py``) against every implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.store.base import Store
from notifier.store.memory import MemoryStore
from notifier.store.redis import RedisStore
from notifier.store.sqlite import SQLiteStore
from tests.deferral_contract import DeferralContract
from tests.heartbeat_contract import HeartbeatContract
from tests.redis_server import fresh_prefix, require_redis
from tests.store_contract import DELIVERY_LOG_SIZE, StoreContract


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore(delivery_log_size=DELIVERY_LOG_SIZE)
    elif request.param == "sqlite":
        sqlite = SQLiteStore(
            tmp_path / "new-folder" / "notifier.db", delivery_log_size=DELIVERY_LOG_SIZE
        )
        await sqlite.open()
        yield sqlite
        await sqlite.close()
    else:
        redis = RedisStore(
            require_redis(), prefix=fresh_prefix(), delivery_log_size=DELIVERY_LOG_SIZE
        )
        await redis.open()
        yield redis
        await redis.delete_all_keys()
        await redis.close()


class TestStoreContract(StoreContract, DeferralContract):
    pass


class TestHeartbeatContract(HeartbeatContract):
    pass
