"""Worker hardening: slow clients, oversized heads, and who may set proxy headers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import pytest
from conftest import HybridProcess
from tornado import httputil

from hybrid import Config
from hybrid.web import HybridApplication, _is_loopback, _TrackedRequest

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]


def closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (reads until EOF), at most ``limit``."""
    sock.settimeout(limit)
    started = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except (TimeoutError, ConnectionResetError):
        pass
    return time.monotonic() - started


def test_hardened_defaults() -> None:
    config = Config()
    assert config.keepalive_timeout == 75.0  # above nginx's upstream keepalive_timeout 30s
    assert config.body_timeout == 60.0
    assert config.max_header_size == 64 * 1024
    assert config.max_body_size == 10 * 1024 * 1024


def test_slowloris_headers_are_cut_off(hybrid_serve: Serve, free_ports: Ports) -> None:
    server = hybrid_serve("--keepalive-timeout", "1", ports=free_ports(1))
    with socket.create_connection(("127.0.0.1", server.ports[0])) as sock:
        sock.sendall(b"GET /hybrid/pid HTTP/1.1\r\nHost: x\r\n")  # ...and never the end
        assert closed_after(sock, 10) < 5


def test_slow_body_is_cut_off(hybrid_serve: Serve, free_ports: Ports) -> None:
    server = hybrid_serve("--body-timeout", "1", ports=free_ports(1))
    with socket.create_connection(("127.0.0.1", server.ports[0])) as sock:
        sock.sendall(b"POST /hybrid/pid HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123")
        assert closed_after(sock, 10) < 5


def test_oversized_request_head_is_refused(hybrid_serve: Serve, free_ports: Ports) -> None:
    import http.client

    server = hybrid_serve("--max-header-size", "2048", ports=free_ports(1))
    conn = http.client.HTTPConnection("127.0.0.1", server.ports[0], timeout=10)
    try:
        conn.request("GET", "/hybrid/pid", headers={"X-Big": "a" * 4096})
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status == 431  # Request Header Fields Too Large, then the connection closes
    conn = http.client.HTTPConnection("127.0.0.1", server.ports[0], timeout=10)
    conn.request("GET", "/hybrid/pid", headers={"X-Small": "a" * 100})
    assert conn.getresponse().status == 200  # the worker lives on
    conn.close()


def test_request_timeout_and_allowed_hosts_in_a_served_worker(
    hybrid_serve: Serve, free_ports: Ports
) -> None:
    import http.client

    server = hybrid_serve("--request-timeout", "0.5", ports=free_ports(1))

    def get(path: str, host: str = "127.0.0.1") -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.ports[0], timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            return conn.getresponse().status
        finally:
            conn.close()

    started = time.monotonic()
    assert get("/hybrid/sleep?s=5") == 504
    assert time.monotonic() - started < 2
    assert get("/hybrid/sleep?s=0.01") == 200
    assert get("/hybrid/pid", host="evil.com") == 400
    assert get("/hybrid/pid") == 200
    assert "/hybrid/sleep?s=5 504 " in server.stderr and " timeout" in server.stderr


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        (("127.0.0.1", 4000), True),
        (("127.5.6.7", 4000), True),
        (("::1", 4000, 0, 0), True),
        (("10.0.0.8", 4000), False),
        (("203.0.113.9", 4000), False),
        (("::ffff:203.0.113.9", 4000, 0, 0), False),
        (b"/run/hybrid.sock", False),
        (("not-an-ip", 1), False),
    ],
)
def test_only_loopback_peers_count_as_the_proxy(address: object, loopback: bool) -> None:
    class Context:
        def __init__(self) -> None:
            self.address = address

    assert _is_loopback(Context()) is loopback


class _FakeContext:
    def __init__(self, ip: str) -> None:
        self.address = (ip, 5555)
        self.applied = 0
        self.unapplied = 0

    def _apply_xheaders(self, headers: httputil.HTTPHeaders) -> None:
        self.applied += 1

    def _unapply_xheaders(self) -> None:
        self.unapplied += 1


