"""``hybrid.tasks.wait`` against real Celery workers on a private Redis: the result, the
task's exception, timeouts, cancelling, one subscriber for many waiters, faults."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery.exceptions import TaskRevokedError
from celery_workers import CeleryWorker, on_loop
from conftest import RedisServer
from testproject.tasks import ShopClosed
from waiting import until, wait_until

import hybrid
import hybrid.tasks

Start = Callable[..., CeleryWorker]


def numsub(redis: RedisServer, worker: CeleryWorker, task_id: str) -> int:
    key = worker.app.backend.get_key_for_task(task_id)
    return int(redis.command("PUBSUB", "NUMSUB", key)[1])


@pytest.mark.gen_test(timeout=60)
async def test_wait_returns_the_task_return_value(redis: RedisServer, celery_worker: Start) -> None:
    worker = celery_worker(redis)
    async with on_loop():
        result = await hybrid.tasks.delay(worker.task("add"), 2, 3)
        assert await hybrid.tasks.wait(result, timeout=10) == 5


@pytest.mark.gen_test(timeout=60)
async def test_a_failed_task_raises_its_own_exception_with_the_remote_traceback(
    redis: RedisServer, celery_worker: Start
) -> None:
    worker = celery_worker(redis)
    async with on_loop():
        result = await hybrid.tasks.delay(worker.task("fail"), "out of stock")
        with pytest.raises(ShopClosed, match="out of stock") as info:
            await hybrid.tasks.wait(result, timeout=10)
    remote = info.value.remote_traceback  # type: ignore[attr-defined]
    assert "raise ShopClosed(reason)" in remote and "testproject/tasks.py" in remote
    assert any("raise ShopClosed(reason)" in note for note in info.value.__notes__)


@pytest.mark.gen_test(timeout=60)
async def test_a_task_past_the_timeout_raises_task_timeout_and_is_left_running(
    redis: RedisServer, celery_worker: Start
) -> None:
    worker = celery_worker(redis)
    async with on_loop():
        result = await hybrid.tasks.delay(worker.task("sleep"), 1.0, "finished")
        started = time.monotonic()
        with pytest.raises(hybrid.TaskTimeout) as info:
            await hybrid.tasks.wait(result, timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 1.0
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, hybrid.HybridError)
        assert info.value.task_id == result.id and info.value.timeout == 0.3
        assert "longer timeout" in str(info.value)
        assert await hybrid.tasks.wait(result, timeout=10) == "finished"


@pytest.mark.gen_test(timeout=60)
async def test_cancelling_a_waiter_leaves_the_task_running_and_unsubscribes(
    redis: RedisServer, celery_worker: Start
) -> None:
    worker = celery_worker(redis)
    async with on_loop():
        result = await hybrid.tasks.delay(worker.task("sleep"), 0.8, "still ran")
        waiter = asyncio.ensure_future(hybrid.tasks.wait(result, timeout=10))
        await until(lambda: numsub(redis, worker, result.id) == 1, message="subscribed")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await until(lambda: numsub(redis, worker, result.id) == 0, message="unsubscribed")
        assert await hybrid.tasks.wait(result, timeout=10) == "still ran"


@pytest.mark.gen_test(timeout=60)
async def test_revoke_on_cancel_revokes_the_task(redis: RedisServer, celery_worker: Start) -> None:
    worker = celery_worker(redis)
    async with on_loop():
        # Held by the worker until its ETA: revoked meanwhile, it never runs.
        later = await hybrid.tasks.apply_async(worker.task("sleep"), (0, "ran"), countdown=1.5)
        waiter = asyncio.ensure_future(hybrid.tasks.wait(later, timeout=10, revoke_on_cancel=True))
        await asyncio.sleep(0.2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        with pytest.raises(TaskRevokedError):
            await hybrid.tasks.wait(later, timeout=10)


@pytest.mark.gen_test(timeout=60)
async def test_an_already_finished_task_returns_at_once(
    redis: RedisServer, celery_worker: Start
) -> None:
    worker = celery_worker(redis)
    done = worker.task("add").delay(20, 22)
    done.get(timeout=10)
    async with on_loop():
        started = time.monotonic()
        assert await hybrid.tasks.wait(done, timeout=10) == 42
        assert time.monotonic() - started < 0.5


@pytest.mark.gen_test(timeout=120)
async def test_a_thousand_waiters_cost_no_thread_and_one_subscriber_connection(
    redis: RedisServer, celery_worker: Start
) -> None:
    worker = celery_worker(redis, pool="prefork", concurrency=2)
    async with on_loop():
        add = worker.task("add")
        results = await asyncio.gather(*(hybrid.tasks.delay(add, i, 1) for i in range(1000)))
        threads = threading.active_count()
        waiters = asyncio.gather(*(hybrid.tasks.wait(r, timeout=60) for r in results))
        subscriber = f"hybrid-tasks-sub-{os.getpid()}"
        peak = 0
        while not waiters.done():
            peak = max(peak, threading.active_count())
            names = redis.client_names()
            assert names.count(subscriber) <= 1, names
            await asyncio.sleep(0.05)
        assert await waiters == [i + 1 for i in range(1000)]
        assert peak <= threads and threading.active_count() == threads
        assert redis.client_names().count(subscriber) == 1


@pytest.mark.gen_test(timeout=90)
async def test_redis_killed_and_restarted_while_waiting(
    private_redis: RedisServer, celery_worker: Start, caplog: pytest.LogCaptureFixture
) -> None:
    worker = celery_worker(private_redis)
    caplog.set_level(logging.WARNING, logger="hybrid.general")
    async with on_loop():
        result = await hybrid.tasks.delay(worker.task("sleep"), 1.5, "survived")
        waiter = asyncio.ensure_future(hybrid.tasks.wait(result, timeout=15))
        await until(lambda: numsub(private_redis, worker, result.id) == 1, message="subscribed")
        private_redis.kill()
        await asyncio.sleep(0.5)
        private_redis.restart()
        started = time.monotonic()
        try:
            outcome: object = await waiter
        except hybrid.TaskTimeout as exc:  # a clear error, in time, is the other outcome
            outcome = exc
        assert outcome == "survived", f"{outcome!r}\n{worker.log}"
        assert time.monotonic() - started < 15
    assert "result backend Redis at" in caplog.text and "is back after" in caplog.text


@pytest.mark.gen_test(timeout=60)
async def test_a_prefork_child_killed_under_its_task_gives_worker_lost_error(
    redis: RedisServer, celery_worker: Start
) -> None:
    worker = celery_worker(redis, pool="prefork", concurrency=2)
    async with on_loop():
        result = await hybrid.tasks.delay(worker.task("sleep"), 30, "never")
        waiter = asyncio.ensure_future(hybrid.tasks.wait(result, timeout=20))
        await until(
            lambda: worker.app.AsyncResult(result.id).state == "STARTED" or _started(worker)
        )
        for child in _children(worker.proc.pid):
            os.kill(child, 9)
        started = time.monotonic()
        with pytest.raises(Exception) as info:
            await waiter
        assert type(info.value).__name__ == "WorkerLostError", info.value
        assert time.monotonic() - started < 10


@pytest.mark.gen_test(timeout=60)
async def test_a_worker_killed_under_its_task_ends_the_wait_at_the_timeout(
    redis: RedisServer, celery_worker: Start
) -> None:
    worker = celery_worker(redis)
    async with on_loop():
        result = await hybrid.tasks.delay(worker.task("sleep"), 30, "never")
        await asyncio.sleep(0.3)
        worker.kill()
        with pytest.raises(hybrid.TaskTimeout):
            await hybrid.tasks.wait(result, timeout=1.0)


def _started(worker: CeleryWorker) -> bool:
    time.sleep(0.3)  # the child picked the task up (prefork does not report STARTED)
    return True


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    wait_until(lambda: found, 5, message="pool children")
    return found
