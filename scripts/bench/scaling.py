"""Scaling over ports behind nginx: 1, 2, 4, 8 workers, one port each.

    python -m scripts.bench.scaling [--ports 1,2,4,8] [--duration 8] [--out DIR]

For a machine with many cores (the target, 8 ports >= 6x one port, needs 16): for each
count it starts ``hybrid serve --ports ... --nginx PORT`` with the test project
(``testproject.settings_bench``: Django's default middleware, SQLite, no database call on
these routes), waits until nginx answers, warms up, then drives nginx with ``wrk`` for
``--duration`` seconds: ``/bench/bridged-hello`` (a ``DjangoHandler`` through the middleware)
and ``/bench/plain-hello`` (a plain Tornado handler). Writes ``scaling.json`` and
``scaling.md`` (req/s, p50/p99, and each count's req/s over one port's) to ``--out``.

Needs ``nginx`` and ``wrk`` on PATH (or ``NGINX_BIN=``/``WRK=``) and nothing else: no MariaDB,
no network. ``scripts/bench/run`` measures the stacks against each other; this measures
how hybrid alone scales with its own deployment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import wrk
from .harness import Server, Stack, cpu_seconds, descendants, free_port, wait_ready
from .paths import REPO, RESULTS

PATHS = ("/bench/bridged-hello", "/bench/plain-hello")


def drive(url: str, seconds: float, connections: int, threads: int) -> dict[str, Any]:
    """req/s, p50/p99 (NaN when wrk shows none) and non-2xx answers of one wrk run."""
    argv = wrk.command(url, connections, seconds, threads, wrk=wrk.binary())
    figures = wrk.parse(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)

    def latency(key: str) -> float:
        value = figures[key]
        return float("nan") if value is None else float(value)

    return {
        "rps": figures["rps"],
        "p50_ms": latency("p50_ms"),
        "p99_ms": latency("p99_ms"),
        "non_2xx": figures["non2xx"],
    }


def upstream_time_waits(ports: list[int]) -> dict[str, int]:
    """TCP connections between nginx and the workers in TIME-WAIT, by who closed them:
    each is a connection opened for one or a few requests only (upstream keepalive not
    holding), ``worker`` when the worker closed it first, ``nginx`` when nginx did."""
    wanted = {f"{port:04X}" for port in ports}
    counts = {"worker": 0, "nginx": 0}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, remote, state = line.split()[1:4]
            if state != "06":
                continue
            if local.rsplit(":", 1)[1] in wanted:
                counts["worker"] += 1
            elif remote.rsplit(":", 1)[1] in wanted:
                counts["nginx"] += 1
    return counts


def measure(count: int, args: argparse.Namespace, workdir: str) -> dict[str, object]:
    ports = [free_port() for _ in range(count)]
    front = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO / "tests" / "projects"), str(REPO), env.get("PYTHONPATH")])
    )
    env["TESTPROJECT_DB"] = os.path.join(workdir, f"db{count}.sqlite3")
    argv = [sys.executable, "-m", "hybrid", "serve", "--ports", ",".join(map(str, ports))]
    argv += ["--nginx", str(front), "--settings", "testproject.settings_bench"]
    argv += ["--log-level", "warning", "--db-threads", "4", "--graceful-timeout", "2"]
    nginx = env.pop("NGINX_BIN", None)  # not NGINX: nginx itself reads that variable
    if nginx:
        env["PATH"] = os.path.dirname(nginx) + os.pathsep + env.get("PATH", "")
    server = Server(Stack("serve", count, argv, front, "/", cwd=REPO), env, workdir)
    result: dict[str, object] = {"ports": count}
    try:
        for path in PATHS:
            url = f"http://127.0.0.1:{front}{path}"
            wait_ready(server.proc, url)
            drive(url, args.warmup, args.connections, args.threads)
            tree = descendants(server.proc.pid)
            before = cpu_seconds(tree)
            waits_before = upstream_time_waits(ports)
            result[path] = measured = drive(url, args.duration, args.connections, args.threads)
            after = cpu_seconds(tree)
            waits_after = upstream_time_waits(ports)
            measured["upstream_closed"] = {
                side: waits_after[side] - waits_before[side] for side in waits_after
            }
            used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
            workers = sorted(
                (round(used[pid] / args.duration, 2) for pid in used if "python" in tree[pid]),
                reverse=True,
            )
            measured["worker_cpu"] = workers  # cores busy, per hybrid process (master last)
            measured["nginx_cpu"] = round(  # the rest of the tree: nginx (maybe via a loader)
                sum(used[pid] for pid in used if "python" not in tree[pid]) / args.duration, 2
            )
            print(f"{count} port(s) {path}: {measured}", flush=True)
    finally:
        server.stop(grace=30)
    return result


def table(results: list[dict[str, object]]) -> str:
    lines = [
        "| ports | " + " | ".join(f"`{p}` req/s (x one port) | p50 / p99" for p in PATHS) + " |",
        "|---|" + "---|---|" * len(PATHS),
    ]
    base = {p: results[0][p]["rps"] for p in PATHS}  # type: ignore[index]
    for row in results:
        cells = []
        for path in PATHS:
            cell = row[path]
            cells.append(f"{cell['rps']:,.0f} ({cell['rps'] / base[path]:.2f}x)")  # type: ignore[index]
            cells.append(f"{cell['p50_ms']:.1f} / {cell['p99_ms']:.1f} ms")  # type: ignore[index]
        lines.append(f"| {row['ports']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", default="1,2,4,8", help="worker counts (default 1,2,4,8)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--threads", type=int, default=4, help="wrk threads")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    counts = [int(n) for n in args.ports.split(",")]
    workdir = tempfile.mkdtemp(prefix="hybrid-scaling-")
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(f"scaling on {machine}", flush=True)
    results = [measure(count, args, workdir) for count in counts]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scaling.json"), "w") as fh:
        json.dump({"machine": machine, "args": vars(args), "results": results}, fh, indent=2)
    text = (
        f"# hybrid behind nginx: scaling over ports\n\n{machine['date']}; {machine['cpus']} CPUs,"
        f" Python {machine['python']}, kernel {machine['kernel']}; `wrk -t{args.threads}"
        f" -c{args.connections} -d{args.duration:.0f}s` against nginx on the same machine,"
        f" after {args.warmup:.0f} s of warm-up.\n\n{table(results)}\n"
    )
    with open(os.path.join(args.out, "scaling.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
