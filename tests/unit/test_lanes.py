"""Database threads (lanes): bounded, long-lived, one per request, signals on the lane."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import signals
from django.test import override_settings
from testproject.settings import DJANGO_MIDDLEWARE
from tornado.httpclient import AsyncHTTPClient
from waiting import until

from hybrid import Config, make_app, run_sync
from hybrid.lanes import LanePool, RequestLanes, current_lane, lane_context, lane_pool
from hybrid.web import HybridApplication

ROUTES = "testproject.bridge_routes.routes"
POOL = 4


@pytest.fixture
def app(http_port: int, request: pytest.FixtureRequest) -> Iterator[HybridApplication]:
    """The test project's app with the bridge routes; ``indirect`` params give its Config."""
    config = getattr(request, "param", Config(db_threads=POOL))
    with override_settings(HYBRID_ROUTES=ROUTES):
        yield make_app(config, http_port)


@pytest.fixture
def signal_threads() -> Iterator[list[tuple[str, str]]]:
    """(signal, thread name) for every request_started / request_finished sent."""
    seen: list[tuple[str, str]] = []

    def started(**kwargs: Any) -> None:
        seen.append(("started", threading.current_thread().name))

    def finished(**kwargs: Any) -> None:
        seen.append(("finished", threading.current_thread().name))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield seen
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


async def settle(seen: list[tuple[str, str]]) -> None:
    """Wait until the signals of earlier tests' requests have stopped coming, then forget
    them: request_finished is sent when a response is out, just after the client has it."""
    while True:
        count = len(seen)
        await asyncio.sleep(0.1)
        if len(seen) == count:
            seen.clear()
            return


async def get_json(client: AsyncHTTPClient, url: str) -> Any:
    return json.loads((await client.fetch(url)).body)


