"""The Redis store's fold reads, folds in Python, then writes in one checking script: a job
another replica claims in between sends the fold back to read again (DESIGN §10)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import redis

from notifier.digest import DigestFolder
from notifier.notification import Notification
from notifier.store.base import Fold
from notifier.store.redis import RedisStore
from tests.redis_server import fresh_prefix, require_redis
from tests.store_contract import planned


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    store = RedisStore(require_redis(), prefix=fresh_prefix())
    await store.open()
    yield store
    await store.delete_all_keys()
    await store.close()


async def test_a_job_claimed_between_read_and_write_is_not_folded(store: RedisStore) -> None:
    await store.enqueue([planned(f"a{i}") for i in range(3)], now=100.0)
    folder = DigestFolder("ops-slack", "slack", "s1", 100.0, 100.0, 100.0)
    calls: list[int] = []
    sync = redis.Redis.from_url(require_redis(), decode_responses=True)

    def claiming_first(waiting: Sequence[Notification]) -> Fold | None:
        if not calls:
            # Another replica claims a0 while this one builds the digest.
            sync.zrem(f"{store.prefix}due", "a0")
            sync.zadd(f"{store.prefix}leased", {"a0": 130.0})
        calls.append(len(waiting))
        return folder(waiting)

    fold = await store.fold("ops-slack", now=100.0, folder=claiming_first)
    sync.close()

    assert calls == [3, 2]  # read again after the script refused the first fold
    assert fold is not None
    assert fold.folded == ("a1", "a2")
    assert sorted(r.job_id for r in await store.deliveries()) == ["a1", "a2"]
    assert await store.waiting("ops-slack", now=100.0) == 1  # the digest; a0 is leased
