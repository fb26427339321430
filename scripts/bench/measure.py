"""What is measured on a started stack: every endpoint with wrk, a hybrid worker's loop lag
while commands run, and one worker's RSS while it holds idle keep-alive connections."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .endpoints import ENDPOINTS, MIDDLEWARE_HEADERS, check
from .harness import Server, Stack, get, log, pid_rss_mb
from .idle_conns import open_idle
from .paths import HERE
from .report import fmt_ms
from .stacks import DB_POOL, hybrid_stack, idle_stack
from .targets import LAG_COMMANDS, LAG_SLEEP, LAG_TARGET_MS
from .wrk import run_sampled


def bench_stack(
    factory: Callable[[], Stack],
    env: dict[str, str],
    endpoints: list[str],
    seconds: int,
    warmup: int,
    workdir: str,
) -> tuple[Stack, list[dict[str, Any]] | str]:
    """Start the stack, check and drive each endpoint: its rows, or "not run: reason"."""
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
                        run_sampled(url, connections, warmup, server.proc.pid)
                    # 1,000 connections need a few seconds before anything completes.
                    length = max(seconds, 3 if seconds < 5 else 5) if connections > 100 else seconds
                    row.update(run_sampled(url, connections, length, server.proc.pid))
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


def measure_lag(
    env: dict[str, str], workdir: str, seconds: int, pool: int = DB_POOL
) -> dict[str, Any]:
    """A hybrid worker's event-loop lag with 200 commands in flight (and the standalone
    ``process_lag.py`` figure)."""
    result: dict[str, Any] = {"commands": LAG_COMMANDS, "target_p99_ms": LAG_TARGET_MS}
    stack = hybrid_stack(1, extra=["--max-commands", str(LAG_COMMANDS)], pool=pool)
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
                        run_sampled(server.base + path, LAG_COMMANDS, seconds + 3, server.proc.pid)
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
    name: str,
    env: dict[str, str],
    workdir: str,
    connections: int,
    django_path: bool,
    pool: int = DB_POOL,
) -> dict[str, Any]:
    """RSS of one worker before and while it holds ``connections`` idle keep-alive
    connections, each of which sent one request first."""
    stack = idle_stack(name, pool)
    if stack is None:
        return {"status": f"not run: no idle measurement for {name}"}
    path = stack.prefix + "hello" if django_path else IDLE_PATHS[name]
    url = f"http://127.0.0.1:{stack.port}{path}"
    result: dict[str, Any] = {"connections": connections, "path": path, "note": stack.note}
    with Server(stack, env, workdir, "-idle") as server:
        failed = server.ready()
        if failed:
            result["status"] = f"not run: {failed}"
            return result
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
