"""Connection hygiene and the bounded ORM on a real MariaDB, through the real ``hybrid serve``.

Every test here starts ``scripts/mariadb`` (once per session, the ``mariadb`` fixture) and
the test project with ``settings_mysql``: ``CONN_MAX_AGE = 60``, ``CONN_HEALTH_CHECKS``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import HybridProcess, MariaDB, hybrid_env
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from waiting import wait_until

#: Requests for the leak test. 10,000 take ~20 s on 2 cores; 2,000 show the
#: same plateau (every lane's connection is reused from the first requests on).
#: ``HYBRID_LEAK_REQUESTS=10000 pytest tests/e2e/test_hygiene.py`` runs the full count.
LEAK_REQUESTS = int(os.environ.get("HYBRID_LEAK_REQUESTS", "2000"))


@pytest.fixture
def serve_mysql(
    hybrid_serve: Callable[..., HybridProcess], mariadb: MariaDB
) -> Callable[..., HybridProcess]:
    def start(*args: str, ports: list[int]) -> HybridProcess:
        # These tests are about the database threads (lanes): keep the async ORM on them
        # (tests/e2e/test_db_pool.py covers the native aiomysql path).
        return hybrid_serve(
            "--native-mysql",
            "false",
            *args,
            ports=ports,
            settings="testproject.settings_mysql",
            env=hybrid_env(**mariadb.env),
        )

    return start


@pytest.fixture
def short_wait_timeout(mariadb: MariaDB) -> Iterator[None]:
    """MariaDB drops connections idle for 2 s (those opened from now on)."""
    mariadb.query("SET GLOBAL wait_timeout=2")
    yield
    mariadb.query("SET GLOBAL wait_timeout=28800")


def connections_after(mariadb: MariaDB, marker: int) -> list[int]:
    """Client connections opened after connection ``marker`` (MariaDB numbers them in
    order), this question's own excluded."""
    rows = mariadb.query(
        "SELECT ID FROM information_schema.PROCESSLIST"
        f" WHERE ID > {marker} AND ID <> CONNECTION_ID()"
    )
    return [int(row[0]) for row in rows]


def wait_dropped(mariadb: MariaDB, marker: int, server: HybridProcess) -> None:
    """Wait until the server has dropped every connection opened after ``marker``: the
    lane's, idle past ``wait_timeout``."""
    assert connections_after(mariadb, marker), "the lane opened no connection"
    wait_until(
        lambda: not connections_after(mariadb, marker),
        10,
        interval=0.2,
        message=lambda: (
            f"connections left: {connections_after(mariadb, marker)}\n" + server.stderr[-3000:]
        ),
    )


def threads_connected(mariadb: MariaDB) -> int:
    """Client connections to the server, this question's own excluded."""
    rows = mariadb.query("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
    return int(rows[0][1]) - 1


def get(url: str) -> tuple[int, bytes]:
    async def fetch() -> HTTPResponse:
        return await AsyncHTTPClient().fetch(url, raise_error=False)

    response = asyncio.run(fetch())
    return response.code, response.body


@pytest.mark.usefixtures("short_wait_timeout")
def test_stale_connection_is_replaced_before_the_next_request(
    serve_mysql: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    mariadb: MariaDB,
) -> None:
    server = serve_mysql("--db-threads", "1", ports=free_ports(1))
    url = server.url(server.ports[0], "/bridge/db")
    marker = mariadb.query("SELECT CONNECTION_ID()")[0][0]
    assert get(url)[0] == 200  # the lane's connection opens, with wait_timeout=2
    wait_dropped(mariadb, marker, server)  # ... and the server drops it
    code, body = get(url)
    assert code == 200, body
    assert "gone away" not in server.stderr


@pytest.mark.usefixtures("short_wait_timeout")
def test_without_request_signals_the_stale_connection_fails(
    serve_mysql: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    mariadb: MariaDB,
) -> None:
    """The negative control: what every Tornado + Django server without hygiene does."""
    server = serve_mysql("--db-threads", "1", "--request-signals", "false", ports=free_ports(1))
    url = server.url(server.ports[0], "/bridge/db")
    marker = mariadb.query("SELECT CONNECTION_ID()")[0][0]
    assert get(url)[0] == 200
    wait_dropped(mariadb, marker, server)
    assert get(url)[0] == 503  # a lost connection is answered as an outage, logged once
    assert 'OperationalError: (2006, "MySQL server has gone away' in server.stderr


def test_concurrent_queries_run_pool_size_at_a_time(
    serve_mysql: Callable[..., HybridProcess], free_ports: Callable[[int], list[int]]
) -> None:
    server = serve_mysql("--db-threads", "4", ports=free_ports(1))
    url = server.url(server.ports[0], "/bridge/slow?s=0.2")

    async def burst() -> tuple[float, list[Any]]:
        client = AsyncHTTPClient(max_clients=20)
        await client.fetch(url.replace("0.2", "0"))  # open the connections first
        started = time.monotonic()
        responses = await asyncio.gather(*(client.fetch(url) for _ in range(20)))
        return time.monotonic() - started, [json.loads(r.body) for r in responses]

    took, answers = asyncio.run(burst())
    rounds = math.ceil(20 / 4)  # SELECT SLEEP(0.2) x 20 on 4 threads: 1.0 s, not 4 s
    assert 0.2 * rounds - 0.05 <= took < 0.2 * rounds + 0.8, f"took {took:.2f}s"
    assert len({answer["thread"] for answer in answers}) == 4


def test_connections_stay_within_threads_times_workers(
    serve_mysql: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    mariadb: MariaDB,
) -> None:
    threads, ports = 3, free_ports(2)
    # The server is shared by the session: count only what this test's workers add.
    baseline = threads_connected(mariadb)
    server = serve_mysql("--db-threads", str(threads), ports=ports)
    urls = [server.url(port, "/bridge/db") for port in ports]
    peak = 0

    async def hammer() -> int:
        nonlocal peak
        client = AsyncHTTPClient(max_clients=32)
        codes: list[int] = []
        for start in range(0, LEAK_REQUESTS, 64):
            batch = range(start, min(start + 64, LEAK_REQUESTS))
            responses = await asyncio.gather(
                *(client.fetch(urls[n % 2], raise_error=False) for n in batch)
            )
            codes += [r.code for r in responses]
            if start % 640 == 0:
                peak = max(peak, threads_connected(mariadb))
        assert set(codes) == {200}
        return len(codes)

    assert asyncio.run(hammer()) == LEAK_REQUESTS
    after = threads_connected(mariadb) - baseline
    peak -= baseline
    assert peak <= threads * len(ports), peak
    assert after <= threads * len(ports), after
    assert after >= 1  # CONN_MAX_AGE = 60: the lanes keep their connections
