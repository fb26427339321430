"""The command line as a user meets it: bad input is one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    PROJECTS_DIR,
    REPO_DIR,
    HybridProcess,
    hybrid_env,
    run_hybrid,
    session_pids,
    status_when_serving,
)
from waiting import wait_until

from hybrid.cli import build_parser

Serve = Callable[..., HybridProcess]


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ("80x1", "--ports: invalid port '80x1': use a number, a range like 8001-8004"),
        ("9000-8000", "--ports: port range '9000-8000' is backwards: write 8000-9000"),
        ("70000", "--ports: port 70000 is out of range: use 1-65535"),
    ],
)
def test_bad_port_syntax_is_a_usage_error(ports: str, message: str) -> None:
    result = run_hybrid("serve", "--ports", ports, "--settings", "testproject.settings")
    assert result.returncode == 2
    assert one_line(result).startswith(f"hybrid serve: error: {message}")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--timeout", "abc", "expected a positive number of seconds, e.g. 30 or 2.5"),
        ("--max-body-size", "10 megs", "expected a size in bytes, or with a K, M or G suffix"),
        ("--gc-threshold", "-1", "expected 0 or a positive whole number"),
        ("--pythonpath", "/nonexistent/dir", "no such directory: /nonexistent/dir"),
    ],
)
def test_bad_option_values_say_what_is_expected(option: str, value: str, expected: str) -> None:
    result = run_hybrid("serve", "--settings", "testproject.settings", option, value)
    assert result.returncode == 2
    assert one_line(result).startswith(
        f"hybrid serve: error: {option}: bad value {value!r}: {expected}"
    )


def test_nginx_host_without_nginx_is_a_warning(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]]
) -> None:
    server = hybrid_serve(
        "--nginx-host", "127.0.0.2", "--nginx-access-log", "off", ports=free_ports(1)
    )
    assert "--nginx-host 127.0.0.2 has no effect without --nginx PORT" in server.stderr
    assert "--nginx-access-log off has no effect without --nginx PORT" in server.stderr


def test_bad_environment_value_names_the_variable() -> None:
    result = run_hybrid("serve", "--settings", "testproject.settings", HYBRID_PORTS="x")
    assert result.returncode == 2
    assert "HYBRID_PORTS: invalid port 'x'" in one_line(result)


def test_unknown_option_is_one_line_too() -> None:
    result = run_hybrid("serve", "--prots", "8001")
    assert result.returncode == 2
    assert one_line(result) == (
        "hybrid serve: error: unrecognized arguments: --prots 8001 (see hybrid serve --help)"
    )


def test_unknown_settings_module(free_ports: Callable[[int], list[int]]) -> None:
    port = str(free_ports(1)[0])
    result = run_hybrid("serve", "--ports", port, "--settings", "nosuchproject.settings")
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(
        "hybrid serve: error: settings module 'nosuchproject.settings' not found"
    )
    assert "--pythonpath" in line


def test_serve_from_the_folder_above_manage_py_names_the_folder(
    tmp_path: Path, free_ports: Callable[[int], list[int]]
) -> None:
    """Where ``django-admin startproject mysite`` leaves you: one folder above manage.py."""
    (tmp_path / "mysite" / "mysite").mkdir(parents=True)
    (tmp_path / "mysite" / "manage.py").write_text("")
    (tmp_path / "mysite" / "mysite" / "__init__.py").write_text("")
    (tmp_path / "mysite" / "mysite" / "settings.py").write_text("SECRET_KEY = 'x'\n")
    env = hybrid_env()
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-m", "hybrid", "serve", "--ports", str(free_ports(1)[0])]
        + ["--settings", "mysite.settings"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert one_line(result) == (
        "hybrid serve: error: settings module 'mysite.settings' not found (No module named "
        f"'mysite.settings'): run it from {tmp_path / 'mysite'}, where manage.py is "
        "(cd mysite), or pass --pythonpath mysite"
    )


def test_missing_settings_says_how_to_give_them() -> None:
    env = hybrid_env()
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-m", "hybrid", "serve", "--ports", "8001"],
        env=env,
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "pass --settings mysite.settings or set DJANGO_SETTINGS_MODULE" in one_line(result)


def test_port_in_use_fails_before_any_worker_starts(
    free_ports: Callable[[int], list[int]],
) -> None:
    free, busy = free_ports(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        result = run_hybrid(
            "serve", "--ports", f"{free},{busy}", "--settings", "testproject.settings"
        )
    assert result.returncode == 1
    assert one_line(result) == (
        f"hybrid serve: error: port {busy} on 127.0.0.1 is already in use: stop the process "
        "that holds it or choose other --ports"
    )
    assert "worker" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            "testproject.settings_broken_routes",
            "HYBRID_ROUTES = 'testproject.broken_routes.routes': importing "
            "'testproject.broken_routes' failed: ModuleNotFoundError: No module named "
            "'hybrid_no_such_module'",
        ),
        (
            "testproject.settings_missing_routes",
            "HYBRID_ROUTES = 'testproject.routes.no_such_list': module 'testproject.routes' "
            "has no attribute 'no_such_list'; define it there or fix the setting",
        ),
    ],
)
def test_routes_that_cannot_load_stop_the_master_without_orphans(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]], settings: str, message: str
) -> None:
    server = hybrid_serve(ports=free_ports(3), settings=settings, wait=False)
    status = server.proc.wait(timeout=60)
    assert status == 1
    errors = [line for line in server.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, server.stderr
    assert errors[0].startswith("hybrid serve: error: worker for port ")
    assert message in errors[0]
    assert "Traceback" not in server.stderr
    assert session_pids(server.pid) == []


def test_python_dash_m_and_version() -> None:
    result = run_hybrid("--version")
    assert result.returncode == 0
    assert result.stdout.strip().startswith("hybrid ")


def test_no_command_prints_help_and_fails() -> None:
    result = run_hybrid()
    assert result.returncode == 2
    assert "serve" in result.stderr


def test_console_script_is_installed() -> None:
    import shutil

    script = shutil.which("hybrid", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script, "the `hybrid` console script is missing: pip install -e ."
    result = subprocess.run([script, "serve", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--ports PORTS" in result.stdout


def test_serve_help_lists_every_option_with_its_env_var() -> None:
    parser = build_parser()
    text = parser._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore
    for flag in ("--ports", "--host", "--settings", "--pythonpath", "--graceful-timeout"):
        assert flag in text
    assert "HYBRID_PORTS" in text


def test_runhybrid_management_command_serves_with_the_same_options(
    free_ports: Callable[[int], list[int]], tmp_path: object
) -> None:
    port = free_ports(1)[0]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "runhybrid",
            "--ports",
            str(port),
            "--settings",
            "testproject.settings",
            "--pythonpath",
            str(PROJECTS_DIR),
        ],
        env=hybrid_env(),
        cwd=REPO_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:

        def pid_answer() -> dict[str, object]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hybrid/pid", timeout=5) as r:
                return dict(json.loads(r.read()))

        body = wait_until(pid_answer, 30, interval=0.1, ignore=OSError, message="runhybrid serving")
        assert body.get("port") == port
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert session_pids(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_runhybrid_bad_ports_is_one_line() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "runhybrid",
            "--ports",
            "80x1",
            "--settings",
            "testproject.settings",
        ],
        env=hybrid_env(),
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert one_line(result).startswith("runhybrid: error: --ports: invalid port '80x1'")


def test_status_shows_workers_as_a_table_and_as_json(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]], tmp_path: object
) -> None:
    import os
    import signal
    from pathlib import Path

    pidfile = Path(str(tmp_path)) / "hybrid.pid"
    server = hybrid_serve("--pidfile", str(pidfile), ports=free_ports(2))
    busy, other = server.ports
    for _ in range(3):
        with urllib.request.urlopen(f"http://127.0.0.1:{busy}/hybrid/pid", timeout=10) as r:
            r.read()
    with urllib.request.urlopen(f"http://127.0.0.1:{other}/hybrid/pid", timeout=10) as r:
        victim = json.loads(r.read())["pid"]
    os.kill(victim, signal.SIGKILL)
    shown: list[object] = []

    def restart_and_requests_shown() -> dict[str, object] | None:
        result = run_hybrid("status", "--pidfile", str(pidfile), "--json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        shown[:] = [status]
        workers = {w["port"]: w for w in status["workers"]}
        if workers.get(other, {}).get("restarts") == 1 and workers[busy]["requests"] >= 3:
            return dict(status)
        return None

    status = wait_until(
        restart_and_requests_shown, 15, interval=0.3, message=lambda: f"status: {shown}"
    )
    workers = {w["port"]: w for w in status["workers"]}  # type: ignore[attr-defined]
    assert status["master"] == server.pid
    assert workers[busy]["state"] == "serving"
    assert workers[busy]["rss_mb"] > 10
    assert workers[other]["pid"] != victim
    table = run_hybrid("status", "--pidfile", str(pidfile))
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"master {server.pid}, up ")
    assert lines[1].split() == [
        "PORT",
        "PID",
        "STATE",
        "UPTIME",
        "REQUESTS",
        "RSS",
        "MB",
        "RESTARTS",
        "LOOP",
    ]
    assert workers[busy]["loop"].split()[0] in ("uvloop", "asyncio")
    assert len(lines) == 4
    server.stop()
    gone = run_hybrid("status", "--pidfile", str(pidfile))
    assert gone.returncode == 1
    assert "no status file" in one_line(gone)


def _free_pair(avoid: list[int]) -> int:
    """A port P such that P and P+1 are both free (and not in ``avoid``)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            base = first.getsockname()[1]
            if base + 1 in avoid or base in avoid or base + 1 > 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", base + 1))
                except OSError:
                    continue
        return int(base)
    raise AssertionError("no two adjacent free ports")


