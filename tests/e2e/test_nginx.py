"""nginx in front of the workers: the rendered config, ``nginx -t``, and real nginx.

The process tests run real nginx (Debian package ``nginx-light``, installed by
``scripts/bootstrap``) in a private prefix on free loopback ports, in front of small
Tornado backends served from a thread of the test process.
"""

from __future__ import annotations

import asyncio
import configparser
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from conftest import REPO_DIR
from nginx_tests import directives, requires_nginx
from waiting import wait_until

from hybrid import errors
from hybrid.config import Config
from hybrid.errors import ConfigError, HybridError
from hybrid.nginx import (
    TEMPLATE_PATH,
    NginxError,
    NginxProcess,
    check_config,
    find_nginx,
    parse_listen,
    render_config,
)
from hybrid.nginx import binary as nginx_binary
from hybrid.nginx import render as nginx_render

DEPLOY_DIR = REPO_DIR / "scripts" / "deploy"


def block(text: str, opening: str) -> str:
    """The body of the first ``opening { ... }`` block (braces balanced)."""
    start = text.index(opening + " {") + len(opening) + 2
    depth = 1
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start:index]
    raise AssertionError(f"unbalanced block {opening!r}")


@pytest.fixture
def static_dir() -> Iterator[Path]:
    """A static directory nginx's workers can read even when nginx starts as root
    (pytest's ``tmp_path`` sits under a 0700 directory)."""
    directory = Path(tempfile.mkdtemp(prefix="hybrid-static-"))
    directory.chmod(0o755)
    (directory / "app.css").write_text("body { color: red }\n")
    (directory / "app.css").chmod(0o644)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


# -- rendering ---------------------------------------------------------------------------------


def test_nginx_error_is_the_one_in_hybrid_errors() -> None:
    assert NginxError is errors.NginxError
    assert issubclass(NginxError, errors.ServerError)


def test_template_ships_in_nginx_dir() -> None:
    assert TEMPLATE_PATH == REPO_DIR / "nginx" / "hybrid.conf.template"
    assert TEMPLATE_PATH.is_file()


def test_render_has_every_required_directive(tmp_path: Path, static_dir: Path) -> None:
    config = Config(
        ports=(8001, 8002, 8003, 8004),
        max_body_size=5_000_000,
        nginx=8000,
        server_name="example.com www.example.com",
        static=(("/static/", str(static_dir)), ("/media/", str(static_dir))),
    )
    text = render_config(config, prefix=tmp_path)
    assert "{{" not in text and "}}" not in text
    # 1,000+ clients: each takes a client and an upstream descriptor in an nginx worker.
    assert directives(block(text, "events"), "worker_connections") == ["4096"]
    assert directives(text, "worker_rlimit_nofile") == ["16384"]

    upstream = block(text, "upstream hybrid_workers")
    assert directives(upstream, "server") == [
        f"127.0.0.1:{port} max_fails=0" for port in (8001, 8002, 8003, 8004)
    ]
    assert directives(upstream, "keepalive") == ["256"]  # idle ones kept per nginx worker
    assert directives(upstream, "keepalive_timeout") == ["30s"]  # < the workers' 75 s

    location = block(text, "location /")
    assert directives(location, "proxy_pass") == ["http://hybrid_workers"]
    assert directives(location, "proxy_http_version") == ["1.1"]
    headers = dict(h.split(None, 1) for h in directives(location, "proxy_set_header"))
    # Connection is "" (upstream keepalive) except for WebSocket handshakes ("upgrade").
    assert headers["Connection"] == "$hybrid_connection"
    assert headers["Upgrade"] == "$http_upgrade"
    connection_map = block(text, "map $http_upgrade $hybrid_connection")
    assert [line.split() for line in connection_map.strip().splitlines() if line.strip()] == [
        ["default", "upgrade;"],
        ['""', '"";'],
    ]
    assert headers["Host"] in ("$host", "$http_host", "$hybrid_host")
    assert headers["X-Real-IP"] == "$remote_addr"
    assert headers["X-Forwarded-For"] == "$remote_addr"  # the edge: the client alone
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["X-Scheme"] == "$scheme"  # tornado reads it before X-Forwarded-Proto
    assert directives(text, "proxy_next_upstream") == ["error timeout"]  # no non_idempotent
    assert directives(location, "proxy_next_upstream_tries") == ["4"]
    # Retried only within --timeout (30 s) less two heartbeats: a request that blocked its
    # worker until the master killed it is never sent on to the next one.
    assert directives(location, "proxy_next_upstream_timeout") == ["28s"]
    assert directives(location, "proxy_read_timeout") == ["60s"]
    for name in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"):
        assert len(directives(location, name)) == 1, name
    # No realip without --trusted-proxies; with --server-name a default server refuses
    # every other host.
    assert directives(text, "set_real_ip_from") == []
    assert directives(text, "real_ip_header") == []
    default = block(text, "server")
    assert directives(default, "listen") == ["127.0.0.1:8000 default_server"]
    assert directives(default, "return") == ["444"]
    assert directives(default, "proxy_pass") == []

    http_block = block(text, "http")
    assert directives(http_block, "client_max_body_size") == ["5000000"]
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert re.fullmatch(r"\d+s", directives(http_block, name)[0]), name

    server = block(text[text.index("server {") + 1 :], "server")
    assert directives(server, "listen") == ["127.0.0.1:8000"]
    assert directives(server, "server_name") == ["example.com www.example.com"]
    for url in ("/static/", "/media/"):
        static = block(text, f"location {url}")
        assert directives(static, "alias") == [f"{static_dir}/"]
        assert directives(static, "expires") == ["7d"]

    # Everything nginx writes lives in the prefix.
    prefix = str(tmp_path)
    assert directives(text, "pid") == [f"{prefix}/nginx.pid"]
    assert directives(text, "error_log") == [f"{prefix}/error.log error"]
    assert directives(http_block, "access_log")[0] == (
        f"{prefix}/access.log hybrid buffer=64k flush=1s"
    )
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert directives(http_block, f"{kind}_temp_path") == [f"{prefix}/{kind}_temp"]
    assert directives(text, "daemon") == []  # left to the runner's -g "daemon off;"


