"""Benchmarks against the peers, side by side in one run.

    scripts/bench/run [--quick] [--duration S] [--processes 1,2] [--stacks a,b]
                      [--endpoints a,b] [--extras lag,idle] [--idle-stacks a,b] [--out DIR]

Installs what it lacks (wrk from Debian with apt-get; gunicorn, gevent, uvicorn with uvloop
and httptools, aiomysql, PyMySQL and matplotlib with pip), starts a private MariaDB with
``scripts/mariadb start``, creates and seeds the benchmark project's table
(``scripts/bench/project``, 100 rows), then for each process count and each stack starts the
server on loopback, checks the endpoints (200; the list has 20 rows; Django stacks answer
hello with the headers of Django's default middleware), drives every endpoint with
``wrk -t2 -cC -dNs --latency`` and records req/s, p50/p99, errors (non-2xx + socket
errors) and RSS (peak of samples taken during the run: the largest process, and the
server's process tree). Then the extras:

- ``lag``: one hybrid worker with ``--max-commands 200``, wrk keeping 200 requests in
  flight that each run ``sleep 2`` (then ``true``) through ``hybrid.run_command``, while
  ``/h/lag/probe`` measures the worker's own event-loop lag (5 ms sleeps); plus
  ``process_lag.py`` (the same without HTTP). Target: p99 < 10 ms.
- ``idle``: one worker holding 10,000 idle keep-alive connections (``idle_conns.py``: each
  sends one request and stays open); the worker's RSS before and while held. Target: hybrid
  <= 100 MB.

Writes ``results.json`` (every raw figure, wrk's output included), ``results.md`` and
``results.png`` under ``scripts/bench/results/``. A stack that does not start, or an
endpoint that fails its check, is recorded as "not run: <reason>" and the run goes on.
Every process started here is stopped at the end, on an error and on Ctrl-C (MariaDB too).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROJECT = HERE / "project"
RESULTS = HERE / "results"
CORES = os.cpu_count() or 1
DB_POOL = 32  # hybrid --db-threads (its threads and its native aiomysql pool), raw aiomysql pool
THREADS = 16  # gunicorn gthread --threads
SYNC_2C1 = 2 * CORES + 1  # gunicorn's recommended sync worker count
LIST_ROWS = 20
LAG_COMMANDS = 200
LAG_TARGET_MS = 10.0
LAG_SLEEP = 2.0  # seconds per command: 200 in flight need only 100 spawns a second
IDLE_CONNECTIONS = 10_000
IDLE_TARGET_MB = 100.0

# name -> (path suffix, connections); the 1,000-connection I/O run is the same URL as "io".
ENDPOINTS: dict[str, tuple[str, int]] = {
    "hello": ("hello", 64),
    "row": ("row", 64),
    "list": ("list", 64),
    "query": ("query", 64),
    "io": ("io", 64),
    "cmd": ("cmd", 64),
    "io-1000": ("io", 1000),  # last: a stack that cannot keep up drains its backlog after it
}
DESCRIPTIONS = {
    "hello": "plaintext hello through the default middleware",
    "row": "one row by pk as JSON",
    "list": f"{LIST_ROWS} rows as JSON",
    "query": "a 50 ms query (SLEEP(0.05))",
    "io": "50 ms of simulated I/O (sleep)",
    "cmd": "one command (`true`) per request",
    "io-1000": "50 ms of simulated I/O at 1,000 connections",
}
MINE = ("hybrid", "hybrid-nginx")
# Peers at the same process count; "fastest peer" is the best of these.
PEERS = ("gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent", "uvicorn")
# Headers Django's default middleware adds to every response (SecurityMiddleware,
# XFrameOptionsMiddleware): proof that a stack's hello went through the chain.
MIDDLEWARE_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- tools


def ensure_tools() -> None:
    if shutil.which("wrk") is None:
        log("installing wrk (apt-get)")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    missing = [
        package
        for package, module in (
            ("gunicorn", "gunicorn"),
            ("gevent", "gevent"),
            ("uvicorn", "uvicorn"),
            ("uvloop", "uvloop"),  # uvicorn[standard]: its usual deployment
            ("httptools", "httptools"),
            ("matplotlib", "matplotlib"),
            ("aiomysql", "aiomysql"),
            ("PyMySQL", "pymysql"),
        )
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        log(f"installing {' '.join(missing)} (pip)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    # 10,000 idle connections in the client and in the worker (which inherits the limit:
    # hybrid does not raise its own), 1,000 on each side of the io-1000 run.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * IDLE_CONNECTIONS + 4096
    if soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for package in ("Django", "tornado", "gunicorn", "gevent", "uvicorn", "PyMySQL", "aiomysql"):
        try:
            versions[package.lower()] = version(package)
        except PackageNotFoundError:
            versions[package.lower()] = None
    return {
        "nproc": CORES,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "versions": versions,
    }


# --------------------------------------------------------------------------- database


def start_mariadb(directory: str) -> dict[str, str]:
    started = subprocess.run(
        ["bash", str(REPO / "scripts" / "mariadb"), "start", directory],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        raise SystemExit(f"scripts/mariadb start failed ({started.returncode}):\n{started.stderr}")
    return dict(line.split("=", 1) for line in started.stdout.split() if "=" in line)


def stop_mariadb(directory: str) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "mariadb"), "stop", directory], check=False)


def prepare_database(env: dict[str, str]) -> None:
    import pymysql

    admin = pymysql.connect(
        host=env["MARIADB_HOST"],
        port=int(env["MARIADB_PORT"]),
        user=env["MARIADB_USER"],
        password=env["MARIADB_PASSWORD"],
        ssl_disabled=True,
    )
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {env['BENCH_DATABASE']}")
        cursor.execute(f"CREATE DATABASE {env['BENCH_DATABASE']} CHARACTER SET utf8mb4")
    admin.close()
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v0"],
        env=env,
        cwd=PROJECT,
        check=True,
    )
    seed = (
        "import django; django.setup()\n"
        "from benchapp.models import ROWS, Row\n"
        "Row.objects.bulk_create([Row(pk=n, name=f'row {n}', value=n * 7,"
        " note='x' * (n % 50)) for n in range(1, ROWS + 1)])\n"
    )
    subprocess.run([sys.executable, "-c", seed], env=env, cwd=PROJECT, check=True)


# --------------------------------------------------------------------------- stacks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    name: str
    processes: int  # server worker processes
    argv: list[str]
    port: int  # the port wrk drives
    prefix: str  # URL prefix of the endpoints
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""
    django: bool = True  # runs the benchmark project (its hello must show the middleware)


def hybrid_stack(processes: int, nginx: bool = False, extra: list[str] | None = None) -> Stack:
    ports = [free_port() for _ in range(processes)]
    argv = [sys.executable, "-m", "hybrid", "serve", "--ports", ",".join(map(str, ports))]
    argv += ["--settings", "benchproject.settings", "--pythonpath", str(PROJECT)]
    argv += ["--native-mysql", "true", "--db-threads", str(DB_POOL)]
    argv += ["--log-level", "warning", "--graceful-timeout", "2", *(extra or [])]
    port = ports[0]
    if nginx:
        port = free_port()
        argv += ["--nginx", str(port)]
    note = (
        f"DjangoHandler, default middleware, `--native-mysql true`, `--db-threads {DB_POOL}`"
        f" (= raw-tornado's pool; {DB_POOL} x {processes} x 2 <= MariaDB's 300 connections)"
    )
    if nginx:
        note += f"; nginx on one port in front of {processes} worker port(s)"
    return Stack("hybrid-nginx" if nginx else "hybrid", processes, argv, port, "/h/", {}, note)


def raw_stack(processes: int) -> Stack:
    port = free_port()
    argv = [sys.executable, str(HERE / "raw_tornado.py"), str(port), str(processes)]
    env = {"BENCH_POOL_SIZE": str(DB_POOL)}
    note = f"no Django; aiomysql pool {DB_POOL} per process (the ceiling)"
    return Stack("raw-tornado", processes, argv, port, "/", env, note, django=False)


def gunicorn_stack(kind: str, workers: int, name: str = "") -> Stack:
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "benchproject.wsgi:application"]
    argv += ["-b", f"127.0.0.1:{port}", "-w", str(workers), "-k", kind, "--log-level", "warning"]
    argv += ["--chdir", str(PROJECT), "--graceful-timeout", "2", "--backlog", "2048"]
    env: dict[str, str] = {}
    note = "Django sync views, PyMySQL"
    if kind == "sync":
        note += (
            f"; 2 x cores + 1 = {workers} workers, for reference (not an equal-count peer)"
            if name
            else f"; {workers} worker(s): the equal-count peer the targets use"
        )
    if kind == "gthread":
        argv += ["--threads", str(THREADS)]
        note += f", {THREADS} threads per worker"
    if kind == "gevent":
        argv += ["--worker-connections", "1000"]
        age = os.environ.get("BENCH_GEVENT_CONN_MAX_AGE", "60")
        env["BENCH_CONN_MAX_AGE"] = age
        note += (
            f" monkey-patched by gunicorn's gevent worker, --worker-connections 1000,"
            f" CONN_MAX_AGE {age} (a connection per greenlet; BENCH_GEVENT_CONN_MAX_AGE)"
        )
    return Stack(name or f"gunicorn-{kind}", workers, argv, port, "/sync/", env, note)


def uvicorn_stack(processes: int) -> Stack:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "benchproject.asgi:application", "--port", str(port)]
    argv += ["--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
    argv += ["--app-dir", str(PROJECT), "--backlog", "2048", "--timeout-keep-alive", "75"]
    if processes > 1:
        argv += ["--workers", str(processes)]
    note = (
        "Django async views (async ORM: sync_to_async, PyMySQL); uvloop + httptools;"
        " CONN_MAX_AGE 0, as Django advises under ASGI (each request runs on a new thread, so"
        " persistent connections pile up past MariaDB's 300: error 1040);"
        " --timeout-keep-alive 75 (hybrid's keep-alive; uvicorn's default 5 s drops idle"
        " connections)"
    )
    env = {"BENCH_CONN_MAX_AGE": "0"}
    return Stack("uvicorn", processes, argv, port, "/async/", env, note)


def build_stacks(
    processes: int, quick: bool = False
) -> list[tuple[str, Callable[[], Stack] | str]]:
    """(name, factory or "not run: reason") for one process count."""
    stacks: list[tuple[str, Callable[[], Stack] | str]] = []
    if processes == 1:
        stacks.append(("hybrid", lambda: hybrid_stack(1)))
    else:
        stacks.append(("hybrid", "not run: one port per worker; measured behind nginx"))
    stacks += [
        ("hybrid-nginx", lambda: hybrid_stack(processes, nginx=True)),
        ("raw-tornado", lambda: raw_stack(processes)),
        ("gunicorn-sync", lambda: gunicorn_stack("sync", processes)),
        ("gunicorn-gthread", lambda: gunicorn_stack("gthread", processes)),
        ("gunicorn-gevent", lambda: gunicorn_stack("gevent", processes)),
        ("uvicorn", lambda: uvicorn_stack(processes)),
    ]
    name = f"gunicorn-sync-{SYNC_2C1}w"
    if quick:
        stacks.append((name, "not run: --quick (reference only, not an equal-count peer)"))
    else:
        stacks.append((name, lambda: gunicorn_stack("sync", SYNC_2C1, name)))
    return stacks


def get(url: str, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before serving")
        try:
            if get(url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no 200 from {url} within {timeout:.0f} s")


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def pid_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_sample(root: int) -> tuple[float, float, int]:
    """(total MB, largest process MB, processes) of the tree under ``root``; commands that
    a worker runs (``true``, ``sleep``) are counted in the total only while they live."""
    sizes = [pid_rss_mb(pid) for pid in tree_pids(root)]
    sizes = [s for s in sizes if s > 0]
    return sum(sizes), max(sizes, default=0.0), len(sizes)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever is left of the session (workers, nginx, commands)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Server:
    """A stack's server process (own session), its log, stopped on exit."""

    def __init__(self, stack: Stack, env: dict[str, str], workdir: str, tag: str = "") -> None:
        self.stack = stack
        self.logpath = os.path.join(workdir, f"{stack.name}-{stack.processes}{tag}.log")
        self.logfile = open(self.logpath, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            stack.argv,
            env={**env, **stack.env},
            cwd=PROJECT,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{stack.port}{stack.prefix}"

    def ready(self) -> str | None:
        """None once hello answers 200, else why not (with the log's tail)."""
        try:
            wait_ready(self.proc, self.base + "hello")
            return None
        except RuntimeError as error:
            tail = self.log_tail(3)
            return f"{error}" + (f" ({' | '.join(tail)})" if tail else "")

    def log_tail(self, lines: int = 12) -> list[str]:
        """The last lines of the server's output (kept in the JSON when a run had errors)."""
        self.logfile.flush()
        return Path(self.logpath).read_text(errors="replace").strip().splitlines()[-lines:]

    def worker_pid(self) -> int:
        """The serving process: the largest child of the root, or the root itself."""
        pids = tree_pids(self.proc.pid)[1:]
        return max(pids, key=pid_rss_mb) if pids else self.proc.pid

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)
        self.logfile.close()


