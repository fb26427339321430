"""``hybrid serve --nginx PORT``: real nginx in front of real workers.

nginx comes from Debian's nginx-light (scripts/bootstrap installs it). Load loops are
bounded in time and only touch 127.0.0.1.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import HybridProcess, hybrid_env, wait_session_empty
from nginx_tests import requires_nginx
from waiting import wait_until

from hybrid.nginx import find_nginx
from hybrid.procutil import children_of

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]

pytestmark = requires_nginx


def call(
    port: int,
    method: str = "GET",
    path: str = "/hybrid/pid",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=15)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def answers(port: int) -> bool:
    """Whether the worker on ``port`` answers within a second (a blocked one does not)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/hybrid/pid")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def worker_pids(server: HybridProcess) -> dict[int, int]:
    return {p: json.loads(call(p)[1])["pid"] for p in server.ports}


def start_with_nginx(
    hybrid_serve: Serve,
    ports: list[int],
    nginx_port: int,
    *args: str,
    env: dict[str, str] | None = None,
) -> HybridProcess:
    server = hybrid_serve("--nginx", str(nginx_port), *args, ports=ports, env=env)
    wait_until(
        lambda: call(nginx_port)[0] == 200,
        20,
        ignore=OSError,
        message=lambda: f"nginx serving on {nginx_port}:\n{server.stderr}",
    )
    # nginx answers a moment before the master, which checked that it does, logs so.
    wait_until(
        lambda: f":{nginx_port} in front of " in server.stderr, 10, message=lambda: server.stderr
    )
    return server


@dataclass
class Traffic:
    """GET or POST requests through nginx on fresh connections until stopped."""

    port: int
    ok: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def get_loop(self) -> None:
        while not self.stop.is_set():
            self._one("GET", "/hybrid/pid", b"")

    def post_loop(self) -> None:
        while not self.stop.is_set():
            ident = f"{os.getpid()}-{threading.get_ident()}-{next(self.counter)}"
            if self._one("POST", "/hybrid/write", ident.encode()):
                self.written.append(ident)

    def _one(self, method: str, path: str, body: bytes) -> bool:
        try:
            status, _ = call(self.port, method, path, body)
        except Exception as exc:  # every failure counts
            self.failures.append((time.monotonic(), f"{method} {type(exc).__name__}"))
            return False
        if status != 200:
            self.failures.append((time.monotonic(), f"{method} {status}"))
            return False
        self.ok += 1
        return True

    def run(self, loops: list[Callable[[], None]]) -> list[threading.Thread]:
        threads = [threading.Thread(target=loop) for loop in loops]
        for thread in threads:
            thread.start()
        return threads


def finish(traffic: Traffic, threads: list[threading.Thread]) -> None:
    traffic.stop.set()
    for thread in threads:
        thread.join(timeout=30)


def test_serve_with_nginx_proxies_and_stops_cleanly(hybrid_serve: Serve, free_ports: Ports) -> None:
    *ports, nginx_port = free_ports(3)
    server = start_with_nginx(hybrid_serve, ports, nginx_port)
    assert f"serving http://127.0.0.1:{nginx_port} in front of 2 worker(s)" in server.stderr
    seen = {json.loads(call(nginx_port)[1])["pid"] for _ in range(20)}
    assert seen == set(worker_pids(server).values())  # nginx balances over both ports
    status, log = server.stop(signal.SIGTERM)
    assert status == 0, log
    assert wait_session_empty(server.pid) == []
    with pytest.raises(OSError):
        call(nginx_port)


def test_nginx_host_listens_apart_from_the_workers(hybrid_serve: Serve, free_ports: Ports) -> None:
    """``--nginx-host`` (here 127.0.0.2, standing in for 0.0.0.0): nginx there, the
    workers still on ``--host`` 127.0.0.1 only."""
    port, nginx_port = free_ports(2)
    server = hybrid_serve("--nginx", str(nginx_port), "--nginx-host", "127.0.0.2", ports=[port])
    status = wait_until(
        # A host in ALLOWED_HOSTS: the workers answer 400 to any other (127.0.0.2 is not).
        lambda: call(nginx_port, host="127.0.0.2", headers={"Host": "localhost"})[0],
        20,
        ignore=OSError,
        message=lambda: server.stderr,
    )
    assert status == 200
    wait_until(
        lambda: f"serving http://127.0.0.2:{nginx_port} in front of 1 worker(s)" in server.stderr,
        10,
        message=lambda: server.stderr,
    )
    assert call(port)[0] == 200
    with pytest.raises(ConnectionRefusedError):
        call(nginx_port)  # nginx is not on 127.0.0.1
    with pytest.raises(ConnectionRefusedError):
        call(port, host="127.0.0.2")  # nor the worker on nginx's address