def test_render_tries_follow_ports_and_wildcard_hosts_become_loopback(tmp_path: Path) -> None:
    text = render_config(Config(ports=(9001,), host="0.0.0.0"), prefix=tmp_path)
    assert directives(text, "server") == ["127.0.0.1:9001 max_fails=0"]
    assert directives(text, "proxy_next_upstream_tries") == ["1"]
    assert directives(text, "listen") == ["127.0.0.1:8000"]  # the default listen port

    text = render_config(
        Config(ports=(9001, 9002), host="::"),
        prefix=tmp_path,
        listen_host="::1",
        listen_port=8080,
    )
    assert directives(text, "server") == ["[::1]:9001 max_fails=0", "[::1]:9002 max_fails=0"]
    assert directives(text, "listen") == ["[::1]:8080"]
    assert directives(text, "proxy_next_upstream_tries") == ["2"]


@pytest.mark.parametrize(
    ("changes", "retry_window", "read"),
    [
        ({}, "28s", "60s"),
        ({"timeout": 5}, "3s", "60s"),
        ({"timeout": 2}, "1200ms", "60s"),
        ({"timeout": 0.1}, "1ms", "60s"),  # never 0: nginx reads that as no limit
        ({"timeout": 300, "request_timeout": 120}, "125s", "125s"),
        ({"timeout": 300}, "60s", "60s"),
        ({"request_timeout": 10}, "28s", "60s"),
        ({"proxy_read_timeout": 20}, "20s", "20s"),
        ({"proxy_read_timeout": 90.5, "request_timeout": 300}, "28s", "90500ms"),
    ],
)
def test_render_retry_window_and_read_timeout(
    tmp_path: Path, changes: dict[str, Any], retry_window: str, read: str
) -> None:
    """proxy_next_upstream_timeout stays below --timeout less two heartbeat intervals and
    within proxy_read_timeout; proxy_read_timeout follows --request-timeout (+5 s, at
    least 60 s) unless --proxy-read-timeout sets it."""
    text = render_config(Config(ports=(9001, 9002), **changes), prefix=tmp_path)
    assert directives(text, "proxy_next_upstream_timeout") == [retry_window]
    assert directives(text, "proxy_read_timeout") == [read]
    assert directives(text, "proxy_next_upstream") == ["error timeout"]
    assert directives(text, "proxy_next_upstream_tries") == ["2"]


