"""Process titles, the access log to a file, and request ids, in a real ``hybrid serve``."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO_DIR, HybridProcess, hybrid_env
from nginx_tests import requires_nginx
from waiting import wait_until

from hybrid.procutil import children_of

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]


def call(
    port: int, path: str = "/hybrid/pid", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def cmdline(pid: int) -> str:
    """What ``ps`` shows as the process's command: /proc/PID/cmdline, NULs as spaces."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def ps_args(pid: int) -> str:
    return subprocess.run(
        ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout.strip()


def worker_pid(port: int) -> int:
    return int(json.loads(call(port)[2])["pid"])


def test_master_and_workers_have_titles(hybrid_serve: Serve, free_ports: Ports) -> None:
    pytest.importorskip("setproctitle", reason="pip install 'hybrid[proctitle]'")
    ports = free_ports(2)
    server = hybrid_serve("--timeout", "1", ports=ports)  # a heartbeat every 0.2 s
    low, high = ports
    span = f"{low}-{high}" if high == low + 1 else f"{low},{high}"
    assert cmdline(server.pid) == f"hybrid: master [testproject] ports {span}"
    assert ps_args(server.pid) == f"hybrid: master [testproject] ports {span}"
    worker = worker_pid(low)
    assert worker in children_of(server.pid)
    for _ in range(3):
        call(low)
    # Updated at each heartbeat with the requests served so far (the readiness probes too).
    wait_until(
        lambda: (
            re.fullmatch(
                rf"hybrid: worker \[testproject\] :{low} \((\d+) requests\)", cmdline(worker)
            )
            is not None
            and int(cmdline(worker).split("(")[1].split()[0]) >= 4
        ),
        10,
        message=lambda: cmdline(worker),
    )
    assert ps_args(worker) == cmdline(worker)


def test_name_option_names_the_processes(hybrid_serve: Serve, free_ports: Ports) -> None:
    pytest.importorskip("setproctitle", reason="pip install 'hybrid[proctitle]'")
    (port,) = free_ports(1)
    server = hybrid_serve("--name", "shop", ports=[port])
    assert cmdline(server.pid) == f"hybrid: master [shop] ports {port}"
    assert cmdline(worker_pid(port)).startswith(f"hybrid: worker [shop] :{port}")


FORMAT = '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms %({x-request-id}i)s'


def test_access_log_file_in_the_given_format(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    (port,) = free_ports(1)
    server = hybrid_serve("--access-log", str(log), "--access-log-format", FORMAT, ports=[port])
    headers = {
        "X-Real-IP": "203.0.113.7",  # as nginx sends it: the worker trusts loopback peers
        "Referer": "https://example.com/cart",
        "User-Agent": "test-agent/1.0",
        "X-Request-ID": "order-42",
    }
    status, response_headers, body = call(port, "/django/meta?x=1", headers)
    assert status == 200
    assert response_headers["X-Request-Id"] == "order-42"
    assert json.loads(body)["HTTP_X_REQUEST_ID"] == "order-42"  # in the Django view's META
    wait_until(lambda: "/django/meta" in log.read_text(), 10)
    line = next(x for x in log.read_text().splitlines() if "/django/meta" in x)
    assert re.fullmatch(
        rf'203\.0\.113\.7 - - "GET /django/meta\?x=1 HTTP/1\.1" 200 {len(body)} '
        r'"https://example\.com/cart" "test-agent/1\.0" \d+ms order-42',
        line,
    ), line
    assert "/django/meta" not in server.stderr  # the file, not the hybrid.access logger

    # logrotate: move the file, SIGUSR1 the master; it tells the worker, which reopens it.
    log.rename(tmp_path / "access.log.1")
    os.kill(server.pid, signal.SIGUSR1)
    wait_until(log.exists, 10)
    status, response_headers, _ = call(port, "/hybrid/pid?after-rotation")
    assert status == 200
    generated = response_headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    wait_until(lambda: "after-rotation" in log.read_text(), 10)
    assert log.read_text().strip().endswith(f"ms {generated}")
    assert server.proc.poll() is None
    code, stderr = server.stop()
    assert code == 0, stderr


def test_size_atoms_count_a_streamed_body(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    """%(B)s and %(b)s: the Content-Length, or for a response streamed without one
    (chunked) the body bytes it sent, as gunicorn logs them."""
    log = tmp_path / "access.log"
    (port,) = free_ports(1)
    hybrid_serve(
        *("--access-log", str(log), "--access-log-format", "%(U)s %(B)s %(b)s"),
        ports=[port],
        settings="testproject.settings_bridge",
    )
    sizes = {}
    for path in ("/django/stream", "/bridge/stream", "/hybrid/pid"):
        status, headers, body = call(port, path)
        assert status == 200
        streamed = "Content-Length" not in headers
        assert streamed == (path != "/hybrid/pid"), headers
        sizes[path] = len(body)
    wait_until(lambda: "/hybrid/pid " in log.read_text(), 10)
    lines = dict(line.split(" ", 1) for line in log.read_text().splitlines())
    assert sizes["/django/stream"] == len(b"chunk 0\n") * 3
    assert sizes["/bridge/stream"] == len(b"part 0\n") * 3
    for path, size in sizes.items():
        assert lines[path] == f"{size} {size}", (path, lines)


def test_access_log_off(hybrid_serve: Serve, free_ports: Ports) -> None:
    (port,) = free_ports(1)
    server = hybrid_serve("--access-log", "off", ports=[port])
    call(port, "/hybrid/pid?quiet")
    code, stderr = server.stop()
    assert code == 0 and "quiet" not in stderr


def test_default_access_line_is_unchanged(hybrid_serve: Serve, free_ports: Ports) -> None:
    (port,) = free_ports(1)
    server = hybrid_serve(ports=[port])
    status, headers, _ = call(port, "/hybrid/pid?plain", {"X-Request-ID": "x" * 201})
    assert status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])  # too long: replaced
    wait_until(lambda: "?plain" in server.stderr, 10)
    assert re.search(
        rf"hybrid\.access: GET /hybrid/pid\?plain 200 \d+\.\dms port={port}\n", server.stderr
    )


def test_a_bad_access_log_format_stops_the_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hybrid", "serve", "--ports", "8001"]
        + ["--settings", "testproject.settings", "--access-log-format", "%(h)s %(nope)s"],
        env=hybrid_env(),
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown atom %(nope)s" in lines[0], lines


@requires_nginx
def test_nginx_makes_a_request_id_or_keeps_the_clients(
    hybrid_serve: Serve, free_ports: Ports
) -> None:
    port, nginx_port = free_ports(2)
    server = hybrid_serve("--nginx", str(nginx_port), ports=[port])
    wait_until(
        lambda: call(nginx_port)[0] == 200,
        20,
        ignore=OSError,
        message=lambda: f"nginx serving on {nginx_port}:\n{server.stderr}",
    )
    status, headers, body = call(nginx_port, "/django/meta")
    assert status == 200
    made = json.loads(body)["HTTP_X_REQUEST_ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)  # nginx's $request_id
    assert headers["X-Request-Id"] == made
    status, headers, body = call(nginx_port, "/django/meta", {"X-Request-ID": "client-7"})
    assert json.loads(body)["HTTP_X_REQUEST_ID"] == headers["X-Request-Id"] == "client-7"