def test_metrics_per_worker_and_merged_by_port(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]], tmp_path: object
) -> None:
    from pathlib import Path

    pidfile = Path(str(tmp_path)) / "hybrid.pid"
    ports = free_ports(2)
    metrics_base = _free_pair(ports)
    hybrid_serve("--pidfile", str(pidfile), "--metrics-port", str(metrics_base), ports=ports)
    for _ in range(3):
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/hybrid/pid", timeout=10) as r:
            r.read()
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/django/pid", timeout=10) as r:
        r.read()
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_base}/metrics", timeout=10) as r:
        text = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    # 3 requests, plus the readiness probe(s) of the hybrid_serve fixture
    pid_line = 'hybrid_requests_total{handler="PidHandler",method="GET",status="200"} '
    served = float(text.split(pid_line)[1].split()[0])
    assert served >= 4
    for name in (
        "hybrid_request_duration_seconds_bucket",
        "hybrid_requests_in_flight",
        "hybrid_commands_running",
        "hybrid_command_timeouts_total",
        "hybrid_event_loop_lag_seconds_count",
        "hybrid_db_threads_in_use",
        "hybrid_db_threads_waiting",
    ):
        assert name in text
    assert "# TYPE hybrid_command_timeouts_total counter" in text  # not a gauge
    # Off the public routes: the public port has no /metrics (it goes to Django: 404).
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/metrics", timeout=10)
    assert info.value.code == 404
    info.value.close()
    wait_until(lambda: status_when_serving(pidfile, ports), 10, message="status file written")
    merged = run_hybrid("metrics", "--pidfile", str(pidfile))
    assert merged.returncode == 0, merged.stderr
    assert (
        f'hybrid_requests_total{{handler="PidHandler",method="GET",port="{ports[0]}",'
        f'status="200"}} {served}'
    ) in merged.stdout
    assert (
        f'hybrid_requests_total{{handler="DjangoFallbackHandler",method="GET",'
        f'port="{ports[1]}",status="200"}} 1.0'
    ) in merged.stdout
    assert f'hybrid_metrics_scrape_ok{{port="{ports[1]}"}} 1.0' in merged.stdout