def test_render_trusted_proxies_turn_on_realip(tmp_path: Path) -> None:
    config = Config.from_sources({"trusted_proxies": "10.0.0.0/8, 192.0.2.7/32,::1"}, {})
    assert config.trusted_proxies == ("10.0.0.0/8", "192.0.2.7", "::1")
    text = render_config(config, prefix=tmp_path)
    http_block = block(text, "http")
    assert directives(http_block, "set_real_ip_from") == ["10.0.0.0/8", "192.0.2.7", "::1"]
    assert directives(http_block, "real_ip_header") == ["X-Forwarded-For"]
    assert directives(http_block, "real_ip_recursive") == ["on"]
    trusted = block(text, "geo $realip_remote_addr $hybrid_from_proxy")
    assert [line.split() for line in trusted.strip().splitlines()] == [
        ["default", "0;"],
        ["10.0.0.0/8", "1;"],
        ["192.0.2.7", "1;"],
        ["::1", "1;"],
    ]
    chain = block(text, "map $hybrid_from_proxy$http_x_forwarded_for $hybrid_forwarded_for")
    assert "$http_x_forwarded_for, $realip_remote_addr" in chain
    headers = dict(
        h.split(None, 1) for h in directives(block(text, "location /"), "proxy_set_header")
    )
    assert headers["X-Forwarded-For"] == "$hybrid_forwarded_for"
    assert headers["X-Real-IP"] == "$remote_addr"  # the client, as realip found it
    assert directives(text, "return") == []  # server_name _: no default server


@requires_nginx
def test_nginx_accepts_realip_and_default_server(tmp_path: Path) -> None:
    config = Config(ports=(9001,), trusted_proxies=("10.0.0.0/8",), server_name="example.com")
    check_config(render_config(config, prefix=tmp_path), prefix=tmp_path)


def test_an_nginx_without_realip_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "nginx"
    fake.write_text("#!/bin/sh\necho 'configure arguments: --with-http_ssl_module' >&2\n")
    fake.chmod(0o755)
    nginx_binary.require_modules(Config(), str(fake))  # nothing asked of it
    config = Config.from_sources({"trusted_proxies": "10.0.0.0/8"}, {})
    with pytest.raises(NginxError) as info:
        nginx_binary.require_modules(config, str(fake))
    assert str(info.value) == (
        f"--trusted-proxies needs nginx's realip module, and {fake} was built without it "
        "(nginx -V lists no --with-http_realip_module): install nginx-light or nginx from "
        "the distribution, or drop the option"
    )


def test_render_log_choices(tmp_path: Path) -> None:
    text = render_config(Config(), prefix=tmp_path, error_log="stderr", access_log="off")
    assert directives(text, "error_log") == ["stderr error", f"{tmp_path}/error.log error"]
    assert directives(block(text, "http"), "access_log")[0] == "off"


def test_render_without_system_mime_types_inlines_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nginx_render, "MIME_TYPES_PATH", tmp_path / "missing.types")
    text = render_config(Config(), prefix=tmp_path)
    assert directives(text, "include") == []
    types = block(text, "types")
    assert directives(types, "text/css") == ["css"]
    assert directives(types, "application/javascript") == ["js mjs"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"static": (("/static/", "/nonexistent/hybrid-static"),)}, "does not exist"),
        ({"static": (("/", "/tmp"),)}, "the URL / is the workers'"),
        ({"static": (("/s/", "/tmp"), ("/s/", "/tmp"))}, "given twice"),
        ({"server_name": "evil;name"}, "cannot be written into an nginx config"),
        ({"ports": ()}, "no worker ports"),
    ],
)
def test_render_errors_are_one_line(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(NginxError) as info:
        render_config(Config().replace(**changes), prefix=tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, HybridError)


def test_render_rejects_unsafe_prefix() -> None:
    with pytest.raises(NginxError, match="prefix directory"):
        render_config(Config(), prefix="/tmp/with space")


def test_missing_template_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nginx_render, "TEMPLATE_PATH", tmp_path / "gone.template")
    monkeypatch.setattr(nginx_render, "INSTALLED_TEMPLATE_PATH", tmp_path / "gone.too")
    with pytest.raises(NginxError, match="reinstall hybrid"):
        render_config(Config(), prefix=tmp_path)
    # A wheel installs the template under sys.prefix/share/hybrid/nginx/.
    monkeypatch.setattr(
        nginx_render, "INSTALLED_TEMPLATE_PATH", REPO_DIR / "nginx" / "hybrid.conf.template"
    )
    assert "upstream hybrid_workers" in render_config(Config(), prefix=tmp_path)


