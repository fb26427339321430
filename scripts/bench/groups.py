"""Groups: hybrid's group messages against Django Channels', side by side in one run.

    scripts/bench/groups [--quick] [--sockets 2000] [--rooms 20] [--interval-ms 10]
                         [--loads 1,10,100] [--duration S] [--warmup S]
                         [--drain S] [--rounds N] [--workers 4] [--clients 2]
                         [--stacks hybrid,channels] [--out DIR]

A chat: ``--sockets`` WebSockets in ``--rooms`` rooms (as even as they go), each room's
members spread over the workers, one sender socket per room sending ``{"send": ...,
"t": <send time>}`` every ``--interval-ms`` over its own socket (the rooms' sends staggered
over the interval); the server sends it to the room's group and every member (the sender
too) gets it. ``--loads``: the full load (1) and lighter ones (10: ten times fewer
messages, the interval ten times longer; 100), each run on its own.

Stacks, each with ``--workers`` worker processes, driven directly (no nginx):

- ``hybrid``: ``hybrid serve --ports P1,...,P4 --groups redis://...``, a
  ``DjangoWebSocketHandler`` (``scripts/bench/project/benchapp/rooms.py``); the clients are
  spread over its ports, one per worker.
- ``channels``: Django Channels with channels_redis' ``RedisChannelLayer`` (its documented
  default), the tutorial's ``AsyncWebsocketConsumer`` (``benchapp/consumers.py``) behind
  ``AllowedHostsOriginValidator(AuthMiddlewareStack(...))``, served by ``uvicorn --workers
  4`` (uvloop, httptools, websockets) on one port shared by its workers.

Each load runs in alternating rounds (round 1: hybrid then Channels, round 2 again...),
every run against a fresh private Redis (``scripts/redis start``). One run: the server, the
load generator (``groups_load.py``, ``--clients`` asyncio processes with the sockets dealt
among them; its CPU is kept apart) connects every socket and waits until each joined its
room, then sends for ``--warmup`` + ``--duration`` seconds and waits ``--drain`` seconds
for stragglers. Measured over the window (the last ``--duration`` seconds of sending):
delivery latency p50/p99 (send to receipt, every member, one machine clock), deliveries
per second, loss (deliveries of the window's messages that never came, within the drain),
the server's CPU per delivered message (every process of the server's tree, utime + stime
from /proc) and Redis's apart, sockets the server closed, and the Redis connections
(CLIENT LIST, mid-window). Targets: hybrid's p99 and its server CPU per delivered message
at least 2x better than Channels', in every round.

Writes ``groups.json`` (every run's raw figures) and ``groups.md`` (medians and min-max
spreads of the rounds) under ``scripts/bench/results/``. hybrid runs in the project's
``.venv``; Channels, channels_redis and uvicorn in the bench virtualenv (``$BENCH_VENV``,
default .venv-bench), installed there at the versions pinned below when missing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .groups_stats import (
    MINE,
    PEER,
    classify_clients,
    merge,
    one_subscriber_each,
    per_port,
    plan,
    render_markdown,
    room_sizes,
    run_figures,
    summarize,
    target,
)
from .harness import (
    Server,
    Stack,
    cpu_seconds,
    descendants,
    free_port,
    log,
    raise_nofile,
    wait_ready,
)
from .paths import BENCH_PYTHON, BENCH_VENV, PROJECT, REPO, RESULTS
from .redis_server import client_list, start_redis, stop_redis
from .tools import CONSTRAINTS, bench_versions, ensure_bench_venv, machine_text

# The peer, pinned: what the bench virtualenv gets for this benchmark.
PEER_PINS = (
    "channels==4.3.2",
    "channels-redis==4.3.0",
    "uvicorn[standard]==0.54.0",
    "websockets==17.4",
    "hiredis==3.5.0",  # redis-py's C parser, as hybrid's .venv has it
)
# Distribution name -> pinned version, to see whether the bench virtualenv has them.
PEER_PROBES = dict(pin.replace("[standard]", "").split("==") for pin in PEER_PINS)
STACKS = (MINE, PEER)

SOCKETS = 2000
ROOMS = 20
INTERVAL_MS = 10.0
LOADS = "1,10,100"
WORKERS = 4
CLIENTS = 2
FULL = {"duration": 10.0, "warmup": 3.0, "drain": 3.0, "rounds": 3}
QUICK = {"duration": 4.0, "warmup": 2.0, "drain": 2.0, "rounds": 1}
# Measured on the shared 2-core development container (docs/benchmarks.md).
FULL_MINUTES = "about 8 minutes (445-459 s)"
QUICK_MINUTES = "about 2 minutes (103 s)"


def ensure_peers() -> None:
    """The bench virtualenv with Django (the project's pin) and the pinned peer."""
    ensure_bench_venv()
    found = bench_versions(PEER_PROBES)
    if all(found.get(name) == pin for name, pin in PEER_PROBES.items()):
        return
    log(f"installing {' '.join(PEER_PINS)} into {BENCH_VENV} (pip)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(BENCH_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + ["-c", str(CONSTRAINTS), *PEER_PINS],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"pip install into {BENCH_VENV} failed:\n{done.stdout}{done.stderr}")


def peer_versions() -> dict[str, str]:
    names = [*PEER_PROBES, "redis", "msgpack", "Django", "uvloop", "httptools"]
    return bench_versions(dict.fromkeys(names))


# --------------------------------------------------------------------------- stacks


def hybrid_stack(workers: int, redis_url: str) -> Stack:
    ports = [free_port() for _ in range(workers)]
    argv = [sys.executable, "-m", "hybrid", "serve", "--ports", ",".join(map(str, ports))]
    argv += ["--settings", "benchproject.settings_groups", "--pythonpath", str(PROJECT)]
    argv += ["--groups", redis_url, "--log-level", "warning", "--graceful-timeout", "2"]
    note = (
        f"`hybrid serve --ports` ({workers} ports, one worker each) `--groups redis://...`;"
        " `DjangoWebSocketHandler` (benchapp/rooms.py): `group_add` in `open()`,"
        " `hybrid.group_send` in `on_message()`, `chat_message` writes; clients spread over"
        " the ports"
    )
    return Stack("hybrid", workers, argv, ports[0], "/h/", {}, note, cwd=PROJECT, ports=ports)


def channels_stack(workers: int, redis_url: str) -> Stack:
    port = free_port()
    argv = [str(BENCH_PYTHON), "-m", "uvicorn", "benchproject.channels_asgi:application"]
    argv += ["--port", str(port), "--host", "127.0.0.1", "--workers", str(workers)]
    argv += ["--no-access-log", "--log-level", "warning", "--app-dir", str(PROJECT)]
    argv += ["--backlog", "4096"]
    note = (
        f"Channels + channels_redis `RedisChannelLayer` (default config), `uvicorn --workers"
        f" {workers}` (uvloop, httptools, websockets) on one port;"
        " `AsyncWebsocketConsumer` (benchapp/consumers.py) behind"
        " `AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))`: `group_add` in"
        " `connect()`, `group_send` in `receive()`, `chat_message` does `self.send`"
    )
    return Stack("channels", workers, argv, port, "/", {}, note, cwd=PROJECT)


def room_path(stack: Stack) -> str:
    return "/h/room/{room}" if stack.name == MINE else "/ws/room/{room}"


def build(name: str, workers: int, redis_url: str) -> Stack:
    return (hybrid_stack if name == MINE else channels_stack)(workers, redis_url)


def wait_workers(server: Server, workers: int, timeout: float = 60) -> None:
    """Until the server's tree holds its workers (uvicorn answers as soon as its first
    worker does: the others must be up too, or the first would get every socket)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(descendants(server.proc.pid)) >= workers:
            break
        time.sleep(0.2)
    time.sleep(1.5)


# --------------------------------------------------------------------------- one run


def read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    """The next line of ``proc``'s stdout, or "" at its end or the deadline."""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            return proc.stdout.readline()
    return ""


def machine_jiffies() -> tuple[int, int, int]:
    """(all, idle + iowait, steal) CPU jiffies of the machine since boot (/proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4], fields[7] if len(fields) > 7 else 0


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def run_once(
    name: str, load: dict[str, Any], args: argparse.Namespace, workdir: str, tag: str
) -> dict[str, Any] | str:
    """One run of one stack at one load: its figures, or "not run: why"."""
    redis_dir = os.path.join(workdir, f"redis-{tag}")
    redis_env = start_redis(redis_dir)
    url = redis_env["REDIS_URL"]
    stack = build(name, args.workers, url)
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "benchproject.settings_groups"
    env["BENCH_REDIS_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(PROJECT), str(REPO), os.environ.get("PYTHONPATH")])
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        with Server(stack, env, workdir, f"-{tag}") as server:
            for port in stack.ports:
                try:
                    wait_ready(server.proc, f"http://127.0.0.1:{port}{stack.prefix}ping")
                except RuntimeError as error:
                    return f"not run: {error} ({' | '.join(server.log_tail(3))})"
            wait_workers(server, args.workers)
            members = plan(load["sockets"], load["rooms"], stack.ports, args.clients)
            for index in range(args.clients):
                config = {
                    "host": "127.0.0.1",
                    "path": room_path(stack),
                    "members": [[m.room, m.port, m.sender] for m in members if m.client == index],
                    "interval": load["interval_ms"] / 1000,
                    "rooms": load["rooms"],
                    "warmup": args.warmup,
                    "seconds": args.duration,
                    "drain": args.drain,
                }
                path = os.path.join(workdir, f"load-{tag}-{index}.json")
                Path(path).write_text(json.dumps(config))
                clients.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "scripts.bench.groups_load", path],
                        cwd=REPO,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        start_new_session=True,
                    )
                )
            deadline = time.monotonic() + 90
            joined = failed = 0
            for proc in clients:
                line = read_line(proc, deadline)
                if not line.startswith("ready "):
                    return f"not run: a load generator did not get ready ({line.strip()!r})"
                joined += int(line.split()[1])
                failed += int(line.split()[2])
            if failed:
                log(f"  {failed} socket(s) did not join; {joined} did")
            t0 = time.time() + 0.5
            for proc in clients:
                assert proc.stdin is not None
                proc.stdin.write(f"go {t0!r}\n")
                proc.stdin.flush()
            window_start = t0 + args.warmup
            window_end = window_start + args.duration
            server_pids = {server.proc.pid: "root", **descendants(server.proc.pid)}
            redis_pid = int(redis_env["REDIS_PID"])
            sleep_until(window_start)
            server_before = cpu_seconds(server_pids)
            machine_before = machine_jiffies()
            redis_before = cpu_seconds({redis_pid: "redis"})
            sleep_until(window_start + args.duration / 2)
            connections = classify_clients(client_list(url, "groups-bench-probe"))
            sleep_until(window_end)
            server_after = cpu_seconds(server_pids)
            machine_after = machine_jiffies()
            redis_after = cpu_seconds({redis_pid: "redis"})
            results = []
            deadline = time.monotonic() + args.drain + 60
            for proc in clients:
                line = read_line(proc, deadline)
                if not line.startswith("result "):
                    return f"not run: a load generator gave no result ({line.strip()!r})"
                results.append(json.loads(line[len("result ") :]))
            alive = server.proc.poll() is None
            log_tail = server.log_tail(5)
    finally:
        for proc in clients:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
        stop_redis(redis_dir)
    per_process = {
        f"{server_pids[pid]}-{pid}": round(server_after[pid] - server_before[pid], 3)
        for pid in server_after
        if pid in server_before
    }
    sent: dict[str, int] = {}
    closed: dict[str, int] = {}
    for result in results:
        for room, count in result["sent"].items():
            sent[room] = sent.get(room, 0) + count
        for code, count in result["closed"].items():
            closed[code] = closed.get(code, 0) + count
    figures = run_figures(
        sizes=room_sizes(members),
        sent=sent,
        histogram=merge(r["histogram"] for r in results),
        received_in_window=sum(r["received_in_window"] for r in results),
        seconds=args.duration,
        server_cpu_s=sum(per_process.values()),
        redis_cpu_s=sum(redis_after.values()) - sum(redis_before.values()),
        client_cpu_s=sum(r["cpu_s"] for r in results),
        closed=sum(closed.values()),
    )
    total, idle, steal = (b - a for a, b in zip(machine_before, machine_after, strict=True))
    figures.update(
        {
            "machine_idle": idle / total if total else None,
            "machine_steal": steal / total if total else None,
            "joined": joined,
            "failed": failed,
            "closed_codes": closed,
            "connections": connections,
            "one_subscriber_per_worker": one_subscriber_each(connections, args.workers)
            if name == MINE
            else None,
            "server_cpu_by_process": per_process,
            "sockets_per_port": {str(k): v for k, v in per_port(members).items()},
            "server_alive": alive,
            "server_log_tail": log_tail,
        }
    )
    return figures


# --------------------------------------------------------------------------- main


def make_load(
    factor: int, sockets: int, rooms: int, interval_ms: float, stacks: list[str]
) -> dict[str, Any]:
    """A load ``factor`` times lighter than the full one (1: the full load)."""
    interval = interval_ms * factor
    offered = rooms * 1000 / interval
    return {
        "name": "full" if factor == 1 else f"1/{factor}",
        "factor": factor,
        "sockets": sockets,
        "rooms": rooms,
        "interval_ms": interval,
        "offered_per_s": offered,
        "expected_per_s": offered * sockets / rooms,
        "runs": {s: [] for s in stacks},
        "failures": {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"The full run ({FULL['rounds']} rounds of each load, {FULL['duration']:g} s"
        f" each after {FULL['warmup']:g} s of warm-up) takes {FULL_MINUTES} on 2 cores;"
        f" --quick {QUICK_MINUTES}.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['rounds']} round, {QUICK['duration']:g} s per run after"
        f" {QUICK['warmup']:g} s of warm-up, {QUICK['drain']:g} s of drain ({QUICK_MINUTES})",
    )
    parser.add_argument("--sockets", type=int, default=SOCKETS, help=f"default {SOCKETS}")
    parser.add_argument("--rooms", type=int, default=ROOMS, help=f"default {ROOMS}")
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=INTERVAL_MS,
        help=f"one message per room every this many ms at the full load (default {INTERVAL_MS:g})",
    )
    parser.add_argument(
        "--loads",
        default=LOADS,
        help="the loads, as how many times fewer messages than the full load each sends,"
        f" comma-separated (default {LOADS}: the full load, a tenth, a hundredth)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help=f"seconds measured per run (default {FULL['duration']:g};"
        f" {QUICK['duration']:g} quick)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help=f"seconds of sending before the window (default {FULL['warmup']:g};"
        f" {QUICK['warmup']:g} quick)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        help=f"seconds waited after the window for late deliveries (default {FULL['drain']:g};"
        f" {QUICK['drain']:g} quick)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"alternating rounds per load (default {FULL['rounds']}; {QUICK['rounds']} quick)",
    )
    parser.add_argument("--workers", type=int, default=WORKERS, help=f"default {WORKERS}")
    parser.add_argument(
        "--clients",
        type=int,
        default=CLIENTS,
        help=f"load-generator processes (default {CLIENTS})",
    )
    parser.add_argument("--stacks", default=",".join(STACKS), help="hybrid, channels or both")
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    args = parser.parse_args()
    preset = QUICK if args.quick else FULL
    for key in ("duration", "warmup", "drain", "rounds"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    stacks = [s for s in STACKS if s in args.stacks.split(",")]
    if not stacks or set(args.stacks.split(",")) - set(STACKS):
        parser.error(f"--stacks: hybrid, channels or both, not {args.stacks!r}")
    try:
        factors = [int(f) for f in args.loads.split(",")]
        plan(args.sockets, args.rooms, list(range(args.workers)), args.clients)
    except ValueError as error:
        parser.error(str(error))
    loads = [
        make_load(factor, args.sockets, args.rooms, args.interval_ms, stacks) for factor in factors
    ]

    ensure_peers()
    raise_nofile(4 * args.sockets + 4096)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = tempfile.mkdtemp(prefix="hybrid-groups-")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["scripts/bench/groups", *sys.argv[1:]]),
        "machine": machine_text(),
        "versions": peer_versions(),
        "rounds": args.rounds,
        "seconds": args.duration,
        "warmup": args.warmup,
        "drain": args.drain,
        "workers": args.workers,
        "clients": args.clients,
        "stacks": stacks,
        "loads": loads,
    }
    stack_info = {}
    try:
        for load in loads:
            for round_no in range(1, args.rounds + 1):
                for name in stacks:
                    tag = f"{name}-x{load['factor']}-r{round_no}"
                    log(f"{load['name']} load, round {round_no}/{args.rounds}: {name}")
                    stack_info[name] = build(name, args.workers, "redis://...").note
                    try:
                        outcome = run_once(name, load, args, workdir, tag)
                    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
                        outcome = f"not run: {type(e).__name__}: {e}"
                    if isinstance(outcome, str):
                        log(f"  {outcome}")
                        load["failures"][name] = outcome
                        continue
                    outcome["round"] = round_no
                    load["runs"][name].append(outcome)
                    log(
                        f"  {outcome['deliveries_per_s']:,.0f} deliveries/s,"
                        f" p50 {outcome['p50_ms'] or 0:.2f} ms, p99 {outcome['p99_ms'] or 0:.2f}"
                        f" ms, loss {(outcome['loss'] or 0) * 100:.2f}%, server"
                        f" {outcome['server_us_per_msg']:.1f} us/msg, Redis"
                        f" {outcome['redis_us_per_msg']:.1f} us/msg,"
                        f" {outcome['connections']['total']} Redis connections"
                    )
    except KeyboardInterrupt:
        log("interrupted: stopping")
        results["interrupted"] = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for load in loads:
        runs = load["runs"]
        load["figures"] = {s: summarize(runs[s]) for s in stacks if runs[s]}
        load["connections"] = {s: [r["connections"] for r in runs[s]] for s in stacks}
        if MINE in runs and PEER in runs:
            load["targets"] = {
                figure: target(runs[MINE], runs[PEER], figure)
                for figure in ("p99_ms", "server_us_per_msg", "total_us_per_msg")
            }
    results["stack_info"] = stack_info
    results["elapsed_s"] = round(time.monotonic() - started)
    (out / "groups.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "groups.md").write_text(render_markdown(results))
    log(f"wrote {out}/groups.json, groups.md in {results['elapsed_s']} s")


if __name__ == "__main__":
    main()
