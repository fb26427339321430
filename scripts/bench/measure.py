"""What is measured on a started stack: every endpoint with wrk, directly and behind nginx,
a hybrid worker's loop lag while commands run, one worker's RSS while it holds idle
keep-alive connections, and (``--profile``) py-spy profiles of a hybrid worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .endpoints import ENDPOINTS, MIDDLEWARE_HEADERS, check
from .harness import Server, Stack, get, log, pid_rss_mb, wait_ready
from .idle_conns import open_idle
from .paths import BENCH_VENV, HERE
from .proxy import Proxy, cpu_delta
from .stacks import DB_POOL, hybrid_stack, idle_stack
from .targets import LAG_COMMANDS, LAG_SLEEP, LAG_TARGET_MS
from .targets import fmt as fmt_ms
from .wrk import run_sampled, spread_script, threads_for

THREADS = 2  # wrk threads against one port (rounded up to a multiple of the ports)


def warm_up(server: Server, endpoints: list[str], seconds: int, workdir: str) -> None:
    """``seconds`` of wrk, direct, on hello and row (or the first endpoint): the lazy
    imports, caches and the database pool a fresh server fills on its first requests."""
    chosen = [e for e in ("hello", "row") if e in endpoints] or endpoints[:1]
    for endpoint in chosen:
        suffix, connections = ENDPOINTS[endpoint]
        url, threads, script = direct_target(server.stack, suffix, workdir)
        try:
            run_sampled(url, min(connections, 64), seconds, server.proc.pid, threads, script)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            log(f"  warm-up of {endpoint}: {error}")


def direct_target(stack: Stack, suffix: str, workdir: str) -> tuple[str, int, str | None]:
    """(URL, wrk threads, Lua script or None) that drive ``stack`` on its own port(s): with
    several ports, a thread count that is a multiple of them and a script that points each
    thread at one port in turn."""
    url = f"http://127.0.0.1:{stack.port}{stack.prefix}{suffix}"
    if len(stack.ports) == 1:
        return url, THREADS, None
    script = os.path.join(workdir, f"spread-{'-'.join(map(str, stack.ports))}.lua")
    if not os.path.exists(script):
        Path(script).write_text(spread_script(stack.ports))
    return url, threads_for(len(stack.ports), THREADS), script


def bench_server(
    factory: Callable[[], Stack],
    env: dict[str, str],
    endpoints: list[str],
    seconds: int,
    warmup: int,
    workdir: str,
    modes: list[str],
    round_no: int = 1,
) -> tuple[Stack, list[dict[str, Any]] | str]:
    """Start the stack once (and, for the nginx mode, a fresh nginx in front of it), warm
    it up, then check and drive each endpoint in each mode (direct: its own port(s); nginx:
    through nginx): the rows, or "not run: reason" when the server did not start."""
    stack = factory()
    tag = f"-r{round_no}"
    with Server(stack, env, workdir, tag) as server:
        for port in stack.ports:
            base = f"http://127.0.0.1:{port}{stack.prefix}"
            try:
                wait_ready(server.proc, base + "hello")
            except RuntimeError as error:
                tail = server.log_tail(3)
                return stack, f"not run: {error}" + (f" ({' | '.join(tail)})" if tail else "")
        if warmup:
            warm_up(server, endpoints, warmup, workdir)
        rows: list[dict[str, Any]] = []
        checked: set[str] = set()
        with contextlib.ExitStack() as running:
            proxy: Proxy | None = None
            proxy_failed: str | None = None
            if "nginx" in modes:
                try:
                    proxy = running.enter_context(
                        Proxy(stack.ports, workdir, f"{stack.name}-{stack.processes}{tag}")
                    )
                    proxy_failed = proxy.ready(f"http://127.0.0.1:{proxy.port}{stack.prefix}hello")
                except Exception as error:  # noqa: BLE001 - no nginx: the direct rows still run
                    proxy_failed = f"nginx: {error}"
            # Endpoint by endpoint, each mode in turn: a stack that cannot keep up with
            # io-1000 (last) drains its backlog after the run, and nothing else follows it
            # but io-1000 in the next mode.
            for endpoint in endpoints:
                for mode in modes:
                    row: dict[str, Any] = {"stack": stack.name, "mode": mode, "round": round_no}
                    if mode == "nginx":
                        if proxy_failed or proxy is None:
                            row.update(endpoint=endpoint, status=f"not run: {proxy_failed}")
                            rows.append(row)
                            continue
                        base = f"http://127.0.0.1:{proxy.port}{stack.prefix}"
                        rows.append(
                            drive(
                                server, endpoint, base, THREADS, None, seconds, row, checked, proxy
                            )
                        )
                    else:
                        suffix = ENDPOINTS[endpoint][0]
                        url, threads, script = direct_target(stack, suffix, workdir)
                        base = url[: -len(suffix)]
                        rows.append(
                            drive(server, endpoint, base, threads, script, seconds, row, checked)
                        )
                    if server.proc.poll() is not None:
                        return (
                            stack,
                            f"not run: server exited with {server.proc.returncode}"
                            f" in round {round_no} ({endpoint}, {mode})",
                        )
        return stack, rows


def drive(
    server: Server,
    endpoint: str,
    base: str,
    threads: int,
    script: str | None,
    seconds: int,
    row: dict[str, Any],
    checked: set[str],
    proxy: Proxy | None = None,
) -> dict[str, Any]:
    """Check ``endpoint`` at ``base`` (200, and what the benchmark means to measure; once per
    URL in ``checked``), then drive it with wrk; with ``proxy``, nginx's workers' CPU over
    the run too."""
    stack = server.stack
    suffix, connections = ENDPOINTS[endpoint]
    url = base + suffix
    row.update(
        processes=stack.processes,
        endpoint=endpoint,
        connections=connections,
        url=url,
        threads=threads,
        ports=len(stack.ports),
    )
    problem: str | None = None
    if url not in checked:
        try:
            status, headers, body = get(url, timeout=30)
        except OSError as error:
            status, headers, body = 0, {}, str(error).encode()
        problem = (
            f"GET {suffix} answered {status}: {body[:120]!r}"
            if status != 200
            else check(stack, endpoint, headers, body)
        )
        if problem is None:
            checked.add(url)
    else:
        # io-1000 is io's URL, checked already: a GET now would wait behind the backlog a
        # stack that cannot keep up (gunicorn-sync) still drains from the run before.
        headers = {}
        row["checked_with"] = "the same URL's earlier check"
    if endpoint == "hello" and stack.django and headers:
        row["middleware_headers"] = {k: headers.get(k) for k in MIDDLEWARE_HEADERS}
    if problem:
        row["status"] = f"not run: {problem}"
    else:
        # 1,000 connections need a few seconds before anything completes.
        length = max(seconds, 3) if connections > 100 else seconds
        try:
            before = proxy.cpu() if proxy else {}
            row.update(run_sampled(url, connections, length, server.proc.pid, threads, script))
            if proxy:
                used = cpu_delta(before, proxy.cpu())
                row["nginx_cpu_s"] = round(used, 3)
                row["nginx_cpu_us_per_request"] = (
                    round(used * 1e6 / row["requests"], 1) if row["requests"] else None
                )
            row["seconds"] = length
            row["status"] = "ok"
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            row["status"] = f"not run: {error}"
    log(
        f"  r{row['round']} {stack.name:<17} {row['mode']:<6} {endpoint:<8} "
        + (
            f"{row['rps']:8.0f} req/s  p50 {fmt_ms(row['p50_ms'])}"
            f"  p99 {fmt_ms(row['p99_ms'])}  err {row['errors']}"
            f"  rss {row['rss_process_mb']:.0f}/{row['rss_mb']:.0f} MB"
            + (
                f"  nginx {row['nginx_cpu_us_per_request']:.0f} us/req"
                if row.get("nginx_cpu_us_per_request") is not None
                else ""
            )
            if row["status"] == "ok"
            else row["status"]
        )
    )
    if row["status"] != "ok" or row.get("errors"):
        row["server_log_tail"] = server.log_tail()
    return row


def profile_hybrid(
    env: dict[str, str],
    workdir: str,
    endpoints: list[str],
    seconds: int,
    out: Path,
    pool: int = DB_POOL,
) -> dict[str, Any]:
    """py-spy on the worker of a one-process hybrid while wrk drives each endpoint (direct):
    a speedscope JSON and an SVG flame graph per endpoint under ``out``. A pass of its own,
    after the matrix, so that the sampling does not slow the measured rounds."""
    spy = str(BENCH_VENV / "bin" / "py-spy")
    result: dict[str, Any] = {}
    stack = hybrid_stack(1, pool=pool)
    with Server(stack, env, workdir, "-profile") as server:
        failed = server.ready()
        if failed:
            return {"status": f"not run: {failed}"}
        warm_up(server, endpoints, 1, workdir)
        worker = server.worker_pid()
        for endpoint in endpoints:
            suffix, connections = ENDPOINTS[endpoint]
            url = server.base + suffix
            files = {}
            for fmt, ext in (("speedscope", "speedscope.json"), ("flamegraph", "svg")):
                path = out / f"profile-{endpoint}.{ext}"
                load = threading.Thread(
                    target=run_sampled,
                    args=(url, connections, seconds + 2, server.proc.pid),
                    daemon=True,
                )
                load.start()
                time.sleep(1)
                argv = [spy, "record", "--pid", str(worker), "--duration", str(seconds)]
                argv += ["--format", fmt, "--output", str(path)]
                done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
                load.join()
                files[fmt] = (
                    path.name
                    if done.returncode == 0 and path.exists()
                    else f"failed: {(done.stderr or done.stdout).strip()[-200:]}"
                )
            result[endpoint] = files
            log(f"  profile {endpoint}: {files}")
    return {"status": "ok", "worker": "hybrid, 1 process, direct", "files": result}


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