def test_unknown_placeholder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = tmp_path / "t.template"
    template.write_text("pid {{nope}};\n")
    monkeypatch.setattr(nginx_render, "TEMPLATE_PATH", template)
    with pytest.raises(NginxError, match=r"unknown placeholder \{\{nope\}\}"):
        render_config(Config(), prefix=tmp_path)


def test_parse_listen() -> None:
    assert parse_listen("8000") == ("127.0.0.1", 8000)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:8000") == ("::1", 8000)
    for bad in ("", "x", "80000", ":80", "[::1]", "host:"):
        with pytest.raises(ConfigError, match="--listen"):
            parse_listen(bad)


def test_find_nginx_missing_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(nginx_binary, "NGINX_CANDIDATES", ())
    with pytest.raises(NginxError, match="apt-get install nginx-light"):
        find_nginx()
    with pytest.raises(NginxError, match="not found"):
        find_nginx("/nonexistent/nginx")


# -- nginx -t ----------------------------------------------------------------------------------


@requires_nginx
@pytest.mark.parametrize("mime_types", ["system", "inline"])
def test_nginx_accepts_rendered_config(
    tmp_path: Path, static_dir: Path, monkeypatch: pytest.MonkeyPatch, mime_types: str
) -> None:
    if mime_types == "inline":
        monkeypatch.setattr(nginx_render, "MIME_TYPES_PATH", tmp_path / "missing.types")
    config = Config(
        ports=(8001, 8002, 8003, 8004),
        nginx=8000,
        static=(("/static/", str(static_dir)),),
    )
    check_config(render_config(config, prefix=tmp_path), prefix=tmp_path)
    check_config(render_config(config, prefix=tmp_path, error_log="stderr"), prefix=tmp_path)


@requires_nginx
def test_check_config_creates_its_prefix(tmp_path: Path) -> None:
    """The "From Python" example of docs/deploy/nginx.md, where the prefix is not there yet."""
    prefix = tmp_path / "srv" / "mysite" / "nginx"
    text = render_config(Config(ports=(8001, 8002), nginx=8000), prefix=prefix)
    check_config(text, prefix=prefix)
    assert (prefix / "nginx.conf").is_file()


@requires_nginx
def test_nginx_rejection_is_one_line_error() -> None:
    with pytest.raises(NginxError) as info:
        check_config("events {}\nhttp {\n    bogus_directive on;\n}\n")
    message = str(info.value)
    assert "\n" not in message
    assert '[emerg] unknown directive "bogus_directive"' in message
    assert info.value.returncode == 1
    assert "bogus_directive" in info.value.output


# -- real nginx in front of Tornado ------------------------------------------------------------


class EchoHandler(tornado.web.RequestHandler):
    """Reports what the backend saw: headers, and what tornado's xheaders made of them."""

    def initialize(self, backend: TornadoBackend) -> None:
        self.backend = backend

    def _echo(self) -> None:
        self.backend.count(self.request.method or "")
        self.write(
            {
                "port": self.backend.port,
                "method": self.request.method,
                "remote_ip": self.request.remote_ip,
                "protocol": self.request.protocol,
                "headers": dict(self.request.headers.get_all()),
                "body_length": len(self.request.body),
            }
        )

    def get(self) -> None:
        self._echo()

    def post(self) -> None:
        self._echo()