# --------------------------------------------------------------------------- wrk

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def run_wrk(url: str, connections: int, seconds: int, root: int) -> dict[str, Any]:
    threads = min(2, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += ["--timeout", "5s", url]
    peak = {"total": 0.0, "largest": 0.0, "processes": 0}
    done = threading.Event()

    def take() -> None:
        total, largest, count = rss_sample(root)
        peak["total"] = max(peak["total"], total)
        peak["largest"] = max(peak["largest"], largest)
        peak["processes"] = max(peak["processes"], count)

    def sample() -> None:
        while not done.wait(0.5):
            take()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    finally:
        done.set()
        sampler.join()
    if os.environ.get("BENCH_VERBOSE"):
        print(out, flush=True)
    take()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"wrk printed no Requests/sec: {out[-300:]!r}")
    latency = dict(re.findall(r"^\s+(50|75|90|99)(?:\.000)?%\s+(\S+)\s*$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {}
    )
    total = re.search(r"(\d+) requests in", out)
    requests = int(total[1]) if total else 0
    return {
        "rps": float(rps[1]),
        "requests": requests,
        # wrk prints latencies of completed requests only: none completed, none to show.
        **{
            f"p{q}_ms": to_ms(latency[q]) if q in latency and requests else None
            for q in ("50", "75", "90", "99")
        },
        "non2xx": int(non2xx[1]) if non2xx else 0,
        "socket_errors": sum(socket_errors.values()),
        "socket_error_kinds": socket_errors,
        "errors": (int(non2xx[1]) if non2xx else 0) + sum(socket_errors.values()),
        "rss_mb": round(peak["total"], 1),
        "rss_process_mb": round(peak["largest"], 1),
        "processes_seen": peak["processes"],
        "wrk": out,
    }


# --------------------------------------------------------------------------- checks


def check(stack: Stack, endpoint: str, headers: dict[str, str], body: bytes) -> str | None:
    """Why the answer of ``endpoint`` is not what the benchmark means to measure, or None."""
    if endpoint == "list":
        try:
            count = len(json.loads(body)["rows"])
        except (ValueError, KeyError, TypeError):
            return f"list answered no JSON rows: {body[:80]!r}"
        if count != LIST_ROWS:
            return f"list answered {count} rows, not {LIST_ROWS}"
    if endpoint == "hello" and stack.django:
        missing = [f"{k}: {v}" for k, v in MIDDLEWARE_HEADERS.items() if headers.get(k) != v]
        if missing:
            return "hello lacks the default middleware's headers: " + ", ".join(missing)
    return None


# --------------------------------------------------------------------------- the run


def bench_stack(
    factory: Callable[[], Stack],
    env: dict[str, str],
    endpoints: list[str],
    seconds: int,
    warmup: int,
    workdir: str,
) -> tuple[Stack, list[dict[str, Any]] | str]:
    stack = factory()
    with Server(stack, env, workdir) as server:
        failed = server.ready()
        if failed:
            return stack, f"not run: {failed}"
        rows = []
        for endpoint in endpoints:
            suffix, connections = ENDPOINTS[endpoint]
            url = server.base + suffix
            row: dict[str, Any] = {
                "stack": stack.name,
                "processes": stack.processes,
                "endpoint": endpoint,
                "connections": connections,
                "url": url,
            }
            try:
                status, headers, body = get(url, timeout=30)
            except OSError as error:
                status, headers, body = 0, {}, str(error).encode()
            problem = (
                f"GET {suffix} answered {status}: {body[:120]!r}"
                if status != 200
                else check(stack, endpoint, headers, body)
            )
            if endpoint == "hello" and stack.django:
                row["middleware_headers"] = {k: headers.get(k) for k in MIDDLEWARE_HEADERS}
            if problem:
                row["status"] = f"not run: {problem}"
            else:
                try:
                    if warmup:
                        run_wrk(url, connections, warmup, server.proc.pid)
                    # 1,000 connections need a few seconds before anything completes.
                    length = max(seconds, 3 if seconds < 5 else 5) if connections > 100 else seconds
                    row.update(run_wrk(url, connections, length, server.proc.pid))
                    row["seconds"] = length
                    row["status"] = "ok"
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    row["status"] = f"not run: {error}"
            log(
                f"  {stack.name:<18} {endpoint:<8} "
                + (
                    f"{row['rps']:8.0f} req/s  p50 {fmt_ms(row['p50_ms'])}"
                    f"  p99 {fmt_ms(row['p99_ms'])}  err {row['errors']}"
                    f"  rss {row['rss_process_mb']:.0f}/{row['rss_mb']:.0f} MB"
                    if row["status"] == "ok"
                    else row["status"]
                )
            )
            if row["status"] != "ok" or row.get("errors"):
                row["server_log_tail"] = server.log_tail()
            rows.append(row)
            if server.proc.poll() is not None:
                return (
                    stack,
                    f"not run: server exited with {server.proc.returncode} during {endpoint}",
                )
        return stack, rows


def measure_lag(env: dict[str, str], workdir: str, seconds: int) -> dict[str, Any]:
    """A hybrid worker's event-loop lag with 200 commands in flight (and the standalone
    ``process_lag.py`` figure)."""
    result: dict[str, Any] = {"commands": LAG_COMMANDS, "target_p99_ms": LAG_TARGET_MS}
    stack = hybrid_stack(1, extra=["--max-commands", str(LAG_COMMANDS)])
    stack.note += f", `--max-commands {LAG_COMMANDS}`"
    result["stack"] = stack.note
    with Server(stack, env, workdir, "-lag") as server:
        failed = server.ready()
        if failed:
            result["status"] = f"not run: {failed}"
            return result
        probe = f"{server.base}lag/probe?seconds="
        phases: dict[str, Any] = {}
        phases["idle"] = json.loads(get(probe + "1", timeout=30)[2])
        sleep = f"sleep {LAG_SLEEP:g}"
        for phase, path in ((sleep, f"lag/sleep?seconds={LAG_SLEEP:g}"), ("true", "lag/true")):
            load: dict[str, Any] = {}

            def drive(path: str = path, load: dict[str, Any] = load) -> None:
                try:
                    load.update(
                        run_wrk(server.base + path, LAG_COMMANDS, seconds + 3, server.proc.pid)
                    )
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    load["error"] = str(error)

            driver = threading.Thread(target=drive)
            driver.start()
            time.sleep(1.5)  # 200 commands in flight before the probe starts
            try:
                status, _, body = get(probe + str(seconds), timeout=seconds + 30)
                figures = json.loads(body) if status == 200 else {"error": f"probe {status}"}
            except (OSError, ValueError) as error:
                figures = {"error": str(error)}
            driver.join()
            figures["load"] = {
                k: load.get(k) for k in ("rps", "p50_ms", "p99_ms", "errors", "error") if k in load
            }
            phases[phase] = figures
            log(
                f"  lag, {phase:<9} {json.dumps({k: v for k, v in figures.items() if k != 'load'})}"
            )
        result["phases"] = phases
        result["status"] = "ok"
    standalone = subprocess.run(
        [sys.executable, str(HERE / "process_lag.py"), "--commands", str(LAG_COMMANDS)]
        + ["--rounds", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        result["standalone"] = json.loads(standalone.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result["standalone"] = {"error": (standalone.stderr or standalone.stdout)[-300:]}
    log(f"  lag, standalone {json.dumps(result['standalone'])}")
    return result


# The cheap first request of each idle connection (--quick); the full run uses hello.
IDLE_PATHS = {"hybrid": "/h/ping", "raw-tornado": "/hello", "uvicorn": "/ping"}


def measure_idle(
    name: str, env: dict[str, str], workdir: str, connections: int, django_path: bool
) -> dict[str, Any]:
    """RSS of one worker before and while it holds ``connections`` idle keep-alive
    connections, each of which sent one request first."""
    from idle_conns import open_idle

    factories: dict[str, Callable[[], Stack]] = {
        "hybrid": lambda: hybrid_stack(1),
        "raw-tornado": lambda: raw_stack(1),
        "uvicorn": lambda: uvicorn_stack(1),
    }
    if name not in factories:
        return {"status": f"not run: no idle measurement for {name}"}
    stack = factories[name]()
    path = stack.prefix + "hello" if django_path else IDLE_PATHS[name]
    result: dict[str, Any] = {"connections": connections, "path": path, "note": stack.note}
    with Server(stack, env, workdir, "-idle") as server:
        failed = server.ready()
        if failed:
            result["status"] = f"not run: {failed}"
            return result
        url = f"http://127.0.0.1:{stack.port}{path}"
        for _ in range(50):
            get(url)
        worker = server.worker_pid()
        result["rss_before_mb"] = round(pid_rss_mb(worker), 1)

        async def scenario() -> dict[str, Any]:
            idle = await open_idle("127.0.0.1", stack.port, path, connections)
            peak = pid_rss_mb(worker)
            for _ in range(6):
                await asyncio.sleep(0.5)
                peak = max(peak, pid_rss_mb(worker))
            held = idle.still_open()
            figures = {
                "opened": len(idle.writers),
                "open_seconds": round(idle.seconds, 1),
                "errors": idle.errors,
                "still_open_after_3s": held,
                "rss_held_mb": round(peak, 1),
            }
            await idle.close()
            return figures

        result.update(asyncio.run(scenario()))
        time.sleep(1)
        result["rss_after_close_mb"] = round(pid_rss_mb(worker), 1)
        if server.proc.poll() is not None:
            result["status"] = f"not run: server exited with {server.proc.returncode}"
            return result
    held = result["still_open_after_3s"]
    result["kb_per_connection"] = (
        round((result["rss_held_mb"] - result["rss_before_mb"]) * 1024 / held, 1) if held else None
    )
    result["status"] = "ok" if held == connections else f"only {held} of {connections} held"
    log(
        f"  idle {name}: {held}/{connections} held, worker RSS {result['rss_before_mb']} ->"
        f" {result['rss_held_mb']} MB ({result['open_seconds']} s to open,"
        f" errors {result['errors']})"
    )
    return result


def main() -> None:
    """Parse the command line, run every stack and endpoint, write the results."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The full run (no --quick: process counts 1 and 2, 10 s per endpoint after 2 s"
        " of warm-up) takes about 25 minutes on 2 cores.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a pass of about 2.5 minutes on 2 cores: process count 1 only (unless"
        " --processes), 2 s per endpoint (3 s at 1,000 connections) without a separate"
        " warm-up, no gunicorn-sync-2c+1w, lag probes of 3 s, the 10k idle connections on"
        " hybrid only (with /h/ping as their request)",
    )
    parser.add_argument("--duration", type=int, help="seconds per endpoint (default 10; 2 quick)")
    parser.add_argument("--processes", help="process counts, comma-separated (default 1,2)")
    parser.add_argument("--stacks", help="only these stacks, comma-separated")
    parser.add_argument("--endpoints", help="only these endpoints: " + ",".join(ENDPOINTS))
    parser.add_argument("--extras", default="lag,idle", help="lag, idle, both (default) or none")
    parser.add_argument(
        "--idle-stacks",
        help="stacks for the idle-connection test (default hybrid,raw-tornado,uvicorn;"
        " hybrid with --quick)",
    )
    parser.add_argument("--idle-connections", type=int, default=IDLE_CONNECTIONS)
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument(
        "--db-pool",
        type=int,
        default=DB_POOL,
        help=f"hybrid --db-threads and raw-tornado's pool size (default {DB_POOL})",
    )
    args = parser.parse_args()
    globals()["DB_POOL"] = args.db_pool  # read by the stack builders
    seconds = args.duration or (2 if args.quick else 10)
    warmup = 0 if args.quick else 2
    counts = [int(n) for n in (args.processes or ("1" if args.quick else "1,2")).split(",")]
    endpoints = args.endpoints.split(",") if args.endpoints else list(ENDPOINTS)
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        parser.error(f"unknown endpoints: {', '.join(sorted(unknown))}")
    wanted = set(args.stacks.split(",")) if args.stacks else None
    extras = set() if args.extras == "none" else set(args.extras.split(","))
    idle_stacks = (
        args.idle_stacks or ("hybrid" if args.quick else "hybrid,raw-tornado,uvicorn")
    ).split(",")

    ensure_tools()
    # Ctrl-C and SIGTERM both unwind through the finally blocks below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = tempfile.mkdtemp(prefix="hybrid-peers-")
    mariadb_dir = os.path.join(workdir, "mariadb")
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["scripts/bench/run", *sys.argv[1:]]),
        "seconds_per_endpoint": seconds,
        "warmup_s": warmup,
        "wrk": "wrk -t2 -c{connections} -d{seconds}s --latency --timeout 5s",
        "endpoints": {
            e: {"path": p, "connections": c, "what": DESCRIPTIONS[e]}
            for e, (p, c) in ENDPOINTS.items()
        },
        "stacks": {},
        "runs": [],
    }
    log(f"MariaDB in {mariadb_dir}")
    try:
        db = start_mariadb(mariadb_dir)
        env = dict(os.environ)
        env.update({k: v for k, v in db.items() if k.startswith("MARIADB_")})
        env["BENCH_DATABASE"] = "hybrid_bench"
        env["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PROJECT), str(REPO), os.environ.get("PYTHONPATH")])
        )
        prepare_database(env)
        for processes in counts:
            for name, factory in build_stacks(processes, quick=args.quick and not wanted):
                if wanted is not None and name not in wanted:
                    continue
                key = f"{name}@{processes}"
                if isinstance(factory, str):
                    count = SYNC_2C1 if name == f"gunicorn-sync-{SYNC_2C1}w" else processes
                    results["stacks"][key] = {"status": factory, "processes": count}
                    log(f"{key}: {factory}")
                    continue
                log(f"{key}: starting")
                stack, outcome = bench_stack(factory, env, endpoints, seconds, warmup, workdir)
                info: dict[str, Any] = {
                    "processes": stack.processes,
                    "note": stack.note,
                    "argv": " ".join(stack.argv[1:]),
                    "env": stack.env,
                }
                if isinstance(outcome, str):
                    info["status"] = outcome
                    log(f"{key}: {outcome}")
                else:
                    info["status"] = "ok"
                    for row in outcome:
                        row["group"] = processes
                        if "middleware_headers" in row:
                            info["middleware"] = (
                                "default chain" if row["status"] == "ok" else row["status"]
                            )
                    results["runs"].extend(outcome)
                results["stacks"][key] = info
        if "lag" in extras and (wanted is None or "hybrid" in wanted):
            log("lag: hybrid worker with 200 commands in flight")
            results["lag"] = measure_lag(env, workdir, 3 if args.quick else 6)
        if "idle" in extras:
            results["idle"] = {}
            for name in idle_stacks:
                log(f"idle: {name} with {args.idle_connections} keep-alive connections")
                results["idle"][name] = measure_idle(
                    name, env, workdir, args.idle_connections, django_path=not args.quick
                )
    except KeyboardInterrupt:
        log("interrupted: stopping")
        results["interrupted"] = True
    finally:
        stop_mariadb(mariadb_dir)
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_s"] = round(time.monotonic() - started)
    results["targets"] = evaluate_targets(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(render_markdown(results))
    try:
        plot(results, out / "results.png")
    except Exception as error:  # noqa: BLE001 - the table matters more than the plot
        log(f"no plot: {error}")
    log(f"wrote {out}/results.json, results.md, results.png in {results['elapsed_s']} s")


# --------------------------------------------------------------------------- reports

RATIO_TARGETS = [
    # (endpoint, against, minimum ratio); "hybrid" is hybrid at 1 process, hybrid-nginx above
    ("row", "raw-tornado", 0.85),
    ("row", "gunicorn-gevent", 1.3),
    ("query", "raw-tornado", 0.9),
    ("query", "gunicorn-gevent", 1.2),
    ("io-1000", "raw-tornado", 0.9),
    ("io-1000", "gunicorn-sync", 10.0),
    ("hello", "gunicorn-gevent", 1.0),
]


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


def table(results: dict[str, Any], group: int) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["endpoint"], r["stack"]): r for r in results["runs"] if r["group"] == group}


def ok(row: dict[str, Any] | None) -> bool:
    return row is not None and row.get("status") == "ok"


def mine_for(group: int) -> str:
    return "hybrid" if group == 1 else "hybrid-nginx"


def fastest_peer(
    cells: dict[tuple[str, str], dict[str, Any]], endpoint: str
) -> dict[str, Any] | None:
    peers = [cells[(endpoint, p)] for p in PEERS if ok(cells.get((endpoint, p)))]
    return max(peers, key=lambda r: r["rps"]) if peers else None


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    for group in sorted({r["group"] for r in results["runs"]}):
        cells = table(results, group)
        mine = mine_for(group)
        for endpoint, against, minimum in RATIO_TARGETS:
            a, b = cells.get((endpoint, mine)), cells.get((endpoint, against))
            entry: dict[str, Any] = {
                "target": f"{endpoint}: {mine} >= {minimum}x {against} ({group} process(es))",
                "group": group,
                "threshold": minimum,
            }
            if ok(a) and ok(b) and b["rps"]:  # type: ignore[index]
                ratio = a["rps"] / b["rps"]  # type: ignore[index]
                entry.update(measured=round(ratio, 3), met=ratio >= minimum)
                entry["detail"] = f"{a['rps']:,.0f} vs {b['rps']:,.0f} req/s"  # type: ignore[index]
            elif ok(a) and ok(b):
                entry.update(measured=None, met=True, detail=f"{against} completed no request")
            else:
                entry.update(measured=None, met=None, detail="not measured")
            targets.append(entry)
    lag = results.get("lag", {})
    for phase in (f"sleep {LAG_SLEEP:g}",):  # `true` exits at once: never 200 in flight
        figures = lag.get("phases", {}).get(phase)
        entry = {
            "target": f"command runner: worker loop lag p99 < {LAG_TARGET_MS:.0f} ms with"
            f" {LAG_COMMANDS} commands (`{phase}`) in flight",
            "threshold": LAG_TARGET_MS,
        }
        if figures and figures.get("p99_ms") is not None:
            p99 = figures["p99_ms"]
            entry.update(measured=round(p99, 2), met=lag_met(figures))
            entry["detail"] = (
                f"p50 {figures['p50_ms']:.1f} / p99 {p99:.1f} / max {figures['max_ms']:.1f} ms;"
                f" commands running mean {figures['commands_running_mean']:.0f},"
                f" max {figures['commands_running_max']}"
            )
        else:
            entry.update(measured=None, met=None, detail=lag.get("status", "not measured"))
        targets.append(entry)
    idle = results.get("idle", {}).get("hybrid")
    entry = {
        "target": f"{IDLE_CONNECTIONS:,} idle keep-alive connections: hybrid worker RSS"
        f" <= {IDLE_TARGET_MB:.0f} MB",
        "threshold": IDLE_TARGET_MB,
    }
    if idle and "rss_held_mb" in idle:
        held = idle["still_open_after_3s"]
        entry.update(
            measured=idle["rss_held_mb"],
            met=idle["rss_held_mb"] <= IDLE_TARGET_MB and held >= IDLE_CONNECTIONS,
            detail=f"{held:,} held; {idle['rss_before_mb']} MB before",
        )
    else:
        entry.update(measured=None, met=None, detail=(idle or {}).get("status", "not measured"))
    targets.append(entry)
    return targets


def lag_met(figures: dict[str, Any]) -> bool | None:
    """p99 < 10 ms, judged only with about 200 commands running (unless already over)."""
    if figures["p99_ms"] >= LAG_TARGET_MS:
        return False
    return True if figures["commands_running_mean"] >= 0.9 * LAG_COMMANDS else None


def met_text(met: bool | None) -> str:
    return "–" if met is None else ("yes" if met else "**no**")


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = m.get("versions", {})
    groups = sorted({r["group"] for r in results["runs"]})
    lines = [
        "# hybrid vs the peers",
        "",
        f"{results['date']}; `{results.get('command', 'scripts/bench/run')}`"
        f" ({results['mode']} pass, {results['elapsed_s']} s); {m['nproc']} cores ({m['cpu']}),"
        f" Linux {m['kernel']}, Python {m['python']}, Django {v.get('django')}, Tornado"
        f" {v.get('tornado')}. Each endpoint: {results['seconds_per_endpoint']} s of"
        f" `{results['wrk']}`"
        + (f" after {results['warmup_s']} s of warm-up" if results.get("warmup_s") else "")
        + " (io-1000: at least 3 s), wrk on the same cores as the servers; MariaDB on"
        " loopback, no TLS. Ratios compare stacks of this run at the same process count only;"
        " absolute numbers depend on the machine and its neighbours.",
        "",
        "## Headline",
        "",
        "hybrid (DjangoHandler through the default middleware, native MySQL; behind nginx"
        " when more than one process) against the fastest peer (gunicorn sync/gthread/gevent,"
        " uvicorn at the same process count) and against raw Tornado + aiomysql (the ceiling).",
        "",
        "| processes | endpoint | hybrid req/s | fastest peer | hybrid / fastest peer |"
        " raw-tornado req/s | hybrid / raw-tornado |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        cells = table(results, group)
        mine = mine_for(group)
        for endpoint in dict.fromkeys(r["endpoint"] for r in results["runs"]):
            a = cells.get((endpoint, mine))
            best = fastest_peer(cells, endpoint)
            raw = cells.get((endpoint, "raw-tornado"))
            mine_text = f"{a['rps']:,.0f}" if ok(a) else "–"  # type: ignore[index]
            peer_text = f"{best['stack']} {best['rps']:,.0f}" if best else "–"
            raw_text = f"{raw['rps']:,.0f}" if ok(raw) else "–"  # type: ignore[index]
            vs_peer = (
                f"**{a['rps'] / best['rps']:.2f}x**" if ok(a) and best and best["rps"] else "–"
            )  # type: ignore[index]
            vs_raw = (
                f"**{a['rps'] / raw['rps']:.2f}x**" if ok(a) and ok(raw) and raw["rps"] else "–"
            )  # type: ignore[index]
            lines.append(
                f"| {group} | {endpoint} | {mine_text} | {peer_text} | {vs_peer} |"
                f" {raw_text} | {vs_raw} |"
            )
    lines += [
        "",
        "## Performance targets",
        "",
        "| target | measured | detail | met |",
        "|---|---|---|---|",
    ]
    for t in results.get("targets", []):
        measured = t.get("measured")
        if measured is None:
            shown = "–"
        elif "lag" in t["target"]:
            shown = f"p99 {measured:.1f} ms"
        elif "RSS" in t["target"]:
            shown = f"{measured:.0f} MB"
        else:
            shown = f"{measured:.2f}x"
        lines.append(
            f"| {t['target']} | {shown} | {t.get('detail', '')} | {met_text(t.get('met'))} |"
        )
    lines.append("")
    for group in groups:
        cells = table(results, group)
        stacks = list(dict.fromkeys(r["stack"] for r in results["runs"] if r["group"] == group))
        endpoints = list(dict.fromkeys(r["endpoint"] for r in results["runs"]))
        lines += [
            f"## {group} process(es): every figure",
            "",
            "Cells: req/s; p50 / p99 latency; errors (non-2xx + socket errors); peak RSS of"
            " the largest process (a worker) and of the whole tree (master, workers, nginx).",
            "",
        ]
        lines.append("| endpoint (connections) | " + " | ".join(stacks) + " |")
        lines.append("|---" * (len(stacks) + 1) + "|")
        for endpoint in endpoints:
            row = []
            for stack in stacks:
                r = cells.get((endpoint, stack))
                if r is None:
                    row.append("–")
                elif not ok(r):
                    row.append(r["status"].replace("|", "/")[:70])
                else:
                    row.append(
                        f"**{r['rps']:,.0f}**<br>{fmt_ms(r['p50_ms'])} / {fmt_ms(r['p99_ms'])}"
                        f"<br>err {r['errors']}<br>{r['rss_process_mb']:.0f} MB/proc,"
                        f" {r['rss_mb']:.0f} total"
                    )
            conns = ENDPOINTS.get(endpoint, ("", "?"))[1]
            lines.append(f"| {endpoint} ({conns}) | " + " | ".join(row) + " |")
        lines += ["", "req/s against raw Tornado + aiomysql and against the fastest peer:", ""]
        lines.append(
            "| endpoint | "
            + " | ".join(f"{s} / raw" for s in stacks)
            + " | fastest peer | "
            + " | ".join(f"{s} / peer" for s in MINE if s in stacks)
            + " |"
        )
        lines.append("|---" * (len(stacks) + 2 + sum(s in stacks for s in MINE)) + "|")
        for endpoint in endpoints:
            raw = cells.get((endpoint, "raw-tornado"))
            base = raw["rps"] if ok(raw) and raw["rps"] else None  # type: ignore[index]
            row = []
            for stack in stacks:
                r = cells.get((endpoint, stack))
                row.append(f"{r['rps'] / base:.2f}" if ok(r) and base else "–")  # type: ignore[index]
            best = fastest_peer(cells, endpoint)
            row.append(best["stack"] if best else "–")
            for mine in MINE:
                if mine in stacks:
                    r = cells.get((endpoint, mine))
                    good = ok(r) and best and best["rps"]
                    row.append(f"{r['rps'] / best['rps']:.2f}" if good else "–")  # type: ignore[index]
            lines.append(f"| {endpoint} | " + " | ".join(row) + " |")
        lines.append("")
    lag = results.get("lag")
    if lag:
        lines += [
            "## Event-loop lag during command load",
            "",
            f"{lag.get('stack', '')}. wrk keeps {LAG_COMMANDS} requests in flight, each"
            " running one command with `hybrid.run_command` (plain Tornado handler:"
            " `/h/lag/sleep`, `/h/lag/true`); meanwhile `/h/lag/probe` measures, on the"
            " worker's loop, how late 5 ms sleeps wake. `true` exits at once, so it keeps"
            " few commands running but spawns as fast as the worker can: shown for"
            " information; the target is the `sleep` row. Standalone: `process_lag.py`, one"
            " loop without HTTP.",
            "",
            "| load | p50 | p99 | max | commands running (mean / max) | load req/s |"
            " met (p99 < 10 ms) |",
            "|---|---|---|---|---|---|---|",
        ]
        if lag.get("status") != "ok":
            lines.append(f"| {lag.get('status')} | | | | | | |")
        for phase, f in lag.get("phases", {}).items():
            if f.get("p99_ms") is None:
                lines.append(f"| {phase} | {f.get('error', 'n/a')} | | | | | |")
                continue
            load = f.get("load", {})
            lines.append(
                f"| {'no load' if phase == 'idle' else f'{LAG_COMMANDS} requests of `{phase}`'} |"
                f" {f['p50_ms']:.1f} ms | {f['p99_ms']:.1f} ms | {f['max_ms']:.1f} ms |"
                f" {f['commands_running_mean']:.0f} / {f['commands_running_max']} |"
                f" {load.get('rps', 0):,.0f} |"
                f" {'–' if phase == 'idle' else met_text(lag_met(f))} |"
            )
        s = lag.get("standalone", {})
        if "p99_ms" in s:
            lines.append(
                f"| standalone, {s['commands']} x `{s['command']}` | {s['p50_ms']:.1f} ms |"
                f" {s['p99_ms']:.1f} ms | {s['max_ms']:.1f} ms | {s['commands']} | – |"
                f" {met_text(s['p99_ms'] < LAG_TARGET_MS)} |"
            )
        lines.append("")
    idle = results.get("idle")
    if idle:
        lines += [
            f"## One worker holding {IDLE_CONNECTIONS:,} idle keep-alive connections",
            "",
            "`idle_conns.py` opens the connections (256 connecting at once), sends one GET on"
            " each, reads the answer and keeps the connection open; RSS of the worker process"
            " (not the master) after 50 warm-up requests, and its peak over 3 s of holding.",
            "",
            "| stack | request | held | RSS before | RSS held | per connection |"
            " RSS after close | time to open |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in idle.items():
            if "rss_held_mb" not in r:
                lines.append(f"| {name} | {r.get('status', '')} | | | | | | |")
                continue
            lines.append(
                f"| {name} | `{r['path']}` | {r['still_open_after_3s']:,}"
                f" (errors {sum(r['errors'].values())}) | {r['rss_before_mb']:.0f} MB |"
                f" **{r['rss_held_mb']:.0f} MB** | {r['kb_per_connection'] or 0:.1f} KB |"
                f" {r['rss_after_close_mb']:.0f} MB | {r['open_seconds']} s |"
            )
        lines.append("")
    lines += [
        "## Stacks",
        "",
        "Every stack but raw-tornado serves the same Django project (`scripts/bench/project`:"
        " same settings, Django's default `MIDDLEWARE`, the same table, `CONN_MAX_AGE` 60"
        " except where the configuration says otherwise, no TLS to MariaDB). The harness"
        " checks that each one's hello carries the default"
        " middleware's headers and that the list has 20 rows. gunicorn-sync runs at the same"
        f" process count as the others (the peer the targets use); gunicorn-sync-{SYNC_2C1}w"
        " is gunicorn's recommended 2 x cores + 1 workers, for reference only.",
        "",
        "| stack | processes | status | middleware check | configuration |",
        "|---|---|---|---|---|",
    ]
    for key, info in results["stacks"].items():
        lines.append(
            f"| {key.split('@')[0]} | {info.get('processes', key.split('@')[1])} | "
            f"{info['status'].replace('|', '/')} | {info.get('middleware', '–')} |"
            f" {info.get('note', '')} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if ok(r)]
    if not runs:
        return
    groups = sorted({r["group"] for r in runs})
    endpoints = list(dict.fromkeys(r["endpoint"] for r in runs))
    stacks = list(dict.fromkeys(r["stack"] for r in results["runs"]))
    palette = plt.get_cmap("tab10").colors
    colours = {s: palette[i % len(palette)] for i, s in enumerate(stacks)}
    fig, axes = plt.subplots(
        len(endpoints),
        len(groups),
        squeeze=False,
        figsize=(
            6.2 * len(groups),
            1.0 + 0.24 * len(stacks) * len(endpoints) + 0.5 * len(endpoints),
        ),
    )
    for gi, group in enumerate(groups):
        cells = table(results, group)
        for ei, endpoint in enumerate(endpoints):
            ax = axes[ei][gi]
            names = [s for s in stacks if (endpoint, s) in cells]
            values = [cells[(endpoint, s)]["rps"] if ok(cells[(endpoint, s)]) else 0 for s in names]
            y = range(len(names))
            ax.barh(y, values, color=[colours[s] for s in names])
            ax.set_yticks(list(y), names, fontsize=7)
            for label in ax.get_yticklabels():
                if label.get_text() in MINE:
                    label.set_fontweight("bold")
            ax.invert_yaxis()
            top = max(values, default=0) or 1
            ax.set_xlim(0, top * 1.25)
            for yi, (name, value) in enumerate(zip(names, values, strict=True)):
                row = cells[(endpoint, name)]
                text = f"{value:,.0f}" if ok(row) else "not run"
                if ok(row) and row.get("p99_ms") is not None:
                    text += f"  (p99 {fmt_ms(row['p99_ms'])})"
                ax.text(value + top * 0.01, yi, text, va="center", fontsize=6)
            conns = ENDPOINTS.get(endpoint, ("", "?"))[1]
            ax.set_title(f"{endpoint}, {conns} connections, {group} process(es): req/s", fontsize=8)
            ax.tick_params(axis="x", labelsize=6)
    m = results["machine"]
    fig.suptitle(
        f"hybrid vs peers ({results['mode']} pass, {results['date']}, {m['nproc']} cores,"
        f" {m['cpu']})",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
