"""Celery workers and beat under the master (``--celery``, ``--celery-beat``), with a real
Redis broker and the real ``celery`` processes of ``tests/projects/celeryproject``: beat's
periodic task runs on the worker; a worker killed is started again; ``hybrid reload``
replaces both; a stop lets a running task finish; status shows them; bad input is one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    REPO_DIR,
    HybridProcess,
    RedisServer,
    hybrid_env,
    session_pids,
    wait_session_empty,
)
from waiting import wait_until

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]

SETTINGS = "celeryproject.settings"
WORKER = "worker --pool solo --loglevel warning"


def celery_env(redis: RedisServer, tmp_path: Path) -> dict[str, str]:
    return hybrid_env(
        CELERYPROJECT_REDIS=redis.url, CELERYPROJECT_BEAT_FILE=str(tmp_path / "beat-schedule")
    )


def status(pidfile: Path) -> dict[str, Any]:
    return dict(json.loads(Path(f"{pidfile}.json").read_text()))


def celery_pids(pidfile: Path) -> dict[str, int | None]:
    """{name: pid} of the Celery processes, from the master's status file."""
    try:
        return {c["name"]: c["pid"] for c in status(pidfile)["celery"]}
    except (OSError, ValueError, KeyError):
        return {}


def ticks(redis: RedisServer) -> int:
    return int(redis.command("GET", "ticks") or 0)


def start(
    hybrid_serve: Serve, ports: list[int], env: dict[str, str], pidfile: Path, *extra: str
) -> HybridProcess:
    return hybrid_serve(
        "--celery", WORKER, "--celery-beat", "--pidfile", str(pidfile), *extra,
        ports=ports, env=env, settings=SETTINGS,
    )  # fmt: skip


def test_beat_schedules_the_worker_runs_and_status_shows_both(
    hybrid_serve: Serve, free_ports: Ports, redis: RedisServer, tmp_path: Path
) -> None:
    redis.command("DEL", "ticks")
    pidfile = tmp_path / "hybrid.pid"
    server = start(hybrid_serve, free_ports(1), celery_env(redis, tmp_path), pidfile)
    wait_until(lambda: ticks(redis) >= 3, 30, message=lambda: server.stderr)
    pids = wait_until(lambda: all(celery_pids(pidfile).values()) and celery_pids(pidfile), 10)
    assert set(pids) == {"celery worker", "celery beat"}
    # The periodic task ran in the worker the master started.
    assert int(redis.command("GET", "tick-worker")) == pids["celery worker"]
    shown = subprocess.run(
        [sys.executable, "-m", "hybrid", "status", "--pidfile", str(pidfile)],
        capture_output=True,
        text=True,
        env=hybrid_env(),
    )
    assert shown.returncode == 0, shown.stderr
    assert "CELERY" in shown.stdout
    assert f"celery worker  {pids['celery worker']}  running" in shown.stdout
    assert f"celery beat  {pids['celery beat']}  running" in shown.stdout
    # Their logs go where the workers' go: the master's stderr.
    assert "celery beat v" in server.stderr
    code, stderr = server.stop()
    assert code == 0
    assert "celery worker" in stderr and "stopped (exited with status 0)" in stderr
    assert wait_session_empty(server.pid) == []


def test_a_killed_celery_worker_is_started_again(
    hybrid_serve: Serve, free_ports: Ports, redis: RedisServer, tmp_path: Path
) -> None:
    pidfile = tmp_path / "hybrid.pid"
    server = start(hybrid_serve, free_ports(1), celery_env(redis, tmp_path), pidfile)
    first = wait_until(lambda: celery_pids(pidfile).get("celery worker"), 20)
    os.kill(first, signal.SIGKILL)
    second = wait_until(
        lambda: (pid := celery_pids(pidfile).get("celery worker")) not in (None, first) and pid,
        20,
        message=lambda: server.stderr,
    )
    assert f"celery worker {first} was killed by SIGKILL; starting it again" in server.stderr
    before = ticks(redis)
    wait_until(lambda: ticks(redis) >= before + 2, 20, message=lambda: server.stderr)
    assert int(redis.command("GET", "tick-worker")) == second
    assert status(pidfile)["celery"][0]["restarts"] == 1
    assert first not in session_pids(server.pid)


