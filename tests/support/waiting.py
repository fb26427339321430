"""Waiting on a condition, not on the clock: :func:`wait_until` and its async twin :func:`until`.

A test that waits for something observable (a log line, a pid gone, a port answering, a
file written, a counter) polls for it with a bound, instead of sleeping a fixed time that
is too long on a fast machine and too short on a loaded one::

    pid = wait_until(lambda: new_pid(port), timeout=10, message=lambda: server.stderr)

The condition's first truthy value is returned. On timeout the test fails naming what was
awaited (the condition: a function's name, a lambda's source line), then ``message`` (a
string, or a callable called at that moment, for diagnostics such as the server's stderr),
then the last value the condition gave (or the exception it raised, for the exception
types in ``ignore``). The condition is called at least once, even with ``timeout=0``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Message = str | Callable[[], object] | None
Ignored = type[BaseException] | tuple[type[BaseException], ...]


def wait_until(
    condition: Callable[[], T],
    timeout: float = 10.0,
    *,
    interval: float = 0.05,
    message: Message = None,
    ignore: Ignored = (),
) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something truthy, and
    return that. Exceptions of the types in ``ignore`` count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value: object = condition()
        except ignore as exc:
            value = exc
        else:
            if value:
                return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(condition, timeout, value, message))
        time.sleep(interval)


async def until(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    *,
    interval: float = 0.05,
    message: Message = None,
    ignore: Ignored = (),
) -> T:
    """:func:`wait_until` for coroutines: sleeps with ``asyncio.sleep``, so the loop runs
    meanwhile; ``condition`` may also return an awaitable (an ``async def`` condition)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value: object = condition()
            if inspect.isawaitable(value):
                value = await value
        except ignore as exc:
            value = exc
        else:
            if value:
                return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(condition, timeout, value, message))
        await asyncio.sleep(interval)


def _timed_out(
    condition: Callable[..., object], timeout: float, last: object, message: Message
) -> str:
    lines = [f"not within {timeout:g}s: {_describe(condition)}", f"last value: {last!r}"]
    details = message() if callable(message) else message
    if details is not None:
        lines.insert(1, str(details))
    return "\n".join(lines)


def _describe(condition: Callable[..., object]) -> str:
    """A named function's name; a lambda's source line, as the caller wrote it."""
    name = getattr(condition, "__qualname__", repr(condition))
    if "<lambda>" not in name:
        return name
    try:
        return inspect.getsource(condition).strip()
    except (OSError, TypeError):
        return name
