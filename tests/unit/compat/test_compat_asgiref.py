"""The asgiref internal hybrid declares, on the version installed here.

``sync_to_async`` called inside an ``except`` block hands the exception to the executor's
thread (:mod:`hybrid._compat.asgiref`); a lane gives the exception its own traceback back
once the job is over, so that nothing of the caller is left in a reference cycle. The
probe passes on the supported version, and fails in one line when the internal changes.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import importlib.metadata
import sys
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async

import hybrid
from hybrid._compat import MODULES, check
from hybrid._compat import asgiref as asgiref_compat
from hybrid.errors import UnsupportedVersionError
from hybrid.lanes import Lane, LanePool, lane_context


def test_the_probe_passes_on_the_installed_version_a_verified_one() -> None:
    library = asgiref_compat.library()
    assert library is not None and library.distribution == "asgiref"
    assert ".".join(importlib.metadata.version("asgiref").split(".")[:2]) in library.verified
    assert all(internal.present() for internal in library.internals)
    assert all(internal.reason and "\n" not in internal.reason for internal in library.internals)
    assert "hybrid._compat.asgiref" in MODULES
    check()


def test_a_thread_handler_that_changed_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def thread_handler(self: Any, loop: Any, task_context: Any, func: Any) -> Any:
        raise AssertionError("not called")

    monkeypatch.setattr(SyncToAsync, "thread_handler", thread_handler)
    with pytest.raises(UnsupportedVersionError) as info:
        check()
    assert info.value.library == "asgiref"
    assert [m.split(" (")[0] for m in info.value.missing] == [
        "asgiref.sync.SyncToAsync.thread_handler(self, loop, exc_info, ...)"
    ]
    assert str(info.value).endswith("pip install 'asgiref>=3.13,<4'")


def test_a_thread_handler_gone_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(SyncToAsync, "thread_handler")
    with pytest.raises(UnsupportedVersionError, match=r"SyncToAsync\.thread_handler"):
        check()


# -- what sync_to_async hands over ---------------------------------------------------


class Recording(ThreadPoolExecutor):
    """An executor that keeps every job it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.jobs: list[Callable[..., Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.jobs.append(fn)
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def recording() -> Iterator[Recording]:
    executor = Recording()
    yield executor
    executor.shutdown()


async def _call_in_except(executor: ThreadPoolExecutor, fn: Callable[[], Any]) -> Any:
    try:
        raise KeyError("handled")
    except KeyError:
        return await sync_to_async(fn, thread_sensitive=False, executor=executor)()


def test_the_exception_being_handled_is_found_in_the_job(recording: Recording) -> None:
    async def main() -> tuple[BaseException | None, Any]:
        seen = await _call_in_except(recording, lambda: sys.exc_info()[1])
        plain = await sync_to_async(lambda: None, thread_sensitive=False, executor=recording)()
        return seen, plain

    seen, _ = asyncio.run(main())
    handed = asgiref_compat.handed_exception(recording.jobs[0])
    assert handed is not None
    exception, traceback = handed
    assert isinstance(exception, KeyError) and exception is seen
    assert traceback is not None and traceback.tb_frame.f_code.co_name == "_call_in_except"
    assert asgiref_compat.handed_exception(recording.jobs[1]) is None  # no exception
    assert asgiref_compat.handed_exception(lambda: None) is None


class Token:
    """Something only the caller's frame refers to."""


async def _caller(executor: ThreadPoolExecutor, seen: list[Any]) -> weakref.ref[Token]:
    token = Token()

    def inside() -> None:
        seen.append(repr(sys.exc_info()[1]))  # what the sync function sees while it runs

    try:
        raise KeyError("handled")
    except KeyError as error:
        await sync_to_async(inside, thread_sensitive=False, executor=executor)()
        seen.append(_frames(error))
    return weakref.ref(token)


def _frames(error: BaseException) -> list[str]:
    """The names of the functions in ``error``'s traceback, outermost first."""
    names = []
    traceback = error.__traceback__
    while traceback is not None:
        names.append(traceback.tb_frame.f_code.co_name)
        traceback = traceback.tb_next
    return names


def _survivor(executor: ThreadPoolExecutor, seen: list[Any]) -> bool:
    """Whether the caller's frame outlives the call when only reference counting frees."""
    gc.collect()
    gc.disable()
    try:
        token = asyncio.run(_caller(executor, seen))
        alive = token() is not None
    finally:
        gc.enable()
        gc.collect()
    return alive


def test_a_lane_leaves_no_cycle_and_the_function_still_sees_the_exception() -> None:
    plain = ThreadPoolExecutor(max_workers=1)
    lane = Lane("hybrid-db-test")
    try:
        assert _survivor(plain, []) is True  # asgiref alone: held in a cycle
        seen: list[Any] = []
        assert _survivor(lane, seen) is False
    finally:
        plain.shutdown()
        lane.shutdown()
    assert seen == ["KeyError('handled')", ["_caller"]]


def test_a_request_lane_leaves_no_cycle() -> None:
    async def request() -> weakref.ref[Token]:
        pool = LanePool(1)
        try:
            async with lane_context(pool):
                token = Token()
                try:
                    raise KeyError("handled")
                except KeyError:
                    await sync_to_async(lambda: None, thread_sensitive=True)()
                return weakref.ref(token)
        finally:
            await pool.aclose()

    gc.collect()
    gc.disable()
    try:
        assert asyncio.run(request())() is None
    finally:
        gc.enable()


def test_an_exception_the_job_raises_keeps_its_traceback() -> None:
    def fails() -> None:
        raise ValueError("from the job")

    lane = Lane("hybrid-db-test")
    try:
        with pytest.raises(ValueError, match="from the job") as info:
            asyncio.run(_call_in_except(lane, fails))
    finally:
        lane.shutdown()
    assert "fails" in _frames(info.value)
    assert isinstance(info.value.__context__, KeyError)
    assert _frames(info.value.__context__) == ["_call_in_except"]


def test_only_the_compat_module_names_the_thread_handler() -> None:
    package = Path(hybrid.__file__).parent
    offenders = [
        f"{path.relative_to(package)}:{getattr(node, 'lineno', 0)}"
        for path in sorted(package.rglob("*.py"))
        if path.parent.name != "_compat"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if (isinstance(node, ast.Attribute) and node.attr == "thread_handler")
        or (isinstance(node, ast.Constant) and node.value == "thread_handler")
    ]
    assert offenders == []
