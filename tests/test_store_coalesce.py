"""``Coalescer``: what is added in one loop turn is written in one call, and every caller
hears how that write went."""

from __future__ import annotations

import asyncio

import pytest

from notifier.store.coalesce import Coalescer


class Writes:
    """Records each batch and settles it as told (at once, or with an error)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.error = error

    def __call__(self, values: list[int]) -> asyncio.Future[None]:
        self.batches.append(values)
        written = asyncio.get_running_loop().create_future()
        if self.error is None:
            written.set_result(None)
        else:
            written.set_exception(self.error)
        return written


async def test_values_added_in_one_turn_are_written_together() -> None:
    writes = Writes()
    coalescer = Coalescer[int](writes)

    await asyncio.gather(*(coalescer.add(i) for i in range(5)))
    await coalescer.add(5)

    assert writes.batches == [[0, 1, 2, 3, 4], [5]]


async def test_a_failed_write_fails_every_caller_of_its_batch() -> None:
    coalescer = Coalescer[int](Writes(OSError("disk full")))

    results = await asyncio.gather(*(coalescer.add(i) for i in range(3)), return_exceptions=True)

    assert [type(r) for r in results] == [OSError] * 3


async def test_a_write_that_cannot_start_fails_its_callers() -> None:
    def closed(values: list[int]) -> asyncio.Future[None]:
        raise RuntimeError("closed")

    with pytest.raises(RuntimeError, match="closed"):
        await Coalescer[int](closed).add(1)


async def test_a_cancelled_caller_leaves_the_others_waiting_for_the_write() -> None:
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[None]] = []

    def slow(values: list[int]) -> asyncio.Future[None]:
        pending.append(loop.create_future())
        return pending[-1]

    coalescer = Coalescer[int](slow)
    first = asyncio.create_task(coalescer.add(1))
    second = asyncio.create_task(coalescer.add(2))
    for _ in range(3):
        await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    pending[0].set_result(None)

    await second
    assert first.cancelled()