@pytest.mark.gen_test(timeout=20)
async def test_concurrent_queries_run_pool_size_at_a_time(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    await get_json(http_client, base_url + "/bridge/slow?s=0")  # warm up
    started = time.monotonic()
    answers = await asyncio.gather(
        *(get_json(http_client, base_url + "/bridge/slow?s=0.2") for _ in range(20))
    )
    took = time.monotonic() - started
    rounds = math.ceil(20 / POOL)  # 5 rounds of 0.2 s: 1.0 s, where one thread takes 4 s
    assert 0.2 * rounds - 0.05 <= took < 0.2 * rounds + 0.8, f"took {took:.2f}s"
    threads = {answer["thread"] for answer in answers}
    assert len(threads) == POOL
    assert all(name.startswith("hybrid-db-") for name in threads)


@pytest.mark.gen_test
async def test_a_request_keeps_one_thread_for_all_its_orm_calls(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    answers = await asyncio.gather(
        *(get_json(http_client, base_url + "/bridge/threads") for _ in range(8))
    )
    for answer in answers:
        assert len(answer["threads"]) == 1
        assert answer["threads"][0].startswith("hybrid-db-")


@pytest.mark.gen_test
async def test_atomic_block_through_run_sync_commits_or_rolls_back(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    kept = await http_client.fetch(base_url + "/bridge/atomic?name=kept", method="POST", body="")
    assert json.loads(kept.body) == {"count": 2}
    undone = await http_client.fetch(
        base_url + "/bridge/atomic?name=undone&fail=1", method="POST", body="", raise_error=False
    )
    assert undone.code == 409
    assert json.loads(undone.body) == {"count": 0}


@pytest.mark.gen_test
async def test_sync_django_views_run_on_the_lanes_not_new_threads(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    before = set(threading.enumerate())
    answers = await asyncio.gather(
        *(get_json(http_client, base_url + "/django/thread") for _ in range(30))
    )
    names = {answer["thread"] for answer in answers}
    assert names <= {f"hybrid-db-{n}_0" for n in range(POOL)}
    # Django's own ASGI entry point would have started a ThreadPoolExecutor per request.
    new = {thread.name for thread in set(threading.enumerate()) - before}
    assert all(name.startswith(("hybrid-db-", "asyncio_")) for name in new), new


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/bridge/db", "/django/thread", "/django/async"])
async def test_request_signals_are_sent_on_the_lane(
    http_client: AsyncHTTPClient, base_url: str, signal_threads: list[tuple[str, str]], path: str
) -> None:
    await settle(signal_threads)
    await http_client.fetch(base_url + path)
    await until(lambda: len(signal_threads) == 2, timeout=5, interval=0.01)
    kinds = [kind for kind, _ in signal_threads]
    assert kinds == ["started", "finished"]
    threads = {thread for _, thread in signal_threads}
    assert len(threads) == 1 and threads.pop().startswith("hybrid-db-")


@pytest.mark.gen_test
@pytest.mark.parametrize("app", [Config(db_threads=POOL, request_signals=False)], indirect=True)
async def test_request_signals_can_be_switched_off_for_handlers(
    app: HybridApplication,
    http_client: AsyncHTTPClient,
    base_url: str,
    signal_threads: list[tuple[str, str]],
) -> None:
    assert app.config.request_signals is False
    await settle(signal_threads)
    response = await http_client.fetch(base_url + "/bridge/db")
    await asyncio.sleep(0.05)  # a stray signal would come by now: an absence has nothing to await
    assert response.code == 200
    assert signal_threads == []


@pytest.mark.gen_test
async def test_run_sync_outside_a_request_leases_a_lane() -> None:
    assert current_lane() is None
    name = await run_sync(lambda: threading.current_thread().name)
    assert name.startswith("hybrid-db-")
    assert lane_pool().busy == 0


@pytest.mark.gen_test
async def test_pool_hands_lanes_out_first_come_first_served() -> None:
    pool = LanePool(2)
    first, second = await pool.acquire(), await pool.acquire()
    assert first is not second and pool.busy == 2
    waiting = [asyncio.ensure_future(pool.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    assert pool.waiting == 3
    waiting[0].cancel()  # a request that gave up while waiting takes nothing
    await asyncio.sleep(0)
    pool.release(first)
    assert await waiting[1] is first
    pool.release(second)
    assert await waiting[2] is second
    pool.release(first)
    pool.release(second)
    assert pool.busy == 0 and pool.waiting == 0
    await pool.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.acquire()


def _connect() -> tuple[Any, threading.Thread]:
    """On a lane: open its thread's connection; that connection and the thread."""
    from django.db import connections

    connections["default"].ensure_connection()
    return connections["default"], threading.current_thread()


@pytest.mark.gen_test
@pytest.mark.parametrize("closed", ["aclose", "dropped"])
async def test_a_pool_closes_its_connections_on_their_threads(closed: str) -> None:
    pool = LanePool(2)
    async with lane_context(pool):
        wrapper, thread = await run_sync(_connect)
    assert wrapper.connection is not None and thread.name.startswith("hybrid-db-")
    if closed == "aclose":
        await pool.aclose()
        assert wrapper.connection is None
    else:  # its loop closed, a test's own pool: garbage without aclose()
        del pool
        gc.collect()
        await until(lambda: wrapper.connection is None, timeout=5)
    await until(lambda: not thread.is_alive(), timeout=5)


@pytest.mark.gen_test
async def test_a_pool_dropped_in_a_forked_child_leaves_its_lanes_alone() -> None:
    pool = LanePool(1)
    async with lane_context(pool):
        await run_sync(_connect)
    lane = pool._lanes[0]
    pid = os.fork()
    if pid == 0:  # the child: no lane thread here; touching the executor could block
        del pool
        gc.collect()
        try:
            lane.submit(int)  # refused once the lane is shut down
        except RuntimeError:
            os._exit(1)
        os._exit(0)

    def reaped() -> tuple[int, int] | None:
        found, status = os.waitpid(pid, os.WNOHANG)
        return (found, status) if found == pid else None

    _, status = await until(reaped, timeout=5)
    await pool.aclose()
    assert os.waitstatus_to_exitcode(status) == 0


def test_default_pool_size_follows_the_connection_budget() -> None:
    assert Config(ports=(8001,)).db_thread_count == 8
    assert Config(ports=tuple(range(8001, 8013))).db_thread_count == 4  # 4 x 12 x 2 <= 100
    assert Config(ports=tuple(range(8001, 8101))).db_thread_count == 1
    assert Config(db_threads=3).db_thread_count == 3
    assert Config.from_sources({}, {"HYBRID_DB_THREADS": "5"}).db_thread_count == 5


# -- lanes are leased lazily: at a request's first thread-sensitive call ---------------

#: Django's startproject middleware: all of it runs on the loop (the test project adds a
#: sync-only middleware of its own, which needs the request's thread from the start).
DEFAULT_MIDDLEWARE = DJANGO_MIDDLEWARE


@pytest.mark.gen_test(timeout=20)
@override_settings(MIDDLEWARE=DEFAULT_MIDDLEWARE)
async def test_requests_awaiting_other_io_do_not_hold_database_threads(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    await get_json(http_client, base_url + "/bridge/nap?s=0")  # warm up
    started = time.monotonic()
    answers = await asyncio.gather(  # 10: AsyncHTTPClient's max_clients
        *(get_json(http_client, base_url + "/bridge/nap?s=0.5") for _ in range(10))
    )
    took = time.monotonic() - started
    # Holding one of the 4 lanes each, 10 requests would take 3 rounds (1.5 s).
    assert took < 0.5 * 2, f"took {took:.2f}s"
    assert not any(answer["leased_before_query"] for answer in answers)
    assert lane_pool(POOL).busy == 0


@pytest.mark.gen_test(timeout=20)
@override_settings(MIDDLEWARE=DEFAULT_MIDDLEWARE)
async def test_a_request_leases_its_lane_at_its_first_query(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    answer = await get_json(http_client, base_url + "/bridge/nap?s=0.05&query=1")
    assert answer["leased_before_query"] is False
    assert answer["leased_after_query"] is True
    # 8 requests napping 0.5 s then querying: the naps overlap, the 4 lanes serve the
    # queries (leased for the whole request, they would take 2 rounds: 1 s).
    started = time.monotonic()
    await asyncio.gather(
        *(get_json(http_client, base_url + "/bridge/nap?s=0.5&query=1") for _ in range(8))
    )
    took = time.monotonic() - started
    assert took < 0.9, f"took {took:.2f}s"


@pytest.mark.gen_test
async def test_lazy_lane_queues_jobs_while_all_lanes_are_busy() -> None:
    from hybrid.lanes import LazyLane

    pool = LanePool(1)
    holder = await pool.acquire()
    order: list[str] = []
    lazy = LazyLane(pool, on_lease=lambda: order.append("lease " + threading.current_thread().name))
    loop = asyncio.get_running_loop()
    jobs = [
        loop.run_in_executor(lazy, lambda n=n: order.append(f"job {n}") or n)  # type: ignore[func-returns-value]
        for n in range(3)
    ]
    await until(lambda: pool.waiting == 1, timeout=5)
    assert order == [] and lazy.lane is None  # nothing ran yet
    pool.release(holder)
    assert await asyncio.gather(*jobs) == [0, 1, 2]
    assert order[0].startswith("lease hybrid-db-")  # on_lease first, on the lane
    assert order[1:] == ["job 0", "job 1", "job 2"]
    finished = threading.Event()
    lazy.release(then=finished.set)  # runs on the lane after the request's last job
    assert await loop.run_in_executor(None, finished.wait, 5)
    assert pool.busy == 0
    await pool.aclose()


@pytest.mark.gen_test
async def test_a_request_that_ends_while_waiting_for_a_lane_takes_none() -> None:
    from hybrid.lanes import LazyLane

    pool = LanePool(1)
    holder = await pool.acquire()
    lazy = LazyLane(pool)
    job = asyncio.get_running_loop().run_in_executor(lazy, time.sleep, 0)
    await asyncio.sleep(0)
    assert pool.waiting == 1
    lazy.release()  # the request ended (client gone): its queued job is dropped
    assert pool.waiting == 0
    with pytest.raises(asyncio.CancelledError):
        await job
    pool.release(holder)
    assert pool.busy == 0  # the lane went back to the pool, not to the ended request
    with pytest.raises(RuntimeError, match="released"):
        lazy.submit(time.sleep, 0)
    await pool.aclose()


@pytest.mark.gen_test
async def test_the_lane_connection_is_closed_at_request_end_without_a_signal_hop(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    from django.db import connection

    from hybrid.bridge.hygiene import request_hygiene

    assert request_hygiene(None) is not None  # only Django's receivers: the cheap path
    await get_json(http_client, base_url + "/bridge/db")
    pool = lane_pool(POOL)
    loop = asyncio.get_running_loop()

    async def every_lane_closed() -> bool:
        return not any(
            [
                await loop.run_in_executor(lane, lambda: connection.connection is not None)
                for lane in pool._lanes
            ]
        )

    # CONN_MAX_AGE = 0: Django closes the connection when the request finishes, with
    # close_old_connections queued on the lane, not awaited.
    await until(every_lane_closed, timeout=5)


def test_other_receivers_make_the_bridge_send_the_signals(
    signal_threads: list[tuple[str, str]],
) -> None:
    from hybrid.bridge.hygiene import request_hygiene

    assert request_hygiene(None) is None


@pytest.mark.gen_test
async def test_request_lanes_route_thread_sensitive_calls_to_each_requests_own_lane() -> None:
    from asgiref.sync import sync_to_async

    pool = LanePool(2)
    ident = sync_to_async(threading.get_ident, thread_sensitive=True)
    started = asyncio.Event()

    async def request() -> tuple[int, int, Any]:
        lanes = RequestLanes(pool)
        try:
            first = await ident()
            started.set()
            await asyncio.sleep(0.01)  # the other request runs meanwhile
            leftover = asyncio.ensure_future(asyncio.sleep(0.05))
            return first, await ident(), asyncio.ensure_future(straggler(leftover))
        finally:
            lanes.close()

    async def straggler(wait: Any) -> int:
        await wait
        return await ident()  # after its request ended

    (a1, a2, late_a), (b1, b2, late_b) = await asyncio.gather(request(), request())
    assert a1 == a2 and b1 == b2  # one thread per request, for all its calls
    assert a1 != b1  # each request its own lane
    assert threading.get_ident() not in (a1, b1)
    for late in (late_a, late_b):
        with pytest.raises(RuntimeError, match="request is over"):
            await late
    assert current_lane() is None
    await pool.aclose()
