"""Benchmarks against the peers, side by side in one run.

    scripts/bench/run [--quick] [--duration S] [--rounds N] [--processes 1,2]
                      [--modes direct,nginx] [--stacks a,b] [--endpoints a,b]
                      [--extras lag,idle] [--idle-stacks a,b] [--profile] [--out DIR]

``scripts/bench/run`` runs this with the project's virtualenv (``scripts/bootstrap``'s
.venv: hybrid and raw Tornado run there); the peers run in a bench virtualenv
(``$BENCH_VENV``, default .venv-bench) that this makes and fills when it lacks them
(gunicorn, gevent, uvicorn with uvloop and httptools, matplotlib, py-spy, and Django and
PyMySQL at the project's pinned versions); wrk comes from Debian (apt-get). It starts a
private MariaDB with ``scripts/mariadb start``, raises its ``max_connections`` to what the
pools need, creates and fills the benchmark project's table (``scripts/bench/project``, 100
rows), then for each process count runs rounds: round 1 starts every stack in turn (hybrid,
raw Tornado, the peers), round 2 does it again, and so on, so that hybrid and the peers
alternate in time. Each start: the server on loopback, a warm-up (hello and row), then each
*mode*: ``direct`` (wrk on the stack's port; hybrid has one port per process, and wrk's
threads are spread over them by a Lua script) and ``nginx`` (a fresh nginx in front of the
stack, its config rendered by hybrid's own renderer, as ``hybrid nginx`` prints it; nginx's
CPU per request is recorded). Each endpoint is checked (200; the list has 20 rows; Django
stacks answer hello with the headers of Django's default middleware) and driven with
``wrk -t2 -cC -dNs --latency`` (req/s, p50/p99, errors, RSS). Every stack gets the same
database concurrency per process on the database endpoints (the report's Stacks table
says how much each has). Then the extras:

- ``lag``: one hybrid worker with ``--max-commands 200``, wrk keeping 200 requests in
  flight that each run ``sleep 2`` (then ``true``) through ``hybrid.run_command``, while
  ``/h/lag/probe`` measures the worker's own event-loop lag (5 ms sleeps); plus
  ``process_lag.py`` (the same without HTTP). Target: p99 < 10 ms.
- ``idle``: one worker holding 10,000 idle keep-alive connections (``idle_conns.py``: each
  sends one request and stays open); the worker's RSS before and while held. Target: hybrid
  <= 100 MB.
- ``--profile``: py-spy on a one-process hybrid worker while wrk drives hello and row
  (speedscope JSON and SVG flame graph per endpoint).

Writes ``results.json`` (every round's raw figures, wrk's output included), ``results.md``
(medians and min-max spreads of the rounds) and ``results.png`` under
``scripts/bench/results/``. A stack that does not start, or an endpoint that fails its
check, is recorded as "not run: <reason>" and the run goes on. Every process started here
is stopped at the end, on an error and on Ctrl-C (MariaDB too).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .database import ensure_connections, prepare_database, start_mariadb, stop_mariadb
from .endpoints import DESCRIPTIONS, ENDPOINTS
from .harness import log
from .measure import bench_server, measure_idle, measure_lag, profile_hybrid
from .paths import BENCH_PYTHON, PROJECT, REPO, RESULTS
from .report import render_markdown
from .rounds import schedule
from .stacks import DB_CONNECTIONS, DB_POOL, REFERENCE, STACKS, build_stacks
from .targets import IDLE_CONNECTIONS, MODES, evaluate_targets
from .tools import ensure_tools, machine

FULL_SECONDS = 3
FULL_WARMUP = 1
FULL_ROUNDS = 3
QUICK_SECONDS = 2
QUICK_ROUNDS = 1
# Measured on the shared 2-core development container (see docs/benchmarks.md).
QUICK_MINUTES = "about 4.5 minutes"
FULL_MINUTES = "about 32 minutes (an estimate from the quick pass's per-start times)"


def main() -> None:
    """Parse the command line, run every round of every stack and endpoint, write the
    results."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"The full run (no --quick: process counts 1 and 2, direct and behind nginx,"
        f" {FULL_ROUNDS} rounds, {FULL_SECONDS} s per endpoint after {FULL_WARMUP} s of warm-up"
        f" on hello and row per server start) takes {FULL_MINUTES} on 2 cores.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a pass of {QUICK_MINUTES} on 2 cores: process count 1 only (unless"
        f" --processes), direct and behind nginx, {QUICK_ROUNDS} round, {QUICK_SECONDS} s per"
        " endpoint (3 s at 1,000 connections) without warm-up, lag probes of 3 s, the 10k"
        " idle connections on hybrid only (with /h/ping as their request)",
    )
    parser.add_argument(
        "--duration",
        type=int,
        help=f"seconds per endpoint (default {FULL_SECONDS}; {QUICK_SECONDS} quick)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        help=f"seconds of warm-up on hello and row per server start (default {FULL_WARMUP};"
        " 0 quick)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"alternating rounds per figure (default {FULL_ROUNDS}; {QUICK_ROUNDS} quick)",
    )
    parser.add_argument("--processes", help="process counts, comma-separated (default 1,2)")
    parser.add_argument(
        "--modes", default="direct,nginx", help="direct, nginx or both (default direct,nginx)"
    )
    parser.add_argument(
        "--stacks",
        help="only these stacks, comma-separated: "
        + ",".join((*STACKS, REFERENCE))
        + f" ({REFERENCE} runs only when named)",
    )
    parser.add_argument("--endpoints", help="only these endpoints: " + ",".join(ENDPOINTS))
    parser.add_argument("--extras", default="lag,idle", help="lag, idle, both (default) or none")
    parser.add_argument(
        "--idle-stacks",
        help="stacks for the idle-connection test (default hybrid,raw-tornado,uvicorn;"
        " hybrid with --quick)",
    )
    parser.add_argument("--idle-connections", type=int, default=IDLE_CONNECTIONS)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy profiles of a hybrid worker under hello and row (speedscope JSON and SVG"
        " flame graph in the results directory)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument(
        "--db-pool",
        type=int,
        default=DB_POOL,
        help=f"hybrid --db-threads and raw-tornado's pool size per process (default {DB_POOL}:"
        " wrk's connections, what gevent and uvicorn open by themselves)",
    )
    args = parser.parse_args()
    seconds = args.duration or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else FULL_WARMUP)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    counts = [int(n) for n in (args.processes or ("1" if args.quick else "1,2")).split(",")]
    modes = [m for m in MODES if m in args.modes.split(",")]
    if not modes or set(args.modes.split(",")) - set(MODES):
        parser.error(f"--modes: direct, nginx or both, not {args.modes!r}")
    endpoints = args.endpoints.split(",") if args.endpoints else list(ENDPOINTS)
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        parser.error(f"unknown endpoints: {', '.join(sorted(unknown))}")
    names = list(STACKS)
    if args.stacks:
        wanted = args.stacks.split(",")
        unknown = set(wanted) - {*STACKS, REFERENCE}
        if unknown:
            parser.error(f"unknown stacks: {', '.join(sorted(unknown))}")
        names = [n for n in (*STACKS, REFERENCE) if n in wanted]
    extras = set() if args.extras == "none" else set(args.extras.split(","))
    idle_stacks = (
        args.idle_stacks or ("hybrid" if args.quick else "hybrid,raw-tornado,uvicorn")
    ).split(",")

    ensure_tools()
    # Ctrl-C and SIGTERM both unwind through the finally blocks below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = tempfile.mkdtemp(prefix="hybrid-peers-")
    mariadb_dir = os.path.join(workdir, "mariadb")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["scripts/bench/run", *sys.argv[1:]]),
        "seconds_per_endpoint": seconds,
        "warmup_s": warmup,
        "rounds": rounds,
        "modes": modes,
        "db_pool": args.db_pool,
        "wrk": "wrk -t{threads} -c{connections} -d{seconds}s --latency --timeout 5s"
        " [-s spread.lua]",
        "endpoints": {
            e: {"path": p, "connections": c, "what": DESCRIPTIONS[e]}
            for e, (p, c) in ENDPOINTS.items()
        },
        "stacks": {},
        "runs": [],
        "cell_seconds": {},
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
        # hybrid's threads and native pool (2 x pool per process), with room for the
        # connections of the stack before it that MariaDB has not yet seen closed.
        needed = 2 * max(counts) * max(args.db_pool, DB_CONNECTIONS) * 2 + 50
        results["max_connections"] = ensure_connections(env, needed)
        prepare_database(env)
        for processes in counts:
            factories = build_stacks(processes, pool=args.db_pool)
            for round_no, name in schedule(rounds, names):
                key = f"{name}@{processes}"
                log(f"{key}, round {round_no}/{rounds}: starting")
                begun = time.monotonic()
                stack, outcome = bench_server(
                    factories[name], env, endpoints, seconds, warmup, workdir, modes, round_no
                )
                spent = results["cell_seconds"].setdefault(str(processes), {})
                spent[name] = round(spent.get(name, 0) + time.monotonic() - begun, 1)
                info = results["stacks"].setdefault(
                    key,
                    {
                        "processes": stack.processes,
                        "note": stack.note,
                        "db": stack.db,
                        "argv": " ".join(stack.argv[1:]),
                        "env": stack.env,
                        "rounds": {},
                    },
                )
                if isinstance(outcome, str):
                    info["rounds"][str(round_no)] = outcome
                    log(f"{key}: {outcome}")
                    continue
                info["rounds"][str(round_no)] = "ok"
                for row in outcome:
                    row["group"] = processes
                    if "middleware_headers" in row and row.get("status", "").startswith(
                        ("ok", "not run: hello lacks")
                    ):
                        info["middleware"] = (
                            "default chain" if row["status"] == "ok" else row["status"]
                        )
                results["runs"].extend(outcome)
        if "lag" in extras and "hybrid" in names:
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
        if args.profile:
            log("profile: py-spy on a hybrid worker")
            chosen = [e for e in ("hello", "row") if e in endpoints] or ["hello", "row"]
            results["profile"] = profile_hybrid(
                env, workdir, chosen, max(seconds, 3), out, args.db_pool
            )
    except KeyboardInterrupt:
        log("interrupted: stopping")
        results["interrupted"] = True
    finally:
        stop_mariadb(mariadb_dir)
        shutil.rmtree(workdir, ignore_errors=True)
    for info in results["stacks"].values():
        states = set(info["rounds"].values())
        info["status"] = (
            "ok"
            if states == {"ok"}
            else "; ".join(f"round {n}: {s}" for n, s in info["rounds"].items() if s != "ok")
        )
    results["elapsed_s"] = round(time.monotonic() - started)
    results["targets"] = evaluate_targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(render_markdown(results))
    # matplotlib lives in the bench virtualenv: the plot is drawn there.
    drawn = subprocess.run(
        [str(BENCH_PYTHON), "-m", "scripts.bench.plot", str(out / "results.json")]
        + [str(out / "results.png")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if drawn.returncode != 0:  # the table matters more than the plot
        log(f"no plot: {(drawn.stderr or drawn.stdout).strip()[-300:]}")
    log(f"wrote {out}/results.json, results.md, results.png in {results['elapsed_s']} s")


if __name__ == "__main__":
    main()