def test_reload_replaces_the_celery_worker_and_beat(
    hybrid_serve: Serve, free_ports: Ports, redis: RedisServer, tmp_path: Path
) -> None:
    pidfile = tmp_path / "hybrid.pid"
    server = start(hybrid_serve, free_ports(1), celery_env(redis, tmp_path), pidfile)
    old = wait_until(lambda: all(celery_pids(pidfile).values()) and celery_pids(pidfile), 20)
    reloaded = subprocess.run(
        [sys.executable, "-m", "hybrid", "reload", "--pidfile", str(pidfile), "--wait", "60"],
        capture_output=True,
        text=True,
        env=hybrid_env(),
    )
    assert reloaded.returncode == 0, reloaded.stderr
    new = wait_until(
        lambda: (
            (pids := celery_pids(pidfile))
            and all(pids.values())
            and all(pids[name] != old[name] for name in old)
            and pids
        ),
        30,
        message=lambda: server.stderr,
    )
    wait_until(lambda: not set(old.values()) & set(session_pids(server.pid)), 30)
    before = ticks(redis)
    wait_until(lambda: ticks(redis) >= before + 2, 20, message=lambda: server.stderr)
    assert int(redis.command("GET", "tick-worker")) == new["celery worker"]


def test_stopping_lets_a_running_task_finish(
    hybrid_serve: Serve, free_ports: Ports, redis: RedisServer, tmp_path: Path
) -> None:
    pidfile = tmp_path / "hybrid.pid"
    env = celery_env(redis, tmp_path)
    server = start(hybrid_serve, free_ports(1), env, pidfile)
    wait_until(lambda: celery_pids(pidfile).get("celery worker"), 20)
    key = f"nap-{time.monotonic_ns()}"
    send = (
        "from celeryproject.celery import nap; "
        f"nap.delay(3, {key!r})"
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-c", send],
        check=True,
        env={**env, "DJANGO_SETTINGS_MODULE": SETTINGS},
        cwd=REPO_DIR,
        timeout=60,
    )
    wait_until(lambda: redis.command("GET", f"{key}-started"), 20, message=lambda: server.stderr)
    code, stderr = server.stop()  # Celery's warm shutdown: the nap finishes first
    assert code == 0, stderr
    assert redis.command("GET", key) == b"done"
    assert wait_session_empty(server.pid) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--celery", "beat"], "--celery: 'beat' is not a Celery worker command"),
        (["--celery", "worker 'unclosed"], '--celery: "worker \'unclosed": No closing quotation'),
    ],
)
def test_bad_celery_commands_are_one_line(args: list[str], message: str, free_ports: Ports) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hybrid", "serve", "--settings", SETTINGS, *args,
         "--ports", str(free_ports(1)[0])],
        capture_output=True, text=True, env=hybrid_env(), cwd=REPO_DIR, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"hybrid serve: error: {message}")


def test_a_celery_worker_that_cannot_start_stops_the_master_in_one_line(
    hybrid_serve: Serve, free_ports: Ports, redis: RedisServer, tmp_path: Path
) -> None:
    env = celery_env(redis, tmp_path)
    server = hybrid_serve(
        "--celery", "worker --pool solo", "--celery-app", "no_such_module_here",
        ports=free_ports(1), env=env, settings=SETTINGS, wait=False,
    )  # fmt: skip
    server.proc.wait(timeout=120)
    assert server.proc.returncode == 1
    last = server.stderr.strip().splitlines()[-1]
    assert last.startswith("hybrid serve: error: celery worker died 5 times within 10 s")
    assert wait_session_empty(server.pid) == []


def test_a_master_killed_outright_leaves_no_celery_process(
    hybrid_serve: Serve, free_ports: Ports, redis: RedisServer, tmp_path: Path
) -> None:
    pidfile = tmp_path / "hybrid.pid"
    server = start(hybrid_serve, free_ports(1), celery_env(redis, tmp_path), pidfile)
    pids = wait_until(lambda: all(celery_pids(pidfile).values()) and celery_pids(pidfile), 20)
    server.proc.kill()
    server.proc.wait()
    # The kernel sends each its parent-death signal: Celery's warm shutdown.
    wait_until(
        lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pids.values()),
        30,
        message=lambda: f"still running: {pids}",
    )
