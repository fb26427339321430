"""MariaDB restarted under load, behind a real ``hybrid serve`` worker on the native path.

The server here is a private one (``scripts/mariadb`` in a temporary directory), not the
session's: stopping that one would break the other tests. Client threads keep
``/native/probe`` (a ``DjangoHandler`` reading and writing natively) busy while the
server is stopped and started again on the same port (``scripts/mariadb restart``).
While it is down, requests fail only with the errors the sync ORM raises
(``django.db.utils.OperationalError``/``InterfaceError``: never aiomysql's or PyMySQL's own
classes, never a 500 nor a dead worker); once it is back, every client's first or second
request succeeds and every later one too: the pool drops the connections the restart
killed instead of handing them out.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_DIR, HybridProcess, MariaDB, hybrid_env, mariadb_server
from waiting import wait_until

SCRIPT = REPO_DIR / "scripts" / "mariadb"

#: What a failed request may report while the server is down: Django's classes only.
ALLOWED_ERRORS = {"django.db.utils.OperationalError", "django.db.utils.InterfaceError"}


def _mariadb(verb: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), verb, str(directory)], capture_output=True, text=True
    )


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[tuple[MariaDB, Path]]:
    """A MariaDB of this test alone, the test project's auth tables migrated into it."""
    directory = tmp_path / "mariadb"
    with mariadb_server(directory, "auth") as server:
        yield server, directory


@dataclass
class Answer:
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all (the worker did not answer)
    body: dict[str, Any]


class Client(threading.Thread):
    """Requests one after the other until stopped, each answer recorded."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.answers: list[Answer] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
                conn.request("GET", self.path)
                response = conn.getresponse()
                status, body = response.status, json.loads(response.read() or b"{}")
                conn.close()
            except (OSError, ValueError, http.client.HTTPException) as exc:
                status, body = 0, {"exception": repr(exc)}
            self.answers.append(Answer(started, time.monotonic(), status, body))
            time.sleep(0.01)


def test_mariadb_restart_under_load_errors_only_while_down(
    hybrid_serve: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    private_mariadb: tuple[MariaDB, Path],
) -> None:
    mariadb, directory = private_mariadb
    ports = free_ports(1)
    server = hybrid_serve(
        "--native-mysql",
        "true",
        "--db-threads",
        "2",
        ports=ports,
        settings="nativedb.settings",
        env=hybrid_env(**mariadb.env),
    )
    clients = [Client(ports[0], "/native/probe" + ("?write=1" if n % 2 else "")) for n in range(4)]
    for client in clients:
        client.start()
    try:
        wait_until(
            lambda: min(len(c.answers) for c in clients) >= 5,
            20,
            message=lambda: f"5 answers each before the stop:\n{server.stderr[-3000:]}",
        )
        stop_began = time.monotonic()
        assert _mariadb("stop", directory).returncode == 0
        down = time.monotonic()
        wait_until(  # requests fail while it is down, every client's several times
            lambda: all(sum(a.started > down for a in c.answers) >= 3 for c in clients),
            20,
            message=lambda: f"3 answers each while down:\n{server.stderr[-3000:]}",
        )
        restart_began = time.monotonic()
        restarted = _mariadb("restart", directory)
        assert restarted.returncode == 0, restarted.stderr
        assert f"MARIADB_PORT={mariadb.env['MARIADB_PORT']}" in restarted.stdout
        back = time.monotonic()
        wait_until(
            lambda: all(sum(a.started > back for a in c.answers) >= 10 for c in clients),
            30,
            message=lambda: f"10 answers each once back:\n{server.stderr[-3000:]}",
        )
    finally:
        for client in clients:
            client.stopping.set()
        for client in clients:
            client.join(30)
    answers = [a for c in clients for a in c.answers]
    context = f"stderr:\n{server.stderr[-3000:]}"
    assert all(a.status in (200, 503) for a in answers), (
        [a for a in answers if a.status not in (200, 503)],
        context,
    )
    assert {a.body["pid"] for a in answers} == {answers[0].body["pid"]}  # one worker, alive
    errors = {a.body["error"] for a in answers if a.status == 503}
    assert errors and errors <= ALLOWED_ERRORS, (errors, context)
    assert all(a.status == 200 for a in answers if a.ended < stop_began), context
    while_down = [a for a in answers if a.started > down and a.ended < restart_began]
    assert while_down and all(a.status == 503 for a in while_down)
    for client in clients:
        after = [a for a in client.answers if a.started > back]
        assert len(after) >= 5, after
        failed = [n for n, a in enumerate(after) if a.status != 200]
        assert not failed or failed == [0], (client.path, [a.body for a in after[:3]])
    last = clients[0].answers[-1].body
    assert last["native"] > 0 and last["thread"] == 0, last
    assert "Traceback" not in server.stderr, context


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_mariadb_down_is_a_503_with_retry_after_and_one_log_line_each_way(
    hybrid_serve: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    private_mariadb: tuple[MariaDB, Path],
) -> None:
    mariadb, directory = private_mariadb
    ports = free_ports(1)
    server = hybrid_serve(
        "--native-mysql",
        "true",
        ports=ports,
        settings="nativedb.settings",
        env=hybrid_env(**mariadb.env),
    )
    assert _get(ports[0], "/native/count")[0] == 200  # the native pool is made
    assert _mariadb("stop", directory).returncode == 0
    answers = [_get(ports[0], "/native/count") for _ in range(6)]
    assert [status for status, _, _ in answers] == [503] * 6, server.stderr[-3000:]
    assert all(headers["Retry-After"] == "5" for _, headers, _ in answers)
    restarted = _mariadb("restart", directory)
    assert restarted.returncode == 0, restarted.stderr
    wait_until(lambda: _get(ports[0], "/native/count")[0] == 200, 30)
    wait_until(lambda: "is reachable again" in server.stderr, 10)
    stderr = server.stderr
    assert stderr.count("cannot be reached") == 1, stderr[-3000:]
    assert stderr.count("is reachable again") == 1, stderr[-3000:]
    assert "(6 requests answered 503)" in stderr
    assert "Traceback" not in stderr and "Internal Server Error" not in stderr, stderr[-3000:]
