"""The master and its workers, as real processes: ``hybrid serve`` started like a user would."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO_DIR, HybridProcess, hybrid_env, wait_session_empty
from waiting import wait_until

from hybrid import Config
from hybrid.errors import BindError
from hybrid.procutil import describe_exit
from hybrid.sockets import bind_ports

Serve = Callable[..., HybridProcess]


def get_json(url: str, headers: dict[str, str] | None = None) -> dict[str, object]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def worker_pids(server: HybridProcess) -> dict[int, int]:
    """{port: pid} as each port reports it."""
    result = {}
    for port in server.ports:
        body = get_json(server.url(port, "/hybrid/pid"))
        assert body["port"] == port
        result[port] = int(str(body["pid"]))
    return result


def test_every_port_is_served_by_its_own_worker(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    server = hybrid_serve(ports=free_ports(3))
    pids = worker_pids(server)
    assert len(set(pids.values())) == 3
    assert server.pid not in pids.values()
    for pid in pids.values():  # workers are children of the master
        stat = Path(f"/proc/{pid}/stat").read_text()
        assert int(stat[stat.rindex(")") + 2 :].split()[1]) == server.pid
    # The Django fallback answers on every port, from that port's worker.
    for port, pid in pids.items():
        assert get_json(server.url(port, "/django/pid"))["pid"] == pid
    log = server.stderr
    for port, pid in pids.items():
        assert log.count(f"worker {pid} serving http://127.0.0.1:{port}") == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_stops_everything_and_exits_zero(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]], signum: int
) -> None:
    server = hybrid_serve(ports=free_ports(2))
    pids = worker_pids(server)
    status, log = server.stop(signum)
    assert status == 0, log
    assert wait_session_empty(server.pid) == []
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists()
    assert "Traceback" not in log
    for port in server.ports:  # nobody listens there any more
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()


def test_ctrl_c_to_the_whole_process_group_stops_cleanly(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    """A terminal's Ctrl-C reaches master and workers at once; the master still decides."""
    server = hybrid_serve(ports=free_ports(2))
    os.killpg(server.pid, signal.SIGINT)
    assert server.proc.wait(timeout=30) == 0
    assert wait_session_empty(server.pid) == []
    assert "Traceback" not in server.stderr


