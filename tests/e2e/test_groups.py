"""Groups under real ``hybrid serve`` workers and a real Redis: a message reaches every
worker, every host (two masters on two loopback addresses behind one nginx), survives Redis
being killed and restarted, and comes from a sync view or a management command too.

The sockets are ``testproject.group_routes.RoomSocket``: ``/hybrid/room/NAME`` joins
``room-NAME`` and says ``{"type": "joined", "pid": ..., "port": ...}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import websocket  # websocket-client, a selenium dependency: a plain blocking client
from conftest import REPO_DIR, HybridProcess, RedisServer, hybrid_env, redis_server
from nginx_tests import nginx_running
from waiting import wait_until

from hybrid.config import Config
from hybrid.nginx import render_config

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]


class Socket:
    """A blocking WebSocket client that reads JSON messages."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=10)
        self.hello = self.receive()
        assert self.hello["type"] == "joined", self.hello

    def receive(self, timeout: float = 10) -> Any:
        self.ws.settimeout(timeout)
        return json.loads(self.ws.recv())

    def receive_type(self, kind: str, timeout: float = 10) -> Any:
        """The next message of type ``kind`` (acknowledgements of its own sends skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.1, deadline - time.monotonic()))
            if message["type"] == kind:
                return message

    def nothing(self, seconds: float = 0.3) -> None:
        self.ws.settimeout(seconds)
        with pytest.raises(websocket.WebSocketTimeoutException):
            self.ws.recv()

    def send(self, **data: Any) -> None:
        self.ws.send(json.dumps(data))

    @property
    def open(self) -> bool:
        return bool(self.ws.connected)

    def close(self) -> None:
        self.ws.close()


@contextmanager
def sockets() -> Iterator[Callable[[str], Socket]]:
    opened: list[Socket] = []

    def connect(url: str) -> Socket:
        opened.append(Socket(url))
        return opened[-1]

    try:
        yield connect
    finally:
        for sock in opened:
            sock.close()


def post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def room(port: int, name: str = "42", host: str = "127.0.0.1") -> str:
    return f"ws://{host}:{port}/hybrid/room/{name}"


def test_a_message_sent_on_one_worker_reaches_sockets_on_every_worker(
    hybrid_serve: Serve, free_ports: Ports, redis: RedisServer
) -> None:
    ports = free_ports(2)
    server = hybrid_serve("--groups", redis.url, ports=ports)
    with sockets() as connect:
        a1, a2, b = connect(room(ports[0])), connect(room(ports[0])), connect(room(ports[1]))
        other = connect(room(ports[1], "7"))
        assert a1.hello["pid"] != b.hello["pid"]
        a1.send(send="hi from the first worker")
        for sock in (a1, a2, b):
            message = sock.receive_type("chat.message")
            assert message["text"] == "hi from the first worker"
            assert message["from"] == a1.hello["pid"]
        other.nothing()
        # Every socket is in "everyone" (the class's groups), on both workers.
        status, _ = post(
            f"http://127.0.0.1:{ports[1]}/hybrid/group-send/everyone",
            b'{"type": "chat.message", "text": "to all"}',
        )
        assert status == 202
        for sock in (a1, a2, b, other):
            assert sock.receive_type("chat.message")["text"] == "to all"
    assert "Traceback" not in server.stderr


def test_without_redis_groups_stay_in_one_worker_and_the_log_says_so(
    hybrid_serve: Serve, free_ports: Ports
) -> None:
    ports = free_ports(2)
    server = hybrid_serve(ports=ports)
    with sockets() as connect:
        a, b = connect(room(ports[0])), connect(room(ports[1]))
        a.send(send="only here")
        assert a.receive_type("chat.message")["text"] == "only here"
        b.nothing()
        connect(room(ports[0], "8"))
    lines = [line for line in server.stderr.splitlines() if "in-process backend" in line]
    assert len(lines) == 2, lines  # once per worker that used groups, not once per socket
    assert "HYBRID['groups']" in lines[0]


def test_each_worker_holds_exactly_one_subscriber_connection(
    hybrid_serve: Serve, free_ports: Ports, redis: RedisServer
) -> None:
    ports = free_ports(2)
    hybrid_serve("--groups", redis.url, ports=ports)
    with sockets() as connect:
        opened = [connect(room(ports[n % 2], str(n % 8))) for n in range(40)]
        pids = {sock.hello["pid"] for sock in opened}
        assert len(pids) == 2
        opened[0].send(send="count me")
        for sock in opened[::8]:  # the five sockets of room 0
            assert sock.receive_type("chat.message")["text"] == "count me"
        names = redis.client_names()
        for pid in pids:
            assert names.count(f"hybrid-sub-{pid}") == 1, names
            assert names.count(f"hybrid-pub-{pid}") <= 1, names  # opened by a first send


def test_a_sync_view_and_a_management_command_reach_sockets_on_every_worker(
    hybrid_serve: Serve, free_ports: Ports, redis: RedisServer
) -> None:
    ports = free_ports(2)
    hybrid_serve("--groups", redis.url, ports=ports)
    with sockets() as connect:
        a, b = connect(room(ports[0])), connect(room(ports[1]))
        status, _ = post(f"http://127.0.0.1:{ports[1]}/django/group-send/room-42", b"from a view")
        assert status == 202
        for sock in (a, b):
            assert sock.receive_type("chat.message") == {
                "type": "chat.message",
                "text": "from a view",
                "via": "view",
            }

        # async_to_sync(hybrid.group_send) in the same view: asgiref runs it on the
        # worker's own loop, through that loop's one publisher connection (group_send_sync
        # above has a blocking one of its own), not a connection per call.
        def publishers() -> list[str]:
            return [name for name in redis.client_names() if name.startswith("hybrid-pub-")]

        assert len(publishers()) == 1
        for n in range(5):
            status, _ = post(
                f"http://127.0.0.1:{ports[1]}/django/group-send/room-42?with=async_to_sync",
                f"async_to_sync {n}".encode(),
            )
            assert status == 202
        for sock in (a, b):
            for n in range(5):
                message = sock.receive_type("chat.message")
                assert (message["text"], message["via"]) == (f"async_to_sync {n}", "async_to_sync")
        assert len(publishers()) == 2, redis.client_names()
        done = subprocess.run(
            [sys.executable, "-m", "django", "groupsend", "room-42", "from a command"],
            env=hybrid_env(DJANGO_SETTINGS_MODULE="testproject.settings", HYBRID_GROUPS=redis.url),
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"sent with {redis.url}" in done.stdout
        for sock in (a, b):
            assert sock.receive_type("chat.message")["via"] == "command"
        status, body = post(
            f"http://127.0.0.1:{ports[0]}/hybrid/group-send/room-42", b'{"text": "no type"}'
        )
        assert status == 400 and "needs a 'type' string" in body


def test_redis_killed_and_restarted_sockets_stay_open_and_workers_never_die(
    hybrid_serve: Serve, free_ports: Ports, private_redis: RedisServer
) -> None:
    ports = free_ports(2)
    server = hybrid_serve("--groups", private_redis.url, ports=ports)
    with sockets() as connect:
        a, b = connect(room(ports[0])), connect(room(ports[1]))
        pids = {a.hello["pid"], b.hello["pid"]}
        private_redis.kill()
        started = time.monotonic()
        a.send(send="while Redis is down")
        failure = a.receive_type("unavailable")
        assert time.monotonic() - started < 5
        assert "Redis at" in failure["error"] and "unavailable" in failure["error"]
        status, body = post(
            f"http://127.0.0.1:{ports[1]}/hybrid/group-send/room-42",
            b'{"type": "chat.message", "text": "x"}',
        )
        assert status == 503 and "try again later" in body
        b.nothing()
        private_redis.restart()
        # Both workers resubscribe by themselves; then messages flow again.
        channel = "hybrid.groups:0:room-42"
        wait_until(
            lambda: int(private_redis.command("PUBSUB", "NUMSUB", channel)[1]) == 2,
            20,
            message=lambda: server.stderr,
        )
        b.send(send="Redis is back")
        for sock in (a, b):
            assert sock.receive_type("chat.message")["text"] == "Redis is back"
        assert a.open and b.open
        # The same workers: nothing died.
        c = connect(room(ports[0]))
        d = connect(room(ports[1]))
        assert {c.hello["pid"], d.hello["pid"]} == pids
    stderr = server.stderr
    assert stderr.count("groups: Redis at") == 4, stderr  # gone and back, per worker
    assert "Traceback" not in stderr


def test_redis_unreachable_at_start_workers_serve_log_once_and_connect_later(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    *ports, redis_port = free_ports(3)
    directory = tmp_path / "redis"
    directory.mkdir()
    (directory / "env").write_text(f"REDIS_PORT={redis_port}\n")  # scripts/redis reuses it
    url = f"redis://127.0.0.1:{redis_port}/0"
    server = hybrid_serve("--groups", url, ports=ports)  # waits until every port answers
    time.sleep(1.5)  # several reconnect attempts
    assert server.stderr.count("unavailable") == 2, server.stderr  # once per worker
    with redis_server(directory) as redis, sockets() as connect:
        assert redis.port == redis_port
        wait_until(
            lambda: sum(n.startswith("hybrid-sub-") for n in redis.client_names()) == 2,
            20,
            message=lambda: server.stderr,
        )
        a, b = connect(room(ports[0])), connect(room(ports[1]))
        a.send(send="now it works")
        assert b.receive_type("chat.message")["text"] == "now it works"


@contextmanager
def nginx_over(hosts: list[tuple[str, tuple[int, ...]]], port: int, prefix: Path) -> Iterator[None]:
    """One nginx on 127.0.0.1:``port`` balancing over the workers of several hosts: the
    first host's as ``--ports``, the others' as ``--upstream`` (hybrid's own config, the
    WebSocket upgrade headers included)."""
    (first_host, first_ports), *others = hosts
    config = Config(host=first_host, ports=first_ports, upstream=tuple(others))
    text = render_config(config, prefix=prefix, listen_port=port)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    with nginx_running(prefix, conf):
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/hybrid/pid"), 10)
        yield


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (OSError, urllib.error.HTTPError):
        return False


def test_a_message_crosses_hosts_two_masters_one_nginx_one_redis(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    """Host A is a master on 127.0.0.2, host B one on 127.0.0.3, Redis on a third address;
    nginx balances over all four workers and the browsers' sockets land where it sends
    them."""
    port_a, port_b, port_a2, port_b2, nginx_port = free_ports(5)
    with redis_server(tmp_path / "redis", bind="127.0.0.4") as redis:
        env = hybrid_env()
        host_a = hybrid_serve(
            "--host",
            "127.0.0.2",
            "--groups",
            redis.url,
            ports=[port_a, port_a2],
            env=env,
            wait=False,
        )
        host_b = hybrid_serve(
            "--host",
            "127.0.0.3",
            "--groups",
            redis.url,
            ports=[port_b, port_b2],
            env=env,
            wait=False,
        )
        for host, ports, server in (
            ("127.0.0.2", (port_a, port_a2), host_a),
            ("127.0.0.3", (port_b, port_b2), host_b),
        ):
            for port in ports:
                wait_until(
                    lambda h=host, p=port: _listening(h, p),  # type: ignore[misc]
                    30,
                    message=lambda s=server: s.stderr,  # type: ignore[misc]
                )
        hosts = [("127.0.0.2", (port_a, port_a2)), ("127.0.0.3", (port_b, port_b2))]
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        with nginx_over(hosts, nginx_port, prefix), sockets() as connect:
            on_a = on_b = None
            for _ in range(40):  # nginx round-robins: a few sockets land on each host
                sock = connect(room(nginx_port, "x"))
                if sock.hello["port"] in (port_a, port_a2) and on_a is None:
                    on_a = sock
                elif sock.hello["port"] in (port_b, port_b2) and on_b is None:
                    on_b = sock
                if on_a and on_b:
                    break
            assert on_a is not None and on_b is not None, "nginx never reached both hosts"
            on_a.send(send="from host A")
            assert on_b.receive_type("chat.message")["text"] == "from host A"
            assert on_a.receive_type("chat.message")["text"] == "from host A"  # its own
            on_b.send(send="from host B")
            assert on_a.receive_type("chat.message")["text"] == "from host B"
        # One subscriber per worker, on both hosts (each connects at boot, in the background).
        wait_until(
            lambda: sum(name.startswith("hybrid-sub-") for name in redis.client_names()) == 4,
            10,
            message=lambda: redis.client_names(),
        )


def _listening(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False