class _FakeConnection(httputil.HTTPConnection):
    def __init__(self, ip: str) -> None:
        self.context = _FakeContext(ip)

    def finish(self) -> None:
        pass


class _Sink(httputil.HTTPMessageDelegate):
    pass


@pytest.mark.parametrize(("peer", "applied"), [("127.0.0.1", 1), ("198.51.100.4", 0)])
def test_proxy_headers_are_applied_only_for_loopback_peers(peer: str, applied: int) -> None:
    app = HybridApplication([], config=Config(xheaders=True))
    conn = _FakeConnection(peer)
    tracked = _TrackedRequest(app, _Sink(), conn, object())
    start = httputil.RequestStartLine("GET", "/", "HTTP/1.1")
    tracked.headers_received(start, httputil.HTTPHeaders({"X-Real-IP": "203.0.113.1"}))
    tracked.finish()
    assert conn.context.applied == applied
    assert conn.context.unapplied == applied  # never leaks into the next request
    conn.finish()
    assert app.inflight == 0 and app.served == 1


@pytest.mark.parametrize(
    ("peer", "applied"),
    [("10.0.0.8", 1), ("::ffff:10.0.0.9", 1), ("10.0.1.5", 0), ("127.0.0.1", 1)],
)
def test_forwarded_allow_ips_adds_the_nginx_of_another_host(peer: str, applied: int) -> None:
    config = Config.from_sources({"forwarded_allow_ips": "10.0.0.0/24"})
    app = HybridApplication([], config=config)
    conn = _FakeConnection(peer)
    tracked = _TrackedRequest(app, _Sink(), conn, object())
    start = httputil.RequestStartLine("GET", "/", "HTTP/1.1")
    tracked.headers_received(start, httputil.HTTPHeaders({"X-Forwarded-Proto": "https"}))
    tracked.finish()
    assert conn.context.applied == applied


def test_xheaders_off_applies_nothing_even_for_loopback() -> None:
    app = HybridApplication([], config=Config(xheaders=False))
    conn = _FakeConnection("127.0.0.1")
    tracked = _TrackedRequest(app, _Sink(), conn, object())
    tracked.headers_received(
        httputil.RequestStartLine("GET", "/", "HTTP/1.1"), httputil.HTTPHeaders()
    )
    assert conn.context.applied == 0


def gc_state(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_workers_freeze_their_boot_objects_and_collect_young_objects_less_often(
    hybrid_serve: Serve, free_ports: Ports
) -> None:
    server = hybrid_serve(ports=free_ports(1))
    state = gc_state(server.url(server.ports[0], "/hybrid/gc"))
    assert state["threshold"][0] == Config().gc_threshold == 50_000  # type: ignore[index]
    assert state["frozen"] > 10_000  # type: ignore[operator]  # Django and the project


def test_gc_threshold_zero_keeps_pythons_collector_as_it_is(
    hybrid_serve: Serve, free_ports: Ports
) -> None:
    # Python's own state at startup (3.12 starts with a few hundred objects frozen).
    script = "import gc, json; print(json.dumps([gc.get_threshold(), gc.get_freeze_count()]))"
    threshold, frozen = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout
    )
    server = hybrid_serve("--gc-threshold", "0", ports=free_ports(1))
    state = gc_state(server.url(server.ports[0], "/hybrid/gc"))
    assert state == {"threshold": threshold, "frozen": frozen}


def test_tune_gc_freezes_and_raises_only_the_young_threshold() -> None:
    script = (
        "import gc, json; from hybrid.worker import tune_gc; before = gc.get_threshold();"
        "tune_gc(1234); print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    before, after, frozen = json.loads(run.stdout)
    assert after == [1234, before[1], before[2]]
    assert frozen > 0