class TornadoBackend:
    """A Tornado server (``xheaders=True``, like the workers) on a free loopback port,
    running its own event loop in a thread."""

    def __init__(self) -> None:
        self.sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = int(self.sockets[0].getsockname()[1])
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def count(self, method: str) -> None:
        with self._lock:
            self.counts[method] = self.counts.get(method, 0) + 1

    async def _main(self) -> None:
        app = tornado.web.Application([(r"/.*", EchoHandler, {"backend": self})])
        server = tornado.httpserver.HTTPServer(app, xheaders=True, max_body_size=100 << 20)
        server.add_sockets(self.sockets)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        server.stop()
        await server.close_all_connections()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class DropBackend:
    """Reads one request per connection, then closes it without answering: a worker that
    dies mid-request. ``requests`` counts the requests it received."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.requests: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                if data:
                    self.requests.append(data.split(b" ", 1)[0].decode())

    def close(self) -> None:
        self._done.set()
        self._thread.join(10)
        self.listener.close()


@pytest.fixture
def backends() -> Iterator[Callable[[str], Any]]:
    """``backends("tornado")`` / ``backends("drop")``: started now, closed at teardown."""
    started: list[TornadoBackend | DropBackend] = []

    def make(kind: str) -> Any:
        backend = TornadoBackend() if kind == "tornado" else DropBackend()
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.close()


@pytest.fixture
def run_nginx(free_ports: Callable[[int], list[int]]) -> Iterator[Callable[..., NginxProcess]]:
    """``run_nginx(ports=[...], **config)``: a started, ready NginxProcess; stopped at
    teardown whatever the test did."""
    started: list[NginxProcess] = []

    def start(ports: list[int], **changes: Any) -> NginxProcess:
        config = Config(ports=tuple(ports), nginx=free_ports(1)[0], **changes)
        process = NginxProcess(config)
        started.append(process)
        process.start()
        process.wait_ready(10)
        return process

    yield start
    for process in started:
        process.stop(timeout=5)


def request(
    port: int,
    method: str = "GET",
    path: str = "/echo",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def live_pids(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are still running (zombies count as gone)."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] not in "ZX":
            alive.append(pid)
    return alive


def wait_gone(pids: list[int], timeout: float = 5.0) -> None:
    wait_until(
        lambda: not live_pids(pids),
        timeout,
        interval=0.02,
        message=lambda: f"still running: {live_pids(pids)}",
    )


def wait_exit(proc: NginxProcess, timeout: float = 5.0) -> int | None:
    wait_until(lambda: proc.poll() is not None, timeout, interval=0.02, message="nginx exit")
    return proc.poll()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@requires_nginx
def test_nginx_proxies_and_replaces_forged_headers(
    run_nginx: Callable[..., NginxProcess],
    backends: Callable[[str], Any],
    static_dir: Path,
) -> None:
    backend = backends("tornado")
    proc = run_nginx(
        [backend.port], max_body_size=2_000_000, static=(("/static/", str(static_dir)),)
    )
    assert proc.pid is not None and os.getpgid(proc.pid) == proc.pid  # its own group
    forged = {
        "X-Forwarded-Proto": "https",
        "X-Scheme": "https",
        "X-Real-IP": "1.2.3.4",
        "X-Forwarded-For": "5.6.7.8",
        "Forwarded": "for=1.2.3.4;proto=https",
        "Host": "example.com:8443",
    }
    status, _, body = request(proc.listen_port, headers=forged)
    assert status == 200
    seen = json.loads(body)
    headers = seen["headers"]
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Scheme"] == "http"
    assert headers["X-Real-Ip"] == "127.0.0.1"
    assert headers["X-Forwarded-For"] == "127.0.0.1"  # the client alone, forged one dropped
    assert "Forwarded" not in headers
    assert headers["Host"] == "example.com:8443"
    assert headers.get("Connection", "") != "close"  # upstream keepalive
    # What the app sees through tornado's xheaders (as request.is_secure()/REMOTE_ADDR):
    assert seen["protocol"] == "http"
    assert seen["remote_ip"] == "127.0.0.1"

    # A body larger than nginx's memory buffer goes through a temporary file in the
    # prefix: this fails with a 500 when nginx's workers (nobody, under root) cannot
    # reach the prefix.
    status, _, body = request(proc.listen_port, "POST", body=b"x" * 1_000_000)
    assert (status, json.loads(body)["body_length"]) == (200, 1_000_000)
    status, _, _ = request(proc.listen_port, "POST", body=b"x" * 2_000_001)
    assert status == 413
    assert backend.counts == {"GET": 1, "POST": 1}

    status, headers_out, body = request(proc.listen_port, path="/static/app.css")
    assert (status, body) == (200, b"body { color: red }\n")
    assert headers_out["Content-Type"].startswith("text/css")
    assert headers_out["Cache-Control"] == "max-age=604800"  # one header, from expires 7d
    assert "Expires" in headers_out
    assert request(proc.listen_port, path="/static/missing.css")[0] == 404
    assert backend.counts == {"GET": 1, "POST": 1}  # static files never reach a worker


@requires_nginx
def test_dead_worker_is_skipped_and_post_is_never_repeated(
    run_nginx: Callable[..., NginxProcess], backends: Callable[[str], Any]
) -> None:
    alive, dropping = backends("tornado"), backends("drop")
    with socket.socket() as sock:  # a port with nothing listening: a worker being replaced
        sock.bind(("127.0.0.1", 0))
        refused = int(sock.getsockname()[1])
    proc = run_nginx([refused, dropping.port, alive.port])

    # Connection refused, or a connection closed mid-request: GETs go to the next port.
    for _ in range(9):
        assert request(proc.listen_port)[0] == 200
    assert alive.counts["GET"] == 9
    assert dropping.requests.count("GET") >= 2  # it got its turns, and they were retried

    # A refused connection is retried for POST too (nothing was sent), but a POST that
    # reached a worker which then died is not repeated: a 502, and no duplicate write.
    statuses = [request(proc.listen_port, "POST", body=b"n=1")[0] for _ in range(9)]
    dropped = dropping.requests.count("POST")
    assert dropped >= 2
    assert statuses.count(502) == dropped
    assert statuses.count(200) == alive.counts["POST"] == 9 - dropped


@requires_nginx
def test_stop_leaves_no_process_and_removes_prefix(
    run_nginx: Callable[..., NginxProcess], backends: Callable[[str], Any]
) -> None:
    proc = run_nginx([backends("tornado").port])
    assert proc.pid is not None and proc.prefix is not None
    prefix, master = proc.prefix, proc.pid
    assert (prefix / "nginx.conf").is_file()
    workers = children(master)
    assert workers  # nginx's worker processes
    assert proc.stop(timeout=5) == 0
    wait_gone([master, *workers])
    assert not prefix.exists()
    assert proc.poll() == 0 and proc.pid is None
    assert proc.stop(timeout=1) == 0  # idempotent


@requires_nginx
def test_reload_and_restart_after_exit(
    run_nginx: Callable[..., NginxProcess], backends: Callable[[str], Any]
) -> None:
    first, second = backends("tornado"), backends("tornado")
    proc = run_nginx([first.port])
    pid = proc.pid
    assert pid is not None
    proc.reload(proc.config.replace(ports=(second.port,)))
    wait_until(  # old nginx workers finish; new ones use the new upstream
        lambda: json.loads(request(proc.listen_port)[2])["port"] == second.port,
        10,
        interval=0.02,
        message="the reload switching to the new upstream",
    )
    assert proc.pid == pid

    with pytest.raises(NginxError, match="rejected"):
        proc.reload(proc.config.replace(server_name="~(unclosed"))  # a bad regex
    assert request(proc.listen_port)[0] == 200  # still serving the old config

    os.kill(pid, signal.SIGTERM)  # nginx dies behind the master's back...
    assert wait_exit(proc) == 0 and proc.pid is None
    proc.start()  # ...and is started again with the same config and prefix
    proc.wait_ready(10)
    assert proc.pid != pid
    assert json.loads(request(proc.listen_port)[2])["port"] == second.port


@requires_nginx
def test_reaped_by_the_master(
    run_nginx: Callable[..., NginxProcess], backends: Callable[[str], Any]
) -> None:
    proc = run_nginx([backends("tornado").port])
    assert proc.pid is not None
    master, workers = proc.pid, children(proc.pid)
    os.kill(master, signal.SIGKILL)  # its workers are orphaned, still holding the port
    _, status = os.waitpid(master, 0)  # what the master's waitpid(-1) loop does
    proc.reaped(status)
    assert proc.poll() == -signal.SIGKILL
    wait_gone(workers)  # killed with nginx's process group
    assert proc.stop(timeout=1) == -signal.SIGKILL


@requires_nginx
def test_start_errors_are_one_line(
    free_ports: Callable[[int], list[int]], backends: Callable[[str], Any]
) -> None:
    backend = backends("tornado")
    missing = NginxProcess(
        Config(ports=(backend.port,), static=(("/static/", "/nonexistent/static"),)),
        listen_port=free_ports(1)[0],
    )
    with pytest.raises(NginxError, match=r"static directory /nonexistent/static .* does not"):
        missing.start()
    assert missing.prefix is None and missing.pid is None  # private prefix cleaned up

    with socket.create_server(("127.0.0.1", 0)) as busy:
        taken = NginxProcess(Config(ports=(backend.port,)), listen_port=busy.getsockname()[1])
        with pytest.raises(NginxError) as info:
            taken.start()
    assert "another --nginx port" in str(info.value)
    assert "\n" not in str(info.value)
    assert taken.prefix is None

    bad = NginxProcess(  # renders, but nginx -t cannot compile the regex
        Config(ports=(backend.port,), server_name="~(unclosed"), listen_port=free_ports(1)[0]
    )
    with pytest.raises(NginxError) as info:
        bad.start()
    assert "nginx rejected" in str(info.value) and "\n" not in str(info.value)
    assert bad.prefix is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the nobody check applies only as root")
def test_root_checks_static_permissions(free_ports: Callable[[int], list[int]]) -> None:
    private = Path(tempfile.mkdtemp(prefix="hybrid-private-"))  # 0700
    try:
        proc = NginxProcess(
            Config(ports=(8001,), static=(("/static/", str(private)),)),
            listen_port=free_ports(1)[0],
        )
        with pytest.raises(NginxError, match=f"chmod o\\+rx {private} and"):
            proc.start()
    finally:
        private.rmdir()


# -- deployment examples -----------------------------------------------------------------------


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY_DIR / "hybrid.service")
    service = unit["Service"]
    exec_start = service["ExecStart"].split()
    assert exec_start[0].endswith("/bin/hybrid") and exec_start[1] == "serve"
    for flag in ("--ports", "--nginx", "--settings"):
        assert flag in exec_start
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    graceful = float(re.search(r"HYBRID_GRACEFUL_TIMEOUT=(\d+)", service["Environment"])[1])  # type: ignore[index]
    assert int(service["TimeoutStopSec"]) > graceful


def test_supervisor_program() -> None:
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(DEPLOY_DIR / "supervisor.conf")
    program = conf["program:mysite"]
    assert program["command"].split()[1:2] == ["serve"]
    assert "--nginx" in program["command"]
    assert program["stopsignal"] == "TERM"
    assert program["stopasgroup"] == program["killasgroup"] == "true"
    assert int(program["stopwaitsecs"]) > 30


def test_start_stop_scripts(tmp_path: Path) -> None:
    for name in ("start", "stop"):
        script = DEPLOY_DIR / name
        assert os.access(script, os.X_OK), f"{script} is not executable"
        subprocess.run(["bash", "-n", str(script)], check=True)

    # A stand-in for hybrid that logs its arguments and stops on SIGTERM.
    fake = tmp_path / "fake-hybrid"
    fake.write_text(
        "#!/bin/sh\necho \"args: $*\"\ntrap 'echo terminated; exit 0' TERM\n"
        "while :; do sleep 0.1; done\n"
    )
    fake.chmod(0o755)
    env = {
        **os.environ,
        "HYBRID_BIN": str(fake),
        "PIDFILE": str(tmp_path / "hybrid.pid"),
        "LOGFILE": str(tmp_path / "hybrid.log"),
        "START_WAIT": "1",
        "STOP_TIMEOUT": "5",
    }
    run = subprocess.run(
        [DEPLOY_DIR / "start", "--ports", "8001-8002"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    pid = int((tmp_path / "hybrid.pid").read_text())
    try:
        assert os.getsid(pid) == pid  # detached in a session of its own
        again = subprocess.run([DEPLOY_DIR / "start"], env=env, capture_output=True, text=True)
        assert again.returncode == 1 and "already running" in again.stderr
        stop = subprocess.run([DEPLOY_DIR / "stop"], env=env, capture_output=True, text=True)
        assert stop.returncode == 0, stop.stderr
        assert live_pids([pid]) == []
        assert not (tmp_path / "hybrid.pid").exists()
        log = (tmp_path / "hybrid.log").read_text()
        assert "args: serve --ports 8001-8002" in log and "terminated" in log
    finally:
        if live_pids([pid]):
            os.killpg(pid, signal.SIGKILL)

    # A command that fails at once is reported, with the end of its log.
    env["HYBRID_BIN"] = "false"
    failed = subprocess.run([DEPLOY_DIR / "start"], env=env, capture_output=True, text=True)
    assert failed.returncode == 1 and "exited at once" in failed.stderr
    assert not (tmp_path / "hybrid.pid").exists()
