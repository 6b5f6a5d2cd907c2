"""``first_then_retrying``: a bare first try, then tenacity's schedule counting that try."""

from __future__ import annotations

import pytest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from notifier.retrying import first_then_retrying


class Down(Exception):
    pass


class Flaky:
    """Raises the given errors in turn, then answers "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def retrying(pauses: list[float]) -> AsyncRetrying:
    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    return AsyncRetrying(
        retry=retry_if_exception_type(Down),
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.5, max=2.0),
        sleep=sleep,
        reraise=True,
    )


async def test_a_call_that_works_is_made_once_without_a_pause() -> None:
    pauses: list[float] = []
    call = Flaky()
    assert await first_then_retrying(call, retrying(pauses)) == "done"
    assert (call.calls, pauses) == (1, [])


async def test_the_first_failure_is_tenacitys_first_attempt() -> None:
    pauses: list[float] = []
    call = Flaky(Down("1"), Down("2"))
    assert await first_then_retrying(call, retrying(pauses)) == "done"
    assert (call.calls, pauses) == (3, [0.5, 1.0])


async def test_it_stops_after_the_last_attempt_with_the_last_failure() -> None:
    pauses: list[float] = []
    call = Flaky(*(Down(str(n)) for n in range(1, 10)))
    with pytest.raises(Down, match=r"^4$"):
        await first_then_retrying(call, retrying(pauses))
    assert (call.calls, pauses) == (4, [0.5, 1.0, 2.0])


@pytest.mark.parametrize("failures_before", [0, 1])
async def test_an_error_the_policy_does_not_retry_is_raised_at_once(failures_before: int) -> None:
    pauses: list[float] = []
    call = Flaky(*[Down("down")] * failures_before, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await first_then_retrying(call, retrying(pauses))
    assert call.calls == failures_before + 1
    assert pauses == [0.5] * failures_before


async def test_a_policy_given_as_a_function_is_built_only_after_a_failure() -> None:
    pauses: list[float] = []
    built: list[int] = []

    def build() -> AsyncRetrying:
        built.append(1)
        return retrying(pauses)

    assert await first_then_retrying(Flaky(), build) == "done"
    assert built == []
    assert await first_then_retrying(Flaky(Down("1")), build) == "done"
    assert (built, pauses) == ([1], [0.5])
