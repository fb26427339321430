"""Workers on several hosts behind one nginx (``--upstream HOST:PORTS``): two masters stand
for two hosts on 127.0.0.2 and 127.0.0.3 (``--host``), sharing the test project's database.

One whole host killed under a steady GET load costs at most the requests in flight on it;
a Django session started on one host is valid on the other.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO_DIR, HybridProcess, hybrid_env, run_hybrid, session_pids
from nginx_tests import nginx_running, requires_nginx
from waiting import wait_until

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]

HOST_A, HOST_B = "127.0.0.2", "127.0.0.3"

pytestmark = requires_nginx


def get(
    host: str, port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def start_host(hybrid_serve: Serve, address: str, ports: list[int], *args: str) -> HybridProcess:
    """A master standing for one host: its workers on ``address``."""
    server = hybrid_serve("--host", address, *args, ports=ports, wait=False)
    for port in ports:
        wait_until(
            lambda p=port: listening(address, p),  # type: ignore[misc]
            30,
            message=lambda: server.stderr,
        )
    return server


def kill_host(server: HybridProcess) -> None:
    """SIGKILL the master's process group, then anything else of its session."""
    os.killpg(server.pid, signal.SIGKILL)
    for pid in session_pids(server.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait(timeout=10)


def ports_seen(nginx_port: int, count: int) -> set[int]:
    return {
        json.loads(get("127.0.0.1", nginx_port, "/hybrid/pid")[2])["port"] for _ in range(count)
    }


def test_one_host_killed_under_load_costs_only_its_requests_in_flight(
    hybrid_serve: Serve, free_ports: Ports
) -> None:
    """Host A runs nginx (serve --nginx --upstream) over its workers and host B's; B is
    killed outright mid-load: GETs keep succeeding, on A's workers."""
    a1, a2, b1, b2, nginx_port = free_ports(5)
    host_b = start_host(hybrid_serve, HOST_B, [b1, b2])
    host_a = start_host(
        hybrid_serve,
        HOST_A,
        [a1, a2],
        "--nginx",
        str(nginx_port),
        "--nginx-host",
        "127.0.0.1",
        "--upstream",
        f"{HOST_B}:{b1},{b2}",
    )
    wait_until(lambda: listening("127.0.0.1", nginx_port), 30, message=lambda: host_a.stderr)
    wait_until(lambda: "in front of 2 worker(s) and 2 on 1 other host(s)" in host_a.stderr, 10)
    assert ports_seen(nginx_port, 24) == {a1, a2, b1, b2}  # round robin over both hosts

    stop = threading.Event()
    results: list[tuple[float, float, int | str]] = []  # (start, end, port or failure)
    lock = threading.Lock()

    def load() -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                status, _, body = get("127.0.0.1", nginx_port, "/hybrid/pid")
                outcome: int | str = json.loads(body)["port"] if status == 200 else str(status)
            except Exception as exc:  # every failure counts
                outcome = type(exc).__name__
            with lock:
                results.append((start, time.monotonic(), outcome))

    clients = 4
    threads = [threading.Thread(target=load) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        killed = time.monotonic()
        kill_host(host_b)
        time.sleep(2.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    failures = [r for r in results if isinstance(r[2], str)]
    in_flight = [r for r in results if r[0] <= killed <= r[1]]
    after = [r for r in results if r[0] > killed + 0.5]
    print(f"{len(results)} GETs, {len(failures)} failed, {len(in_flight)} in flight at the kill")
    # Only the requests in flight when B died may fail (nginx retries even those GETs on
    # the next worker: usually none fails).
    assert len(failures) <= len(in_flight) <= clients, failures
    assert all(r[0] <= killed + 0.2 for r in failures), (failures, killed)
    assert {r[2] for r in after} == {a1, a2}
    assert len(after) > 50
    assert sum(1 for r in results if r[1] < killed and r[2] in (b1, b2)) > 10
    assert "Traceback" not in host_a.stderr


def test_a_session_started_on_one_host_is_valid_on_the_other(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    """``hybrid nginx --upstream`` prints the config of an nginx of one's own over both
    hosts; sessions live in the shared database (the DB session backend)."""
    a1, b1, b2, nginx_port = free_ports(4)
    host_a = start_host(hybrid_serve, HOST_A, [a1])
    host_b = start_host(hybrid_serve, HOST_B, [b1, b2])
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybrid",
            "nginx",
            "--host",
            HOST_A,
            "--ports",
            str(a1),
            "--upstream",
            f"{HOST_B}:{b1},{b2}",
            "--listen",
            f"127.0.0.1:{nginx_port}",
            "--prefix",
            str(prefix),
        ],
        env=hybrid_env(),
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    conf = prefix / "nginx.conf"
    conf.write_text(printed.stdout)
    with nginx_running(prefix, conf):
        wait_until(lambda: listening("127.0.0.1", nginx_port), 10)
        # Host names as the workers get them behind nginx (ALLOWED_HOSTS has 127.0.0.1).
        host = {"Host": f"127.0.0.1:{nginx_port}"}
        status, headers, body = get(HOST_A, a1, "/django/session?set=from-host-a", host)
        assert status == 200 and json.loads(body)["value"] == "from-host-a"
        cookie = headers["Set-Cookie"].split(";")[0]
        assert cookie.startswith("sessionid=")
        for port in (b1, b2):  # the other host's workers read it from the database
            status, _, body = get(HOST_B, port, "/django/session", {**host, "Cookie": cookie})
            assert status == 200 and json.loads(body)["value"] == "from-host-a"
        pids = {}
        for _ in range(12):  # and through nginx, whichever host it picks
            status, _, body = get("127.0.0.1", nginx_port, "/django/session", {"Cookie": cookie})
            assert status == 200 and json.loads(body)["value"] == "from-host-a"
            pids[json.loads(body)["pid"]] = True
        assert len(pids) == 3  # all three workers, on both hosts, answered
    for server in (host_a, host_b):
        assert "Traceback" not in server.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "10.0.0.3:8001"], "--upstream needs --nginx PORT"),
        (["--nginx", "8000", "--upstream", "no-such-host.invalid:8001"], "cannot be resolved"),
        (["--nginx", "8000", "--upstream", "127.0.0.1:8001"], "127.0.0.1:8001 is listed twice"),
        (["--nginx", "8000", "--upstream", "10.0.0.3"], "'10.0.0.3' is not HOST:PORTS"),
    ],
)
def test_bad_upstreams_stop_serve_in_one_line(args: list[str], message: str) -> None:
    result = run_hybrid("serve", "--ports", "8001", "--settings", "testproject.settings", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
