"""The Django fallback on the worker's lanes: sync streaming, async views on the loop."""

from __future__ import annotations

import json
import threading
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from hybrid import Config, make_app
from hybrid.web import HybridApplication


@pytest.fixture
def app(http_port: int) -> HybridApplication:
    return make_app(Config(db_threads=2), http_port)


@pytest.mark.gen_test(timeout=10)
async def test_sync_streaming_response_arrives_chunk_by_chunk(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    # Django's own ASGI handler reads a sync iterator to the end first (and warns, which
    # this suite turns into an error); hybrid pulls each chunk on the request's lane.
    arrivals: list[tuple[float, bytes]] = []
    await http_client.fetch(
        base_url + "/django/sync-stream",
        streaming_callback=lambda chunk: arrivals.append((time.monotonic(), chunk)),
    )
    assert b"".join(c for _, c in arrivals) == b"sync 0\nsync 1\nsync 2\n"
    assert len(arrivals) >= 3
    assert arrivals[-1][0] - arrivals[0][0] > 0.4


@pytest.mark.gen_test
async def test_async_views_run_on_the_loop_and_sync_views_on_lanes(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    on_async = json.loads((await http_client.fetch(base_url + "/django/async-thread")).body)
    on_sync = json.loads((await http_client.fetch(base_url + "/django/thread")).body)
    assert on_async["thread"] == threading.current_thread().name  # the test's loop thread
    assert on_sync["thread"].startswith("hybrid-db-")
