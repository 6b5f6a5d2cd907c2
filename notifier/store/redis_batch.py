"""Send the Redis script calls made in one event-loop turn as one pipeline.

The dispatcher finishes many jobs at once (a claimed batch completes together); one
round trip each would make the Redis store pay a network and client overhead per job.
``ScriptBatcher`` queues the calls of one turn and sends them together in a
non-transactional pipeline: each script stays atomic on its own and they run in the
order they were made; only the round trips are shared. Each caller gets its own result
or its own error.

Each call is an ``EVALSHA`` of the script's hash, not redis-py's ``Script`` call on the
pipeline: that one makes every pipeline ask Redis first whether its scripts exist (a
``SCRIPT EXISTS`` round trip per batch). A script Redis does not have (restarted, or
``SCRIPT FLUSH``) answers ``NOSCRIPT`` without running: it is loaded and those calls
are sent again.

It owns no store logic; ``RedisStore`` decides what to call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

_Call = tuple[AsyncScript, list[str], list[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Batches script calls per event-loop turn, up to ``max_batch`` per pipeline."""

    def __init__(self, client: aioredis.Redis, *, max_batch: int = 512) -> None:
        self._client = client
        self._max_batch = max_batch
        self._pending: list[_Call] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush_pending)  # after the others of this turn queue up
        self._pending.append((script, keys, args, future))
        if len(self._pending) >= self._max_batch:
            self._flush_pending()
        return await future

    def _flush_pending(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.create_task(self._send(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results = await self._execute(batch)
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:
                for script in {id(batch[i][0]): batch[i][0] for i in missing}.values():
                    script.sha = await self._client.script_load(script.script)
                again = await self._execute([batch[i] for i in missing])
                for i, result in zip(missing, again, strict=True):
                    results[i] = result
        except Exception as exc:  # the connection, for all of them; each caller maps it
            results = [exc] * len(batch)
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in batch:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results
