"""``--loop``: the workers run the event loop asked for, and everything they do works on it.

The suite's environment has uvloop (the ``uvloop`` extra), so the default ``auto`` means
uvloop in every other test as well; here each loop is asked for by name, and a missing
uvloop is a real interpreter in which ``import uvloop`` fails.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop
from conftest import PROJECTS_DIR, REPO_DIR, HybridProcess, hybrid_env, wait_session_empty
from waiting import wait_until

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]

UVLOOP = f"uvloop {uvloop.__version__}"


def get(port: int, path: str, timeout: float = 20) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _commands(argv: list[str]) -> list[int]:
    """Pids of live processes whose command line is exactly ``argv`` (commands run in a
    session of their own, so they are looked for everywhere)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if cmdline == [part.encode() for part in argv]:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("args", "loop_class", "described"),
    [
        ((), "uvloop.Loop", UVLOOP),  # auto: uvloop, since it is installed
        (("--loop", "uvloop"), "uvloop.Loop", UVLOOP),
        (("--loop", "asyncio"), "asyncio.unix_events._UnixSelectorEventLoop", "asyncio"),
    ],
    ids=["auto", "uvloop", "asyncio"],
)
def test_workers_run_commands_and_stop_gracefully_on_the_loop_asked_for(
    hybrid_serve: Serve,
    free_ports: Ports,
    args: tuple[str, ...],
    loop_class: str,
    described: str,
) -> None:
    server = hybrid_serve(*args, "--graceful-timeout", "10", ports=free_ports(1))
    port = server.ports[0]
    status, body = get(port, "/hybrid/loop")
    assert (status, body["loop"]) == (200, loop_class)
    worker = body["pid"]
    # The startup line names the loop, once per worker.
    assert server.stderr.count(f"worker {worker} serving http://127.0.0.1:{port} on ") == 1
    assert f"worker {worker} serving http://127.0.0.1:{port} on {described}\n" in server.stderr
    # hybrid.run_command: spawned, supervised and reaped by this loop.
    assert get(port, "/hybrid/command?s=0.1") == (200, {"returncode": 0, "timed_out": False})
    assert get(port, "/hybrid/command?s=0&as_me=1") == (200, {"returncode": 0, "timed_out": False})
    # A graceful stop (the loop's SIGTERM handler) lets the running command finish; the
    # command runs as it was written (argv[0] too, which uvloop's own spawn would replace).
    outcome: list[tuple[int, dict[str, object]]] = []
    thread = threading.Thread(target=lambda: outcome.append(get(port, "/hybrid/command?s=1.53")))
    thread.start()
    wait_until(lambda: _commands(["sleep", "1.53"]), 10, message="the command started")
    code, log = server.stop(signal.SIGTERM)
    thread.join(timeout=10)
    assert code == 0, log
    assert outcome == [(200, {"returncode": 0, "timed_out": False})]
    assert not re.search(r"Traceback|ERROR|unexpected kwargs", log), log
    assert wait_session_empty(server.pid) == []


def _without_uvloop(tmp_path: Path) -> dict[str, str]:
    """An environment whose interpreters cannot import uvloop (a sitecustomize blocks it)."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['uvloop'] = None\n")
    return hybrid_env(PYTHONPATH=f"{tmp_path}:{PROJECTS_DIR}")


def test_loop_uvloop_without_uvloop_is_one_line_naming_the_extra(
    free_ports: Ports, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hybrid", "serve", "--loop", "uvloop", "--ports"]
        + [str(free_ports(1)[0]), "--settings", "testproject.settings"],
        env=_without_uvloop(tmp_path),
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "hybrid serve: error: --loop: uvloop is not installed: pip install 'hybrid[uvloop]' "
        "(or use --loop asyncio)\n"
    )


def test_auto_without_uvloop_serves_on_asyncio(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    server = hybrid_serve(ports=free_ports(1), env=_without_uvloop(tmp_path))
    port = server.ports[0]
    status, body = get(port, "/hybrid/loop")
    assert (status, body["loop"]) == (200, "asyncio.unix_events._UnixSelectorEventLoop")
    assert f"serving http://127.0.0.1:{port} on asyncio\n" in server.stderr
    code, log = server.stop(signal.SIGTERM)
    assert code == 0, log