def test_metrics_port_in_use_is_one_line(free_ports: Callable[[int], list[int]]) -> None:
    port, busy = free_ports(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        result = run_hybrid(
            "serve",
            "--ports",
            str(port),
            "--metrics-port",
            str(busy),
            "--settings",
            "testproject.settings",
        )
    assert result.returncode == 1
    assert f"--metrics-port: port {busy} on 127.0.0.1 is already in use" in one_line(result)


def test_access_log_is_configurable_from_django_logging(
    hybrid_serve: Serve, free_ports: Callable[[int], list[int]], tmp_path: object
) -> None:
    from pathlib import Path

    log_file = Path(str(tmp_path)) / "access.log"
    port = free_ports(1)[0]
    server = hybrid_serve(
        ports=[port],
        settings="testproject.settings_logging",
        env=hybrid_env(ACCESS_LOG_FILE=str(log_file)),
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/django/pid?x=1", timeout=10) as r:
        r.read()
    access = rf"hybrid.access INFO GET /django/pid\?x=1 200 [\d.]+ms port={port}"
    wait_until(
        lambda: any(re.fullmatch(access, line) for line in log_file.read_text().splitlines()),
        10,
        ignore=FileNotFoundError,
        message=lambda: f"{log_file}: {log_file.read_text() if log_file.exists() else None!r}",
    )
    assert "GET /django/pid?x=1" not in server.stderr  # LOGGING took the logger over
