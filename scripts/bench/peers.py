"""Benchmarks against the peers, side by side in one run (issue 7).

    scripts/bench/run [--quick] [--duration S] [--processes 1,2] [--stacks a,b]
                      [--endpoints a,b] [--out DIR]

Installs what it lacks (wrk from Debian with apt-get; gunicorn, gevent, uvicorn and
matplotlib with pip), starts a private MariaDB with ``scripts/mariadb start``, creates and
seeds the benchmark project's table (``scripts/bench/project``, 100 rows), then for each
process count and each stack starts the server on loopback, drives every endpoint with
``wrk -t2 -cC -dNs --latency`` and records req/s, p50/p99, errors (non-2xx + socket errors)
and the RSS of the server's process tree (peak of samples taken during the run). Writes
``results.json``, ``results.md`` and ``results.png`` under ``scripts/bench/results/``.

A stack that does not start, or an endpoint that does not answer 200 before the load, is
recorded as "not run: <reason>" and the run goes on. Every process started here is stopped
at the end, on an error and on Ctrl-C (MariaDB included).
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROJECT = HERE / "project"
RESULTS = HERE / "results"
CORES = os.cpu_count() or 1
DB_POOL = 32  # hybrid --db-threads, raw aiomysql pool size
THREADS = 16  # gunicorn gthread --threads

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
PEERS = ("gunicorn-sync", "gunicorn-gthread", "gunicorn-gevent", "uvicorn")


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
            ("matplotlib", "matplotlib"),
            ("aiomysql", "aiomysql"),
            ("PyMySQL", "pymysql"),
        )
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        log(f"installing {' '.join(missing)} (pip)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:  # 1,000 connections on each side, inherited by the servers
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": CORES,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
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
    return dict(line.split("=", 1) for line in started.stdout.split())


def stop_mariadb(directory: str) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "mariadb"), "stop", directory], check=False)


def prepare_database(env: dict[str, str]) -> None:
    import pymysql

    admin = pymysql.connect(
        host=env["MARIADB_HOST"],
        port=int(env["MARIADB_PORT"]),
        user=env["MARIADB_USER"],
        password=env["MARIADB_PASSWORD"],
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
    processes: int  # server worker processes (gunicorn sync: 2 x cores + 1, whatever asked)
    argv: list[str]
    port: int  # the port wrk drives
    prefix: str  # URL prefix of the endpoints
    env: dict[str, str]
    note: str = ""


def build_stacks(processes: int) -> list[tuple[str, Callable[[], Stack] | str]]:
    """(name, factory or "not run: reason") for one process count."""
    py = sys.executable
    django = ["--settings", "benchproject.settings", "--pythonpath", str(PROJECT)]

    def hybrid(nginx: bool) -> Stack:
        ports = [free_port() for _ in range(processes)]
        argv = [py, "-m", "hybrid", "serve", "--ports", ",".join(map(str, ports)), *django]
        argv += ["--native-mysql", "true", "--db-threads", str(DB_POOL)]
        argv += ["--log-level", "warning", "--graceful-timeout", "2"]
        port = ports[0]
        if nginx:
            port = free_port()
            argv += ["--nginx", str(port)]
        name = "hybrid-nginx" if nginx else "hybrid"
        note = f"DjangoHandler, default middleware, native MySQL, --db-threads {DB_POOL}"
        return Stack(name, processes, argv, port, "/h/", {}, note)

    def raw() -> Stack:
        port = free_port()
        argv = [py, str(HERE / "raw_tornado.py"), str(port), str(processes)]
        env = {"BENCH_POOL_SIZE": str(DB_POOL)}
        return Stack("raw-tornado", processes, argv, port, "/", env, f"aiomysql pool {DB_POOL}")

    def gunicorn(kind: str) -> Stack:
        port = free_port()
        workers = 2 * CORES + 1 if kind == "sync" else processes
        argv = [py, "-m", "gunicorn", "benchproject.wsgi:application", "-b", f"127.0.0.1:{port}"]
        argv += ["-w", str(workers), "-k", kind, "--log-level", "warning"]
        argv += ["--chdir", str(PROJECT), "--graceful-timeout", "2", "--backlog", "2048"]
        env: dict[str, str] = {}
        note = "sync views"
        if kind == "sync":
            note = f"sync views, 2 x cores + 1 = {workers} workers"
        if kind == "gthread":
            argv += ["--threads", str(THREADS)]
            note = f"sync views, {THREADS} threads per worker"
        if kind == "gevent":
            argv += ["--worker-connections", "1000"]
            env["BENCH_CONN_MAX_AGE"] = os.environ.get("BENCH_GEVENT_CONN_MAX_AGE", "0")
            note = "sync views, PyMySQL monkey-patched, CONN_MAX_AGE 0"
        return Stack(f"gunicorn-{kind}", workers, argv, port, "/sync/", env, note)

    def uvicorn() -> Stack:
        port = free_port()
        argv = [py, "-m", "uvicorn", "benchproject.asgi:application", "--port", str(port)]
        argv += ["--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
        argv += ["--app-dir", str(PROJECT), "--backlog", "2048"]
        if processes > 1:
            argv += ["--workers", str(processes)]
        return Stack("uvicorn", processes, argv, port, "/async/", {}, "Django async views")

    stacks: list[tuple[str, Callable[[], Stack] | str]] = []
    if processes == 1:
        stacks.append(("hybrid", lambda: hybrid(False)))
    else:
        stacks.append(("hybrid", "not run: one port per worker; measured behind nginx"))
    stacks += [
        ("hybrid-nginx", lambda: hybrid(True)),
        ("raw-tornado", raw),
        ("gunicorn-sync", lambda: gunicorn("sync")),
        ("gunicorn-gthread", lambda: gunicorn("gthread")),
        ("gunicorn-gevent", lambda: gunicorn("gevent")),
        ("uvicorn", uvicorn),
    ]
    return stacks


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


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


def rss_mb(root: int) -> float:
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever is left of the session (workers, nginx, commands)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# --------------------------------------------------------------------------- wrk

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def ms(value: float | None) -> str:
    return "p99 n/a" if value is None else f"{value:.0f} ms"


def to_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


def run_wrk(url: str, connections: int, seconds: int, root: int) -> dict[str, Any]:
    threads = min(2, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += ["--timeout", "5s", url]
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            peak[0] = max(peak[0], rss_mb(root))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    finally:
        done.set()
        sampler.join()
    if os.environ.get("BENCH_VERBOSE"):
        print(out, flush=True)
    peak[0] = max(peak[0], rss_mb(root))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"wrk printed no Requests/sec: {out[-300:]!r}")
    latency = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)\s*$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    socket_errors = sum(map(int, sockets.groups())) if sockets else 0
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(rps[1]),
        "requests": int(total[1]) if total else None,
        "p50_ms": to_ms(latency["50"]) if "50" in latency else None,
        "p99_ms": to_ms(latency["99"]) if "99" in latency else None,
        "non2xx": int(non2xx[1]) if non2xx else 0,
        "socket_errors": socket_errors,
        "errors": (int(non2xx[1]) if non2xx else 0) + socket_errors,
        "rss_mb": round(peak[0], 1),
    }


# --------------------------------------------------------------------------- the run


def bench_stack(
    factory: Callable[[], Stack],
    base_env: dict[str, str],
    endpoints: list[str],
    seconds: int,
    workdir: str,
) -> tuple[Stack | None, list[dict[str, Any]] | str]:
    stack = factory()
    env = {**base_env, **stack.env}
    logfile = open(os.path.join(workdir, f"{stack.name}-{stack.processes}.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        stack.argv,
        env=env,
        cwd=PROJECT,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{stack.port}{stack.prefix}"
    try:
        try:
            wait_ready(proc, base + "hello")
        except RuntimeError as error:
            logfile.flush()
            tail = Path(logfile.name).read_text(errors="replace").strip().splitlines()[-3:]
            return stack, f"not run: {error}" + (f" ({' | '.join(tail)})" if tail else "")
        rows = []
        for endpoint in endpoints:
            suffix, connections = ENDPOINTS[endpoint]
            url = base + suffix
            row: dict[str, Any] = {
                "stack": stack.name,
                "processes": stack.processes,
                "endpoint": endpoint,
                "connections": connections,
            }
            try:
                status, body = get(url, timeout=30)
            except OSError as error:
                status, body = 0, str(error).encode()
            if status != 200:
                row["status"] = f"not run: GET {suffix} answered {status}: {body[:120]!r}"
            else:
                try:
                    run_wrk(url, connections, 1, proc.pid)  # warm up
                    # 1,000 connections need a few seconds before anything completes.
                    length = max(seconds, 5) if connections > 100 else seconds
                    row.update(run_wrk(url, connections, length, proc.pid))
                    row["status"] = "ok"
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    row["status"] = f"not run: {error}"
            log(
                f"  {stack.name:<17} {endpoint:<8} "
                + (
                    f"{row['rps']:9.0f} req/s  p99 {row['p99_ms']} ms  errors {row['errors']}"
                    f"  rss {row['rss_mb']} MB"
                    if row["status"] == "ok"
                    else row["status"]
                )
            )
            rows.append(row)
            if proc.poll() is not None:
                return stack, f"not run: server exited with {proc.returncode} during {endpoint}"
        return stack, rows
    finally:
        stop_process(proc)
        logfile.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a short pass: 2 s per endpoint, 1 process"
    )
    parser.add_argument("--duration", type=int, help="seconds per endpoint (default 10; 2 quick)")
    parser.add_argument("--processes", help="process counts, comma-separated (default 1,2)")
    parser.add_argument("--stacks", help="only these stacks, comma-separated")
    parser.add_argument("--endpoints", help="only these endpoints: " + ",".join(ENDPOINTS))
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    args = parser.parse_args()
    seconds = args.duration or (2 if args.quick else 10)
    counts = [int(n) for n in (args.processes or ("1" if args.quick else "1,2")).split(",")]
    endpoints = args.endpoints.split(",") if args.endpoints else list(ENDPOINTS)
    wanted = set(args.stacks.split(",")) if args.stacks else None

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
        "seconds_per_endpoint": seconds,
        "wrk": "wrk -t2 -c{connections} -d{seconds}s --latency --timeout 5s",
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
            for name, factory in build_stacks(processes):
                if wanted is not None and name not in wanted:
                    continue
                key = f"{name}@{processes}"
                if isinstance(factory, str):
                    results["stacks"][key] = {"status": factory}
                    log(f"{key}: {factory}")
                    continue
                log(f"{key}: starting")
                stack, outcome = bench_stack(factory, env, endpoints, seconds, workdir)
                info = {
                    "processes": stack.processes if stack else processes,
                    "note": stack.note if stack else "",
                }
                if isinstance(outcome, str):
                    info["status"] = outcome
                    log(f"{key}: {outcome}")
                else:
                    info["status"] = "ok"
                    for row in outcome:
                        row["group"] = processes
                    results["runs"].extend(outcome)
                results["stacks"][key] = info
    except KeyboardInterrupt:
        log("interrupted: stopping")
        results["interrupted"] = True
    finally:
        stop_mariadb(mariadb_dir)
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_s"] = round(time.monotonic() - started)
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

TARGETS = [
    # (endpoint, stack, against, minimum ratio)
    ("row", "hybrid", "raw-tornado", 0.85),
    ("row", "hybrid", "gunicorn-gevent", 1.3),
    ("query", "hybrid", "raw-tornado", 0.9),
    ("query", "hybrid", "gunicorn-gevent", 1.2),
    ("io-1000", "hybrid", "raw-tornado", 0.9),
    ("io-1000", "hybrid", "gunicorn-sync", 10.0),
    ("hello", "hybrid", "gunicorn-gevent", 1.0),
]


def table(results: dict[str, Any], group: int) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["endpoint"], r["stack"]): r for r in results["runs"] if r["group"] == group}


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# hybrid vs the peers",
        "",
        f"{results['date']}; {m['nproc']} cores ({m['cpu']}), Python {m['python']}; "
        f"{results['mode']} pass, {results['seconds_per_endpoint']} s per endpoint after 1 s "
        f"of warm-up; `{results['wrk']}` on the same cores as the servers; MariaDB on "
        "loopback. Cells: req/s, p99 latency, errors (non-2xx + socket errors), peak RSS "
        "of the server's processes. Ratios are within this run only.",
        "",
    ]
    groups = sorted({r["group"] for r in results["runs"]})
    for group in groups:
        cells = table(results, group)
        stacks = [
            s for s in dict.fromkeys(r["stack"] for r in results["runs"] if r["group"] == group)
        ]
        endpoints = list(dict.fromkeys(r["endpoint"] for r in results["runs"]))
        lines += [f"## {group} process(es)", ""]
        lines.append("| endpoint (connections) | " + " | ".join(stacks) + " |")
        lines.append("|---" * (len(stacks) + 1) + "|")
        for endpoint in endpoints:
            row = []
            for stack in stacks:
                r = cells.get((endpoint, stack))
                if r is None:
                    row.append("–")
                elif r["status"] != "ok":
                    row.append(r["status"].replace("|", "/")[:60])
                else:
                    row.append(
                        f"**{r['rps']:,.0f}**<br>p99 {ms(r['p99_ms'])}<br>"
                        f"err {r['errors']}<br>{r['rss_mb']:.0f} MB"
                    )
            conns = ENDPOINTS.get(endpoint, ("", "?"))[1]
            lines.append(f"| {endpoint} ({conns}) | " + " | ".join(row) + " |")
        lines += [
            "",
            "Ratios (req/s): each stack against raw Tornado + aiomysql; hybrid "
            "against the fastest peer (gunicorn sync/gthread/gevent, uvicorn).",
            "",
        ]
        lines.append(
            "| endpoint | "
            + " | ".join(f"{s} / raw" for s in stacks)
            + " | fastest peer | hybrid / peer | hybrid-nginx / peer |"
        )
        lines.append("|---" * (len(stacks) + 4) + "|")
        for endpoint in endpoints:
            raw = cells.get((endpoint, "raw-tornado"))
            base = raw["rps"] if raw and raw["status"] == "ok" and raw["rps"] else None
            row = []
            for stack in stacks:
                r = cells.get((endpoint, stack))
                ok = r is not None and r["status"] == "ok" and base
                row.append(f"{r['rps'] / base:.2f}" if ok else "–")  # type: ignore[index]
            peers = [
                cells[(endpoint, p)]
                for p in PEERS
                if (endpoint, p) in cells and cells[(endpoint, p)]["status"] == "ok"
            ]
            best = max(peers, key=lambda r: r["rps"]) if peers else None
            row.append(best["stack"] if best else "–")
            for mine in ("hybrid", "hybrid-nginx"):
                r = cells.get((endpoint, mine))
                ok = best and r and r["status"] == "ok" and best["rps"]
                row.append(f"{r['rps'] / best['rps']:.2f}" if ok else "–")  # type: ignore[index]
            lines.append(f"| {endpoint} | " + " | ".join(row) + " |")
        lines.append("")
        lines += [
            "Targets of issue 7 (hybrid = DjangoHandler on one port, or behind nginx "
            "when more than one process):",
            "",
            "| target | measured | met |",
            "|---|---|---|",
        ]
        mine = "hybrid" if group == 1 else "hybrid-nginx"
        for endpoint, _stack, against, minimum in TARGETS:
            a, b = cells.get((endpoint, mine)), cells.get((endpoint, against))
            if a and b and a["status"] == "ok" and b["status"] == "ok" and b["rps"]:
                ratio = a["rps"] / b["rps"]
                measured, met = f"{ratio:.2f}x", "yes" if ratio >= minimum else "**no**"
            else:
                measured, met = "not measured", "–"
            lines.append(f"| {endpoint}: {mine} >= {minimum}x {against} | {measured} | {met} |")
        lines.append("")
    lines += [
        "## Stacks",
        "",
        "| stack | processes | status | configuration |",
        "|---|---|---|---|",
    ]
    for key, info in results["stacks"].items():
        lines.append(
            f"| {key.split('@')[0]} | {info.get('processes', key.split('@')[1])} | "
            f"{info['status'].replace('|', '/')} | {info.get('note', '')} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if r["status"] == "ok"]
    if not runs:
        return
    groups = sorted({r["group"] for r in runs})
    endpoints = list(dict.fromkeys(r["endpoint"] for r in runs))
    stacks = list(dict.fromkeys(r["stack"] for r in runs))
    colours = dict(zip(stacks, plt.get_cmap("tab10").colors, strict=False))
    fig, axes = plt.subplots(
        len(groups),
        len(endpoints),
        squeeze=False,
        figsize=(2.6 * len(endpoints), 3.2 * len(groups) + 0.8),
    )
    for gi, group in enumerate(groups):
        cells = table(results, group)
        for ei, endpoint in enumerate(endpoints):
            ax = axes[gi][ei]
            names = [s for s in stacks if cells.get((endpoint, s), {}).get("status") == "ok"]
            values = [cells[(endpoint, s)]["rps"] for s in names]
            ax.bar(range(len(names)), values, color=[colours[s] for s in names])
            ax.set_xticks([])
            ax.set_title(
                f"{endpoint} ({ENDPOINTS.get(endpoint, ('', '?'))[1]} conn)"
                + (f", {group} proc" if len(groups) > 1 else ""),
                fontsize=8,
            )
            ax.tick_params(labelsize=7)
            if ei == 0:
                ax.set_ylabel("req/s", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[s]) for s in stacks]
    m = results["machine"]
    fig.legend(handles, stacks, loc="lower center", ncol=len(stacks), fontsize=8)
    fig.suptitle(
        f"hybrid vs peers, req/s ({results['date']}, {m['nproc']} cores, {m['cpu']})", fontsize=9
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