@pytest.mark.parametrize("problem", ["static", "busy", "overlap"])
def test_nginx_problems_stop_serve_before_any_worker_starts(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path, problem: str
) -> None:
    port, nginx_port = free_ports(2)
    args = ["--nginx", str(nginx_port)]
    expected = {
        "static": f"static directory {tmp_path}/missing for /static/ does not exist",
        "busy": f"nginx cannot listen on 127.0.0.1:{nginx_port}: Address already in use",
        "overlap": f"--nginx: port {port} is also one of --ports",
    }[problem]
    holder = socket.socket()
    if problem == "static":
        args += ["--static", f"/static/={tmp_path}/missing"]
    elif problem == "busy":
        holder.bind(("127.0.0.1", nginx_port))
        holder.listen()
    else:
        args = ["--nginx", str(port)]
    with holder:
        server = hybrid_serve(*args, ports=[port], wait=False)
        code = server.proc.wait(timeout=20)
    assert code == (2 if problem == "overlap" else 1)
    lines = server.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hybrid serve: error: {expected}"), lines


def test_forged_proxy_headers_do_not_reach_django(hybrid_serve: Serve, free_ports: Ports) -> None:
    *ports, nginx_port = free_ports(2)
    start_with_nginx(hybrid_serve, ports, nginx_port)
    forged = {
        "X-Forwarded-Proto": "https",
        "X-Real-IP": "203.0.113.7",
        "X-Scheme": "https",
        "X-Forwarded-For": "203.0.113.8",
    }
    status, body = call(nginx_port, "POST", "/django/echo", b"a=1", forged)
    echo = json.loads(body)
    assert status == 200
    assert echo["scheme"] == "http"  # request.is_secure() is False over plain HTTP
    assert echo["remote_addr"] == "127.0.0.1"  # the real client, as nginx saw it
    # X-Forwarded-For is the client's address alone: code that reads its first entry
    # (most does) is not fooled by one the client made up.
    status, body = call(nginx_port, path="/django/meta", headers={"X-Forwarded-For": "1.2.3.4"})
    assert status == 200
    meta = json.loads(body)
    assert meta["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert (meta["REMOTE_ADDR"], meta["HTTP_X_REAL_IP"]) == ("127.0.0.1", "127.0.0.1")


def test_trusted_proxies_chain_behind_a_load_balancer(
    hybrid_serve: Serve, free_ports: Ports
) -> None:
    """``--trusted-proxies 127.0.0.1``: the test client stands in for a load balancer whose
    X-Forwarded-For nginx believes (realip) and extends with the balancer's address."""
    port, nginx_port = free_ports(2)
    start_with_nginx(hybrid_serve, [port], nginx_port, "--trusted-proxies", "127.0.0.1")

    def meta(forwarded_for: str | None) -> dict[str, str]:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
        status, body = call(nginx_port, path="/django/meta", headers=headers)
        assert status == 200
        return dict(json.loads(body))

    seen = meta("1.2.3.4")
    assert seen["REMOTE_ADDR"] == seen["HTTP_X_REAL_IP"] == "1.2.3.4"
    assert seen["HTTP_X_FORWARDED_FOR"] == "1.2.3.4, 127.0.0.1"
    # The balancer's list: the last address it did not trust itself is the client.
    seen = meta("203.0.113.9, 1.2.3.4")
    assert seen["REMOTE_ADDR"] == "1.2.3.4"
    assert seen["HTTP_X_FORWARDED_FOR"] == "203.0.113.9, 1.2.3.4, 127.0.0.1"
    seen = meta(None)  # the balancer itself, or a health check
    assert seen["REMOTE_ADDR"] == seen["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"


def test_server_name_refuses_other_hosts_in_nginx(hybrid_serve: Serve, free_ports: Ports) -> None:
    port, nginx_port = free_ports(2)
    server = hybrid_serve("--nginx", str(nginx_port), "--server-name", "localhost", ports=[port])
    named = {"Host": f"localhost:{nginx_port}"}
    wait_until(
        lambda: call(nginx_port, headers=named)[0] == 200,
        20,
        ignore=OSError,
        message=lambda: f"nginx serving on {nginx_port}:\n{server.stderr}",
    )
    served = json.loads(call(port)[1])["pid"]
    for host in ("evil.example", f"127.0.0.1:{nginx_port}"):
        # 444: nginx closes the connection without an answer; no worker sees it.
        with pytest.raises(http.client.RemoteDisconnected):
            call(nginx_port, headers={"Host": host})
    assert call(nginx_port, headers={"Host": ""})[0] == 400  # nginx's own, for HTTP/1.1
    assert call(nginx_port, headers=named)[0] == 200
    assert json.loads(call(port)[1])["pid"] == served


def test_a_request_that_blocks_its_worker_costs_that_worker_alone(
    hybrid_serve: Serve, free_ports: Ports
) -> None:
    """A GET whose handler blocks the loop gets its worker killed by --timeout; nginx
    answers it 502 instead of sending it on to block the next worker, the other workers
    keep serving, and the master's log names the request."""
    *ports, nginx_port = free_ports(5)
    server = start_with_nginx(hybrid_serve, ports, nginx_port, "--timeout", "3")
    pids = worker_pids(server)
    result: dict[str, object] = {}

    def stuck() -> None:
        started = time.monotonic()
        try:
            result["status"] = call(nginx_port, path="/hybrid/block?s=60")[0]
        except Exception as exc:
            result["status"] = repr(exc)
        result["took"] = time.monotonic() - started

    blocker = threading.Thread(target=stuck)
    blocker.start()
    wait_until(  # which port it landed on shows only once that worker stops answering
        lambda: any(not answers(p) for p in ports), 5, message="a worker blocked"
    )
    stuck_port = next(p for p in ports if not answers(p))
    for port in ports:
        if port != stuck_port:
            assert call(port)[0] == 200  # the other workers serve meanwhile
    blocker.join(timeout=30)
    assert result["status"] == 502, result
    assert result["took"] < 3 + 3, result  # one timeout (+ one heartbeat and the tick)
    # The replacement serves; then nothing else is killed for another timeout and more.
    wait_until(lambda: answers(stuck_port), 10, message="the stuck port served again")
    time.sleep(3 + 1)  # time is the point: a retried request would block another worker
    after = worker_pids(server)
    assert {p for p in ports if after[p] != pids[p]} == {stuck_port}
    assert server.stderr.count("sent no heartbeat") == 1, server.stderr
    assert server.stderr.count("starting a new one") == 1, server.stderr
    line = next(line for line in server.stderr.splitlines() if "sent no heartbeat" in line)
    assert re.search(
        rf"worker {pids[stuck_port]} on port {stuck_port} sent no heartbeat for 3s "
        r"\(blocked IOLoop: GET /hybrid/block running for \d+\.\ds, at \S*/testproject/"
        r"routes\.py:\d+ in get\); killing it",
        line,
    ), line
    assert all(call(nginx_port)[0] == 200 for _ in range(20))


def test_a_request_on_a_worker_that_dies_is_retried(hybrid_serve: Serve, free_ports: Ports) -> None:
    """The retries that cover a crash are still there: GETs in flight on a worker that is
    SIGKILLed go to another worker, and every one of them succeeds."""
    *ports, nginx_port = free_ports(5)
    server = start_with_nginx(hybrid_serve, ports, nginx_port, "--timeout", "3")
    victim_port = ports[1]
    victim = worker_pids(server)[victim_port]
    results: list[object] = []

    def slow() -> None:
        try:
            status, body = call(nginx_port, path="/hybrid/sleep?s=2")
            results.append((status, json.loads(body)["pid"]) if status == 200 else status)
        except Exception as exc:
            results.append(repr(exc))

    # 16 at once: whichever nginx worker gets 4 or more goes round every port.
    threads = [threading.Thread(target=slow) for _ in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # a head start: the requests are in their handlers
    os.kill(victim, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 16
    assert all(isinstance(r, tuple) and r[0] == 200 for r in results), results
    assert victim not in {r[1] for r in results if isinstance(r, tuple)}
    # nginx saw the victim's connections break under requests it then retried.
    assert any(
        "[error]" in line and f"127.0.0.1:{victim_port}" in line
        for line in server.stderr.splitlines()
    ), server.stderr


def test_nginx_that_dies_is_started_again(hybrid_serve: Serve, free_ports: Ports) -> None:
    *ports, nginx_port = free_ports(2)
    server = start_with_nginx(hybrid_serve, ports, nginx_port)
    nginx_pid = next(p for p in children_of(server.pid) if p not in worker_pids(server).values())
    os.kill(nginx_pid, signal.SIGKILL)
    # The killed master's own workers may answer (or drop) a request or two until the
    # master reaps it and kills its process group: wait for the restart, then require a
    # run of successes from the new nginx.
    streak = 0

    def five_in_a_row_after_the_restart() -> bool:
        nonlocal streak
        restarted = f"nginx {nginx_pid} was killed by SIGKILL; starting it again" in server.stderr
        try:
            ok = call(nginx_port)[0] == 200
        except OSError:
            ok = False
        streak = streak + 1 if ok and restarted else 0
        return streak == 5

    wait_until(five_in_a_row_after_the_restart, 15, message=lambda: server.stderr)
    assert f"nginx {nginx_pid} was killed by SIGKILL; starting it again" in server.stderr


def test_chaos_kill_a_worker_every_2s_behind_nginx(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    """4 ports, one worker SIGKILLed every 2 s for ~12 s: no failed GET; a POST fails only
    when its worker died under it, and no write is ever made twice."""
    write_log = tmp_path / "writes"
    *ports, nginx_port = free_ports(5)
    server = start_with_nginx(
        hybrid_serve, ports, nginx_port, env=hybrid_env(WRITE_LOG=str(write_log))
    )
    traffic = Traffic(nginx_port)
    threads = traffic.run(
        [traffic.get_loop, traffic.get_loop, traffic.post_loop, traffic.post_loop]
    )
    kills: list[float] = []
    rng = random.Random(7)
    try:
        for _ in range(6):
            time.sleep(2)  # the kill schedule: one every 2 s is the scenario
            victim = rng.choice(list(worker_pids(server).values()))
            kills.append(time.monotonic())
            os.kill(victim, signal.SIGKILL)
        time.sleep(1)  # and a second of traffic after the last kill
    finally:
        finish(traffic, threads)
    get_failures = [f for f in traffic.failures if f[1].startswith("GET")]
    post_failures = [f for f in traffic.failures if f[1].startswith("POST")]
    assert get_failures == []
    for when, what in post_failures:  # only requests in flight when a worker was killed
        assert any(abs(when - k) < 1.0 for k in kills), (what, when, kills)
    assert len(post_failures) <= len(kills) * 2
    lines = write_log.read_text().split()
    assert len(lines) == len(set(lines)), "a POST was written twice"
    assert set(traffic.written) <= set(lines)
    assert traffic.ok > 200


@pytest.mark.parametrize("trigger", ["sighup", "max_requests"])
def test_zero_failed_requests_through_nginx_across_reloads(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path, trigger: str
) -> None:
    write_log = tmp_path / "writes"
    *ports, nginx_port = free_ports(4)
    args = ("--max-requests", "60", "--max-requests-jitter", "20") if trigger != "sighup" else ()
    server = start_with_nginx(
        hybrid_serve, ports, nginx_port, *args, env=hybrid_env(WRITE_LOG=str(write_log))
    )
    before = set(worker_pids(server).values())
    traffic = Traffic(nginx_port)
    threads = traffic.run([traffic.get_loop, traffic.get_loop, traffic.post_loop])
    try:
        wait_until(lambda: traffic.ok >= 20, 20, message="traffic through nginx")
        if trigger == "sighup":
            os.kill(server.pid, signal.SIGHUP)
        wait_until(
            lambda: not set(worker_pids(server).values()) & before,
            40,
            interval=0.2,
            message="every port served by a new worker",
        )
        wait_until(  # the old workers drained, under traffic, and exited
            lambda: not set(children_of(server.pid)) & before,
            30,
            message=lambda: f"old workers {before} gone:\n{server.stderr[-3000:]}",
        )
    finally:
        finish(traffic, threads)
    assert not set(worker_pids(server).values()) & before, "not every worker was replaced"
    nginx_errors = [line for line in server.stderr.splitlines() if "[error]" in line]
    assert traffic.failures == [], "\n".join(nginx_errors[:10])
    lines = write_log.read_text().split()
    assert sorted(lines) == sorted(traffic.written)


def test_hybrid_nginx_prints_a_config_nginx_accepts(free_ports: Ports, tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybrid",
            "nginx",
            "--ports",
            "8001-8004",
            "--listen",
            str(free_ports(1)[0]),
            "--static",
            f"/static/={static}",
            "--prefix",
            str(tmp_path),
            "--max-body-size",
            "2000000",
        ],
        capture_output=True,
        text=True,
        env=hybrid_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    conf = tmp_path / "nginx.conf"
    conf.write_text(result.stdout)
    for needle in (
        "max_fails=0",
        "proxy_next_upstream_tries 4",
        "client_max_body_size 2000000",
        "keepalive 256",
        "proxy_set_header Connection $hybrid_connection",
    ):
        assert needle in result.stdout
    check = subprocess.run(
        [find_nginx(), "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def nginx_conf(server: HybridProcess) -> str:
    """The config the supervised nginx runs with (its ``-c`` argument, which nginx keeps
    in its process title: ``nginx: master process /usr/sbin/nginx -p ... -c ...``)."""
    pid = int(re.findall(r"nginx (\d+) serving ", server.stderr)[-1])
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ").split()
    return Path(argv[argv.index("-c") + 1]).read_text()


def test_nginx_access_log_is_off_by_default_and_a_file_is_reopened_on_sigusr1(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    # By default the workers' access log is the only one: nginx writes none into its
    # private prefix, where nothing would ever rotate it.
    *ports, nginx_port = free_ports(2)
    server = start_with_nginx(hybrid_serve, ports, nginx_port)
    assert "access_log off;" in nginx_conf(server)
    wait_until(lambda: "GET /hybrid/pid 200" in server.stderr, 10)  # the worker's line
    server.stop(signal.SIGTERM)
    # --nginx-access-log FILE: nginx's own lines there; logrotate moves the file and sends
    # SIGUSR1 to the master, which passes it on to nginx (reopen) as to the workers. nginx's
    # workers reopen it themselves, so (as root, where they run as nobody) its directory
    # must be one they can reach, as /var/log/nginx is.
    logs = Path(tempfile.mkdtemp(prefix="hybrid-nginx-logs-"))
    logs.chmod(0o755)
    log = logs / "nginx-access.log"
    *ports, nginx_port = free_ports(2)
    server = start_with_nginx(hybrid_serve, ports, nginx_port, "--nginx-access-log", str(log))
    assert f"access_log {log} " in nginx_conf(server)
    call(nginx_port, path="/hybrid/pid?before=rotation")
    wait_until(lambda: log.exists() and "before=rotation" in log.read_text(), 10)
    log.rename(logs / "nginx-access.log.1")
    server.proc.send_signal(signal.SIGUSR1)
    wait_until(log.exists, 10, message=lambda: server.stderr)
    call(nginx_port, path="/hybrid/pid?after=rotation")
    wait_until(lambda: "after=rotation" in log.read_text(), 10, message=lambda: server.stderr)
    assert "after=rotation" not in (logs / "nginx-access.log.1").read_text()
    code, stderr = server.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in stderr, stderr
    shutil.rmtree(logs)


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: nginx's workers run as nobody")
def test_an_nginx_access_log_its_workers_cannot_reopen_is_refused_at_start(
    free_ports: Ports, tmp_path: Path
) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    port, nginx_port = free_ports(2)
    result = subprocess.run(
        [sys.executable, "-m", "hybrid", "serve", "--ports", str(port), "--nginx"]
        + [str(nginx_port), "--nginx-access-log", str(hidden / "a.log")]
        + ["--settings", "testproject.settings"],
        capture_output=True,
        text=True,
        env=hybrid_env(),
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # before any worker started
    assert "cannot reach the access log's directory" in lines[0]
    assert "run chmod o+x" in lines[0]


def test_hybrid_nginx_writes_its_access_log_where_asked(tmp_path: Path) -> None:
    def render(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "hybrid", "nginx", "--ports", "8001", "--prefix"]
            + [str(tmp_path), *args],
            capture_output=True,
            text=True,
            env=hybrid_env(),
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert f"access_log {tmp_path}/access.log " in render()  # the prefix, by default
    assert f"access_log {tmp_path}/a.log " in render("--nginx-access-log", str(tmp_path / "a.log"))
    assert "access_log off;" in render("--nginx-access-log", "off")
