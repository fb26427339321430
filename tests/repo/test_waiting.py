"""tests/support/waiting.py: the suite's one way to wait on a condition."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from waiting import until, wait_until


def test_returns_the_first_truthy_value() -> None:
    calls = itertools.count(1)
    assert wait_until(lambda: next(calls) >= 3 and "ready", timeout=5, interval=0) == "ready"
    assert next(calls) == 4  # called three times, no more


def test_times_out_naming_what_was_awaited_and_the_last_value() -> None:
    values = iter(range(1000))
    started = time.monotonic()
    with pytest.raises(AssertionError) as info:
        wait_until(lambda: next(values) < 0, timeout=0.2, interval=0.01, message="never negative")
    assert 0.2 <= time.monotonic() - started < 2
    text = str(info.value)
    assert text.startswith("not within 0.2s: ")
    assert "next(values) < 0" in text  # the lambda's source
    assert "never negative" in text
    assert text.endswith("last value: False")


def test_a_callable_message_is_called_on_timeout_only() -> None:
    log = ["booting"]

    def condition() -> bool:
        log.append("still booting")
        return False

    with pytest.raises(AssertionError, match="stderr:\nbooting\nstill booting\n"):
        wait_until(condition, timeout=0, message=lambda: "stderr:\n" + "\n".join(log))
    calls: list[str] = []
    assert wait_until(lambda: True, message=lambda: calls.append("called")) is True
    assert calls == []


def test_a_named_condition_is_described_by_its_name() -> None:
    def port_answers() -> bool:
        return False

    with pytest.raises(AssertionError, match="port_answers"):
        wait_until(port_answers, timeout=0, interval=0)


def test_the_condition_is_called_once_even_with_timeout_zero() -> None:
    calls: list[int] = []
    assert wait_until(lambda: calls.append(1) or len(calls), timeout=0) == 1
    with pytest.raises(AssertionError):
        wait_until(lambda: calls.append(1), timeout=0)
    assert calls == [1, 1]


def test_ignored_exceptions_count_as_not_yet_and_are_the_last_value() -> None:
    attempts = itertools.count()

    def connect() -> int:
        if next(attempts) < 2:
            raise ConnectionRefusedError("refused")
        return 200

    def refused() -> int:
        raise ConnectionRefusedError("refused")

    assert wait_until(connect, timeout=5, interval=0, ignore=OSError) == 200
    with pytest.raises(AssertionError, match=r"last value: ConnectionRefusedError\('refused'\)"):
        wait_until(lambda: connect() and refused(), timeout=0, ignore=OSError)
    with pytest.raises(ZeroDivisionError):  # not ignored: raised at once
        wait_until(lambda: 1 / 0, timeout=5, ignore=OSError)


def test_async_twin_lets_the_loop_run_and_awaits_async_conditions() -> None:
    async def scenario() -> tuple[object, object]:
        flag = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, flag.set)
        seen = await until(flag.is_set, timeout=5, interval=0.01)

        async def count_ready() -> int:
            await asyncio.sleep(0)
            return 3 if flag.is_set() else 0

        return seen, await until(count_ready, timeout=5)

    assert asyncio.run(scenario()) == (True, 3)


def test_async_twin_times_out_with_the_message() -> None:
    async def scenario() -> None:
        await until(lambda: [], timeout=0.05, interval=0.01, message=lambda: "no signal yet")

    with pytest.raises(AssertionError, match=r"no signal yet\nlast value: \[\]"):
        asyncio.run(scenario())
