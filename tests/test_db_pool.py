"""Native pools in a real ``hybrid serve`` on MariaDB: made after fork, one per worker,
recycled below ``wait_timeout``, closed when the worker stops."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

from conftest import HybridProcess, MariaDB, hybrid_env


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
    deadline = time.monotonic() + 5
    while _client_connections(mariadb) > before and time.monotonic() < deadline:
        time.sleep(0.1)
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