def test_a_second_interrupt_kills_the_workers_at_once(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    import threading

    server = hybrid_serve(ports=free_ports(1))
    slow = threading.Thread(
        target=lambda: _ignore_errors(get_json, server.url(server.ports[0], "/hybrid/sleep?s=20"))
    )
    slow.start()
    time.sleep(0.5)  # the request is in flight: the graceful stop would wait for it
    started = time.monotonic()
    os.kill(server.pid, signal.SIGINT)
    wait_until(lambda: "got SIGINT: stopping" in server.stderr, 10, message=lambda: server.stderr)
    os.kill(server.pid, signal.SIGINT)
    assert server.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 8  # not the 20 s request nor the 30 s timeout
    slow.join(timeout=10)
    log = server.stderr
    assert "second interrupt: killing 1 worker(s) now" in log
    assert "did not stop in time" not in log  # it was told to stop, not late
    assert wait_session_empty(server.pid) == []


def test_a_signal_sent_to_a_worker_right_after_its_fork_is_not_lost(
    free_ports: Callable[[int], list[int]],
) -> None:
    """Every fork of this master SIGTERMs the new child before it runs a line of hybrid's
    code. Were signals not blocked across the fork, the master's inherited handler would
    swallow it in the child, and the worker would serve as if nothing had been sent (a
    stop during a reload then waited 35 s for that worker). Delivered, it kills each new
    worker, and the master gives up after its boot retries."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import os, signal, sys
        os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGTERM))
        from hybrid.cli import main
        sys.exit(main(["serve", "--ports", "{free_ports(1)[0]}",
                       "--settings", "testproject.settings"]))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=hybrid_env(),
        cwd=REPO_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the master and its worker
            proc.wait()
    assert proc.returncode == 1, stderr[-2000:]
    assert "died 5 times while booting (last one was killed by SIGTERM)" in stderr


def _ignore_errors(call: Callable[..., object], *args: object) -> None:
    try:
        call(*args)
    except Exception:  # the connection is cut: that is the point
        pass


def test_in_flight_request_finishes_during_a_graceful_stop(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    import threading

    server = hybrid_serve(ports=free_ports(1))
    result: dict[str, object] = {}

    def slow_request() -> None:
        result.update(get_json(server.url(server.ports[0], "/hybrid/sleep?s=1.5")))

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)  # a head start: the request is in its handler (no outside sign of it)
    status, log = server.stop(signal.SIGTERM)
    thread.join(timeout=10)
    assert status == 0, log
    assert result.get("slept") is True


def test_graceful_timeout_bounds_the_stop(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    import threading

    server = hybrid_serve("--graceful-timeout", "1", ports=free_ports(1))
    outcome: list[BaseException] = []

    def doomed_request() -> None:
        try:
            get_json(server.url(server.ports[0], "/hybrid/sleep?s=20"))
        except OSError as exc:  # the worker closes the connection after the timeout
            outcome.append(exc)

    thread = threading.Thread(target=doomed_request)
    thread.start()
    time.sleep(0.5)  # a head start: the request is in its handler (no outside sign of it)
    started = time.monotonic()
    status, log = server.stop(signal.SIGTERM)
    assert status == 0
    assert time.monotonic() - started < 5
    assert "still running after the graceful timeout" in log
    thread.join(timeout=10)
    assert len(outcome) == 1
    assert wait_session_empty(server.pid) == []


def test_a_killed_worker_is_replaced_on_the_same_port(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    server = hybrid_serve(ports=free_ports(2))
    before = worker_pids(server)
    victim_port = server.ports[0]
    os.kill(before[victim_port], signal.SIGKILL)

    def replaced() -> dict[int, int] | None:
        after = worker_pids(server)
        return after if after[victim_port] != before[victim_port] else None

    after = wait_until(replaced, 10, ignore=OSError, message=lambda: server.stderr)
    assert after[server.ports[1]] == before[server.ports[1]]
    assert f"worker {before[victim_port]} on port {victim_port} was killed by SIGKILL" in (
        server.stderr
    )


def test_django_setup_runs_only_in_the_workers(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]], tmp_path: Path
) -> None:
    probe = tmp_path / "setup-pids"
    probe.touch()
    server = hybrid_serve(
        ports=free_ports(2),
        settings="testproject.settings_bootprobe",
        env=hybrid_env(BOOTPROBE_FILE=str(probe)),
    )
    pids = set(worker_pids(server).values())
    setup_pids = {int(line) for line in probe.read_text().split()}
    assert setup_pids == pids
    assert server.pid not in setup_pids


def test_options_from_settings_hybrid(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    ports = free_ports(2)
    server = hybrid_serve(
        ports=ports,
        settings="testproject.settings_hybrid",
        env=hybrid_env(HYBRID_TEST_PORTS=",".join(map(str, ports))),
    )
    assert set(worker_pids(server)) == set(ports)


def test_proxy_headers_are_trusted_by_default_and_can_be_switched_off(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    headers = {"X-Real-IP": "203.0.113.9", "X-Forwarded-Proto": "https"}
    trusting = hybrid_serve(ports=free_ports(1))
    body = get_json(trusting.url(trusting.ports[0], "/django/echo"), headers)
    assert (body["remote_addr"], body["scheme"]) == ("203.0.113.9", "https")
    strict = hybrid_serve("--xheaders", "false", ports=free_ports(1))
    body = get_json(strict.url(strict.ports[0], "/django/echo"), headers)
    assert (body["remote_addr"], body["scheme"]) == ("127.0.0.1", "http")


def test_max_body_size_is_enforced_by_the_worker(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    server = hybrid_serve("--max-body-size", "1000", ports=free_ports(1))
    url = server.url(server.ports[0], "/django/echo")
    ok = urllib.request.urlopen(urllib.request.Request(url, data=b"x" * 1000), timeout=10)
    assert ok.status == 200
    with pytest.raises(Exception):  # noqa: B017 - tornado answers 400 or drops the connection
        urllib.request.urlopen(urllib.request.Request(url, data=b"x" * 1001), timeout=10)
    assert get_json(server.url(server.ports[0], "/hybrid/pid"))  # the worker lives on


def test_bind_ports_listens_on_loopback_by_default(free_ports: Callable[[int], list[int]]) -> None:
    ports = free_ports(2)
    bound = bind_ports(Config(ports=tuple(ports)))
    try:
        for port, sockets in bound.items():
            assert [s.getsockname()[:2] for s in sockets] == [("127.0.0.1", port)]
    finally:
        for sockets in bound.values():
            for sock in sockets:
                sock.close()


def test_bind_ports_is_all_or_nothing(free_ports: Callable[[int], list[int]]) -> None:
    first, busy = free_ports(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        with pytest.raises(BindError) as info:
            bind_ports(Config(ports=(first, busy)))
    assert info.value.port == busy
    assert f"port {busy} on 127.0.0.1 is already in use" in str(info.value)
    with socket.socket() as sock:  # the first port was released again
        sock.bind(("127.0.0.1", first))


def test_describe_exit() -> None:
    assert describe_exit(9) == "was killed by SIGKILL"
    assert describe_exit(3 << 8) == "exited with status 3"


def test_workers_get_an_open_files_limit_for_many_connections(
    hybrid_serve: Callable[..., HybridProcess], free_ports: Callable[[int], list[int]]
) -> None:
    """Started with the usual soft limit of 1,024 (here 512), a worker could hold only about
    that many connections; the master raises the soft limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.fail(f"the hard RLIMIT_NOFILE here ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        server = hybrid_serve(ports=free_ports(1))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    for pid in [server.pid, *worker_pids(server).values()]:
        with open(f"/proc/{pid}/limits") as f:
            line = next(line for line in f if line.startswith("Max open files"))
        assert int(line.split()[3]) == wanted, line
