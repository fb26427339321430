"""Benchmarks against the peers, side by side in one run.

    scripts/bench/run [--quick] [--duration S] [--processes 1,2] [--stacks a,b]
                      [--endpoints a,b] [--extras lag,idle] [--idle-stacks a,b] [--out DIR]

Installs what it lacks (wrk from Debian with apt-get; gunicorn, gevent, uvicorn with uvloop
and httptools, aiomysql, PyMySQL and matplotlib with pip), starts a private MariaDB with
``scripts/mariadb start``, creates and fills the benchmark project's table
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
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .database import prepare_database, start_mariadb, stop_mariadb
from .endpoints import DESCRIPTIONS, ENDPOINTS
from .harness import log
from .measure import bench_stack, measure_idle, measure_lag
from .paths import PROJECT, REPO, RESULTS
from .plot import plot
from .report import render_markdown
from .stacks import DB_POOL, SYNC_2C1, build_stacks
from .targets import IDLE_CONNECTIONS, evaluate_targets
from .tools import ensure_tools, machine


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
            for name, factory in build_stacks(
                processes, quick=args.quick and not wanted, pool=args.db_pool
            ):
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
            results["lag"] = measure_lag(env, workdir, 3 if args.quick else 6, args.db_pool)
        if "idle" in extras:
            results["idle"] = {}
            for name in idle_stacks:
                log(f"idle: {name} with {args.idle_connections} keep-alive connections")
                results["idle"][name] = measure_idle(
                    name,
                    env,
                    workdir,
                    args.idle_connections,
                    django_path=not args.quick,
                    pool=args.db_pool,
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


if __name__ == "__main__":
    main()
