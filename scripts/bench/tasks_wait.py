"""Awaiting Celery tasks: 1,000 requests on one hybrid worker, each waiting for its task.

    scripts/bench/tasks [--quick] [--requests 1000] [--seconds 2] [--rounds 3]
                        [--pool threads] [--concurrency N] [--out DIR]

One hybrid worker, ``hybrid serve --ports P --metrics-port M --celery-app
benchapp.waiting:app --celery 'worker --pool threads --concurrency 1000 ...'``: the Celery
worker runs under hybrid's master, with a pool of 1,000 threads (in the project's .venv: no
extra package), so 1,000 tasks of 2 s run at once on 2 cores. Broker and result backend:
a private Redis per round (``scripts/redis start``). The route
(``scripts/bench/project/benchapp/waiting.py``): ``r = await hybrid.tasks.delay(nap, 2.0);
await hybrid.tasks.wait(r, timeout=30)``.

One round: a fresh Redis and server; one warm-up request (a task of 0 s, which also starts
the publish pool); then ``/h/tasks/probe`` on the same worker (the loop's lag every 5 ms,
with how many requests were publishing and waiting at each sample) and ``--requests``
requests sent together from an asyncio client (a connection each, all in flight at once).
Meanwhile a sampler thread here reads, every 50 ms, the worker's and the Celery worker's
CPU time and threads (/proc/PID/stat, /proc/PID/status), Redis's CPU, the machine's busy
CPU (/proc/stat), and every 250 ms Redis's CLIENT LIST (the worker's ``hybrid-tasks-sub-PID``
and ``hybrid-tasks-get-PID`` connections, and how many channels the subscriber holds). The
worker's ``hybrid_event_loop_lag_seconds`` histogram is read before and after.

Figures (``tasks_stats.py``): over the waiting window (from the last request done publishing
to the last waiter answered) the loop lag p50/p99/max and the worker's CPU; over the whole
burst the lag p99 and the threads at most; every request's status and latency. Targets:
lag p99 < 10 ms in the window and at most 8 threads added, in every round. Writes
``tasks_wait.json`` (every round's raw figures) and ``tasks_wait.md`` under
``scripts/bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from .harness import (
    Server,
    Stack,
    free_port,
    get,
    log,
    raise_nofile,
    stat_fields,
    tree_pids,
    wait_ready,
)
from .paths import PROJECT, REPO, RESULTS
from .redis_server import client_list, start_redis, stop_redis
from .tasks_stats import classify_clients, render_markdown, round_figures, summarize, targets
from .tools import machine_text

REQUESTS = 1000
SECONDS = 2.0
ROUNDS = 3
POOL = "threads"
SETTINGS = "benchproject.settings_tasks"
CELERY_APP = "benchapp.waiting:app"
SAMPLE_EVERY = 0.05
CLIENT_LIST_EVERY = 0.25
CLIENT_TIMEOUT = 60.0
# Measured on the shared 2-core development container (docs/benchmarks.md).
FULL_MINUTES = "under a minute"


def celery_args(pool: str, concurrency: int) -> str:
    words = ["worker", "--pool", pool, "--concurrency", str(concurrency)]
    words += ["--loglevel", "warning", "--without-gossip", "--without-mingle"]
    words += ["--without-heartbeat"]
    return shlex.join(words)


def build(port: int, metrics_port: int, pool: str, concurrency: int) -> Stack:
    argv = [sys.executable, "-m", "hybrid", "serve", "--ports", str(port)]
    argv += ["--metrics-port", str(metrics_port), "--settings", SETTINGS]
    argv += ["--pythonpath", str(PROJECT), "--celery-app", CELERY_APP]
    argv += ["--celery", celery_args(pool, concurrency), "--log-level", "warning"]
    argv += ["--graceful-timeout", "2"]
    return Stack("hybrid-tasks", 1, argv, port, "/h/", cwd=PROJECT)


def serve_text(pool: str, concurrency: int) -> str:
    return (
        f"hybrid serve --ports P --metrics-port M --celery-app {CELERY_APP}"
        f" --celery '{celery_args(pool, concurrency)}'"
    )


def versions() -> dict[str, str]:
    from importlib.metadata import version

    found = {}
    for name in ("hybrid", "Django", "tornado", "uvloop", "celery", "kombu", "redis"):
        try:
            found[name] = version(name)
        except Exception:
            continue
    done = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    for word in done.stdout.split():
        if word.startswith("v="):
            found["Redis server"] = word[2:]
    return found


# --------------------------------------------------------------------------- /proc


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def find_processes(root: int) -> tuple[int | None, int | None]:
    """(the hybrid worker, the Celery worker's main process) under the master ``root``."""
    worker = celery = None
    for pid in tree_pids(root)[1:]:
        line = cmdline(pid)
        # Celery titles its processes itself when setproctitle is installed ([celeryd: ...])
        if celery is None and (" -m celery " in line or line.startswith("[celeryd")):
            celery = pid
        elif worker is None and (line.startswith("hybrid: worker") or " -m hybrid serve " in line):
            # titled by hybrid[proctitle] when it is installed, else python's command line
            worker = pid
    return worker, celery


def threads(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


TICKS = os.sysconf("SC_CLK_TCK")


def cpu(pid: int | None) -> float | None:
    fields = stat_fields(pid) if pid is not None else None
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICKS


class Sampler(threading.Thread):
    """Reads /proc every SAMPLE_EVERY and CLIENT LIST every CLIENT_LIST_EVERY until
    stopped."""

    def __init__(self, worker: int, celery: int | None, redis_pid: int, redis_url: str):
        super().__init__(daemon=True)
        self.worker, self.celery, self.redis_pid, self.url = worker, celery, redis_pid, redis_url
        self.samples: list[dict[str, Any]] = []
        self.clients: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        next_list = 0.0
        while not self.halt.is_set():
            now = time.monotonic()
            self.samples.append(
                {
                    "t": now,
                    "worker_cpu": cpu(self.worker),
                    "worker_threads": threads(self.worker),
                    "celery_cpu": cpu(self.celery),
                    "celery_threads": threads(self.celery),
                    "redis_cpu": cpu(self.redis_pid),
                    "bench_cpu": cpu(os.getpid()),
                    "machine_cpu": machine_busy(),
                }
            )
            if now >= next_list:
                next_list = now + CLIENT_LIST_EVERY
                try:
                    reading = classify_clients(
                        client_list(self.url, "tasks-bench-probe"), self.worker
                    )
                    reading["t"] = now
                    self.clients.append(reading)
                except Exception as error:  # noqa: BLE001 - kept, not fatal
                    self.errors.append(f"CLIENT LIST: {error}")
            self.halt.wait(SAMPLE_EVERY)


# --------------------------------------------------------------------------- the client


async def one_request(port: int, path: str, gate: asyncio.Event) -> dict[str, Any]:
    await gate.wait()
    started = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head_lines = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            writer.write(f"{head_lines}Connection: close\r\n\r\n".encode())
            head = await reader.readline()
            await reader.read()
        parts = head.split()
        status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
        error = None if status else f"bad status line {head[:40]!r}"
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        status, error = None, type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    return {"status": status, "error": error, "ms": (time.monotonic() - started) * 1000}


async def drive(port: int, requests: int, seconds: float) -> tuple[dict, list[dict]]:
    """The probe, then ``requests`` requests released together; (probe, outcomes)."""
    loop = asyncio.get_running_loop()
    probe_url = f"http://127.0.0.1:{port}/h/tasks/probe?seconds={CLIENT_TIMEOUT}&settle=0.5"

    def read_probe() -> dict:
        with urllib.request.urlopen(probe_url, timeout=CLIENT_TIMEOUT + 30) as response:
            return json.loads(response.read())

    probing = loop.run_in_executor(None, read_probe)
    await asyncio.sleep(0.3)
    gate = asyncio.Event()
    path = f"/h/tasks/sleep?seconds={seconds:g}"
    pending = [asyncio.ensure_future(one_request(port, path, gate)) for _ in range(requests)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*pending)
    return await probing, list(outcomes)


# --------------------------------------------------------------------------- one round


def metrics_text(port: int) -> str:
    try:
        return get(f"http://127.0.0.1:{port}/metrics", timeout=5)[2].decode()
    except OSError:
        return ""


def warm_up(port: int, deadline: float) -> None:
    """Until one task of 0 s goes through (the Celery worker is up and consuming)."""
    while time.monotonic() < deadline:
        try:
            status, _, body = get(f"http://127.0.0.1:{port}/h/tasks/sleep?seconds=0", timeout=35)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("no task answered within the warm-up")


def run_round(args: argparse.Namespace, workdir: str, tag: str) -> dict[str, Any] | str:
    redis_dir = os.path.join(workdir, f"redis-{tag}")
    redis_env = start_redis(redis_dir)
    url = redis_env["REDIS_URL"]
    port, metrics_port = free_port(), free_port()
    stack = build(port, metrics_port, args.pool, args.concurrency)
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    env["BENCH_REDIS_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(PROJECT), str(REPO), os.environ.get("PYTHONPATH")])
    )
    sampler = None
    try:
        with Server(stack, env, workdir, f"-{tag}") as server:
            try:
                wait_ready(server.proc, f"http://127.0.0.1:{port}/h/ping")
                warm_up(port, time.monotonic() + 60)
            except RuntimeError as error:
                return f"not run: {error} ({' | '.join(server.log_tail(3))})"
            worker, celery = find_processes(server.proc.pid)
            if worker is None:
                return "not run: no hybrid worker process found under the master"
            time.sleep(1.0)  # the Celery worker's pool settles
            sampler = Sampler(worker, celery, int(redis_env["REDIS_PID"]), url)
            sampler.start()
            time.sleep(0.3)
            threads_before = threads(worker)
            before = metrics_text(metrics_port)
            probe, outcomes = asyncio.run(drive(port, args.requests, args.seconds))
            after = metrics_text(metrics_port)
            time.sleep(0.2)
            sampler.halt.set()
            sampler.join()
            alive = server.proc.poll() is None
            tail = server.log_tail(8)
    finally:
        if sampler is not None:
            sampler.halt.set()
        stop_redis(redis_dir)
    if probe.get("pid") != worker:
        log(f"  the probe ran in pid {probe.get('pid')}, the sampler read {worker}")
    figures = round_figures(
        probe, sampler.samples, outcomes, sampler.clients, before, after, threads_before
    )
    figures.update(
        {
            "worker_pid": worker,
            "celery_pid": celery,
            "probe_state": probe.get("state"),
            "probe_samples": len(probe.get("t", [])),
            "series": series(probe),
            "redis_readings": len(sampler.clients),
            "sampler_errors": sampler.errors[:5],
            "server_alive": alive,
            "server_log_tail": tail,
        }
    )
    return figures


def series(probe: dict[str, Any]) -> list[list[float]]:
    """The probe's samples, compact: [seconds since the first, lag ms, publishing,
    waiting]."""
    times = probe.get("t") or [0.0]
    return [
        [round(t - times[0], 4), round(lag, 2), p, w]
        for t, lag, p, w in zip(
            probe.get("t", []),
            probe.get("lag_ms", []),
            probe.get("publishing", []),
            probe.get("waiting", []),
            strict=True,
        )
    ]


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"{ROUNDS} rounds take {FULL_MINUTES} on 2 cores; --quick one round.",
    )
    parser.add_argument("--quick", action="store_true", help="1 round")
    parser.add_argument("--requests", type=int, default=REQUESTS, help=f"default {REQUESTS}")
    parser.add_argument(
        "--seconds", type=float, default=SECONDS, help=f"each task's sleep (default {SECONDS:g})"
    )
    parser.add_argument("--rounds", type=int, help=f"default {ROUNDS}")
    parser.add_argument(
        "--pool",
        default=POOL,
        choices=("threads", "prefork", "solo", "gevent", "eventlet"),
        help=f"the Celery worker's pool (default {POOL}; gevent and eventlet need the package"
        " in .venv)",
    )
    parser.add_argument(
        "--concurrency", type=int, help="the Celery worker's concurrency (default: --requests)"
    )
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else ROUNDS)
    args.concurrency = args.concurrency or args.requests
    if args.requests < 1 or args.rounds < 1 or args.seconds < 0:
        parser.error("--requests and --rounds at least 1, --seconds not negative")
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed: run scripts/bootstrap")
    raise_nofile(2 * args.requests + 4096)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = tempfile.mkdtemp(prefix="hybrid-tasks-")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["scripts/bench/tasks", *sys.argv[1:]]),
        "machine": machine_text(),
        "versions": versions(),
        "serve": serve_text(args.pool, args.concurrency),
        "requests": args.requests,
        "seconds": args.seconds,
        "rounds": [],
        "failures": [],
    }
    try:
        for n in range(1, args.rounds + 1):
            log(f"round {n}/{args.rounds}: {args.requests} requests, tasks of {args.seconds:g} s")
            try:
                outcome = run_round(args, workdir, f"r{n}")
            except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as error:
                outcome = f"not run: {type(error).__name__}: {error}"
            if isinstance(outcome, str):
                log(f"  {outcome}")
                results["failures"].append(f"round {n}: {outcome}")
                continue
            outcome["round"] = n
            results["rounds"].append(outcome)
            log(
                f"  {outcome['ok']}/{args.requests} ok, {outcome['failures'] or 'no failures'};"
                f" window {outcome['window_s']} s with up to {outcome['waiters_max']} waiters:"
                f" lag p99 {outcome['lag_p99_ms']} ms (burst {outcome['burst_lag_p99_ms']});"
                f" worker CPU {outcome['cpu_ms_per_s_window']} ms/s; threads"
                f" {outcome['threads_before']} -> {outcome['threads_peak_burst']};"
                f" {outcome['subscribers']} subscriber(s), {outcome['subscribed_channels']}"
                f" channels; latency p50 {outcome['latency_p50_ms']} p99"
                f" {outcome['latency_p99_ms']} ms"
            )
    except KeyboardInterrupt:
        log("interrupted: stopping")
        results["interrupted"] = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["summary"] = summarize(results["rounds"])
    results["targets"] = targets(results["rounds"], args.requests)
    results["elapsed_s"] = round(time.monotonic() - started)
    (out / "tasks_wait.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "tasks_wait.md").write_text(render_markdown(results))
    log(f"wrote {out}/tasks_wait.json, tasks_wait.md in {results['elapsed_s']} s")


if __name__ == "__main__":
    main()
