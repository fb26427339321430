"""Native pools in a real ``hybrid serve`` on MariaDB: on by default, made after fork and
only on the first native query, one per worker, bounded by ``--db-threads``, recycled below
``wait_timeout``, closed when the worker stops; ``--native-mysql false`` and a database's
``HYBRID_NATIVE: False`` keep the thread path."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import HybridProcess, MariaDB, hybrid_env
from dbnative import ALIAS, run_native, setup_alias
from tornado.httpclient import AsyncHTTPClient
from waiting import until, wait_until

from hybrid.db import stats


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def _client_connections(mariadb: MariaDB) -> int:
    rows = mariadb.query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER='hybrid'")
    return int(rows[0][0]) - 1  # this query's own


def test_one_pool_per_worker_made_after_fork_and_closed_on_stop(
    hybrid_serve: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    mariadb: MariaDB,
) -> None:
    before = _client_connections(mariadb)
    ports = free_ports(2)
    server = hybrid_serve(
        "--native-mysql",
        "true",
        "--db-threads",
        "2",
        ports=ports,
        settings="nativedb.settings",
        env=hybrid_env(**mariadb.env),
    )
    answers = [_get(server.url(port, "/native/pool")) for port in ports for _ in range(3)]
    assert {a["pid"] for a in answers} != {server.pid}
    assert len({a["pid"] for a in answers}) == 2  # each worker answers from its own pool
    for answer in answers:
        assert answer["pools"] == ["default"] and answer["thread"] == 0
        assert 1 <= answer["recycle"]["default"] <= 3600  # type: ignore[index]
    assert answers[-1]["native"] == 3
    assert _client_connections(mariadb) > before
    code, stderr = server.stop()
    assert code == 0, stderr
    wait_until(
        lambda: _client_connections(mariadb) <= before,
        5,
        interval=0.1,
        message=lambda: f"{_client_connections(mariadb)} connections, {before} before",
    )
    assert _client_connections(mariadb) == before


def test_native_mysql_false_keeps_the_thread_path(
    hybrid_serve: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    mariadb: MariaDB,
) -> None:
    ports = free_ports(1)
    server = hybrid_serve(
        "--native-mysql",
        "false",
        ports=ports,
        settings="nativedb.settings",
        env=hybrid_env(**mariadb.env),
    )
    answer = _get(server.url(ports[0], "/native/pool"))
    assert answer["pools"] == [] and answer["native"] == 0


def _threads_connected(mariadb: MariaDB) -> int:
    rows = mariadb.query("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
    return int(rows[0][1]) - 1  # this question's own


def test_on_by_default_lazy_and_bounded_by_db_threads(
    hybrid_serve: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    mariadb: MariaDB,
) -> None:
    """No flag: native. No pool before the first native query; under 32 concurrent
    requests (reads and writes) a worker holds at most ``--db-threads`` pool connections
    and as many lane connections: the budget Config.db_thread_count documents."""
    threads, ports = 2, free_ports(2)
    baseline = _client_connections(mariadb)
    server = hybrid_serve(
        "--db-threads",
        str(threads),
        ports=ports,
        settings="nativedb.settings",
        env=hybrid_env(**mariadb.env),
    )
    assert _client_connections(mariadb) == baseline  # lazy: booted workers hold none
    peak = 0

    async def hammer() -> list[int]:
        nonlocal peak
        client = AsyncHTTPClient(max_clients=32)
        codes: list[int] = []
        for _ in range(12):
            urls = [
                server.url(ports[n % 2], "/native/probe" + ("?write=1" if n % 3 == 0 else ""))
                for n in range(32)
            ]
            responses = await asyncio.gather(*(client.fetch(u, raise_error=False) for u in urls))
            codes += [r.code for r in responses]
            peak = max(peak, _client_connections(mariadb))
        return codes

    codes = asyncio.run(hammer())
    assert set(codes) == {200}, codes
    answers = [_get(server.url(port, "/native/pool")) for port in ports]
    for answer in answers:
        assert answer["pools"] == ["default"] and answer["maxsize"] == {"default": threads}
        assert answer["thread"] == 0 and answer["native"] > 0
    peak = max(peak, _client_connections(mariadb)) - baseline
    assert 1 <= peak <= 2 * threads * len(ports), peak


def test_a_database_opts_out_with_hybrid_native_false(
    hybrid_serve: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    mariadb: MariaDB,
) -> None:
    ports = free_ports(1)
    server = hybrid_serve(
        ports=ports, settings="nativedb.settings_optout", env=hybrid_env(**mariadb.env)
    )
    answer = _get(server.url(ports[0], "/native/pool"))
    assert answer["pools"] == [] and answer["native"] == 0 and answer["thread"] == 1


# --- the pool itself (hybrid.db.pool.Pool), in this process ---------------------------


@pytest.fixture(scope="module")
def native_alias(mariadb: MariaDB) -> Iterator[None]:
    yield from setup_alias(mariadb)


def _sleepy(seconds: float) -> Any:
    from django.db.models.expressions import RawSQL
    from nativedb.models import Note

    return Note.objects.annotate(s=RawSQL("SLEEP(%s)", (seconds,))).values_list("s", flat=True)


def test_pool_is_bounded_and_serves_waiters_in_turn(native_alias: None) -> None:
    from nativedb.models import Note

    from hybrid.db import pool

    Note.objects.all().delete()
    Note.objects.create(text="one")
    sizes: list[int] = []

    async def work() -> tuple[float, list[Any]]:
        await Note.objects.acount()
        native_pool = pool.pools()[ALIAS]

        async def one() -> Any:
            result = [s async for s in _sleepy(0.05)]
            sizes.append(native_pool.size)
            return result

        started = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(10)))
        return time.monotonic() - started, results

    took, results = run_native(work, pool_size=2)
    assert results == [[0]] * 10
    assert max(sizes) <= 2
    assert took >= 0.05 * 10 / 2 - 0.01  # two at a time


def test_a_cancelled_waiter_leaks_no_connection(native_alias: None) -> None:
    from nativedb.models import Note

    from hybrid.db import pool

    async def work() -> tuple[int, int, int]:
        await Note.objects.acount()
        native_pool = pool.pools()[ALIAS]
        busy = asyncio.ensure_future(_alist(_sleepy(0.2)))
        await until(lambda: native_pool.freesize == 0, timeout=5)  # busy holds the one
        waiting = asyncio.ensure_future(Note.objects.acount())
        await until(lambda: native_pool._slots.waiting == 1, timeout=5)  # in line
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await busy
        count = await asyncio.wait_for(Note.objects.acount(), 5)
        return count, native_pool.size, native_pool.freesize

    count, size, free = run_native(work, pool_size=1)
    assert size == free == 1 and count >= 0


def test_a_connection_the_server_killed_is_never_handed_out(
    native_alias: None, mariadb: MariaDB
) -> None:
    from nativedb.models import Note

    from hybrid.db import pool

    async def work() -> tuple[int, int]:
        await Note.objects.acount()
        native_pool = pool.pools()[ALIAS]
        conn = native_pool._free[-1]
        mariadb.query(f"KILL {conn.thread_id()}")
        await until(lambda: not native_pool._usable(conn, time.monotonic()), timeout=5)  # EOF
        await Note.objects.filter(text="x").aupdate(n=1)  # a write: never retried
        assert native_pool._free[-1] is not conn
        return native_pool.size, stats["fallback"]

    assert run_native(work, pool_size=1) == (1, 0)


def test_a_closed_pool_raises_djangos_interface_error(native_alias: None) -> None:
    from django.db import InterfaceError

    from hybrid.db import pool
    from hybrid.db.execute import django_error

    async def work() -> None:
        from nativedb.models import Note

        await Note.objects.acount()
        native_pool = pool.pools()[ALIAS]
        native_pool.close()
        with pytest.raises(Exception) as info:
            await native_pool.acquire()
        raise django_error(info.value)

    with pytest.raises(InterfaceError, match="closed"):
        run_native(work)


async def _alist(qs: Any) -> list[Any]:
    return [obj async for obj in qs]
