"""The stacks compared: hybrid (direct and behind nginx), raw Tornado + aiomysql, gunicorn
(sync, gthread, gevent) and uvicorn; each one's command line, environment and note."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from .harness import Stack, free_port
from .paths import HERE, PROJECT

CORES = os.cpu_count() or 1
DB_POOL = 32  # hybrid --db-threads (its threads and its native aiomysql pool), raw aiomysql pool
THREADS = 16  # gunicorn gthread --threads
SYNC_2C1 = 2 * CORES + 1  # gunicorn's recommended sync worker count


def hybrid_stack(
    processes: int, nginx: bool = False, extra: list[str] | None = None, pool: int = DB_POOL
) -> Stack:
    ports = [free_port() for _ in range(processes)]
    argv = [sys.executable, "-m", "hybrid", "serve", "--ports", ",".join(map(str, ports))]
    argv += ["--settings", "benchproject.settings", "--pythonpath", str(PROJECT)]
    argv += ["--native-mysql", "true", "--db-threads", str(pool)]
    argv += ["--log-level", "warning", "--graceful-timeout", "2", *(extra or [])]
    port = ports[0]
    if nginx:
        port = free_port()
        argv += ["--nginx", str(port)]
    note = (
        f"DjangoHandler, default middleware, `--native-mysql true`, `--db-threads {pool}`"
        f" (= raw-tornado's pool; {pool} x {processes} x 2 <= MariaDB's 300 connections)"
    )
    if nginx:
        note += f"; nginx on one port in front of {processes} worker port(s)"
    name = "hybrid-nginx" if nginx else "hybrid"
    return Stack(name, processes, argv, port, "/h/", {}, note, cwd=PROJECT)


def raw_stack(processes: int, pool: int = DB_POOL) -> Stack:
    port = free_port()
    argv = [sys.executable, str(HERE / "raw_tornado.py"), str(port), str(processes)]
    env = {"BENCH_POOL_SIZE": str(pool)}
    note = f"no Django; aiomysql pool {pool} per process (the ceiling)"
    return Stack("raw-tornado", processes, argv, port, "/", env, note, django=False, cwd=PROJECT)


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
    return Stack(name or f"gunicorn-{kind}", workers, argv, port, "/sync/", env, note, cwd=PROJECT)


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
    return Stack("uvicorn", processes, argv, port, "/async/", env, note, cwd=PROJECT)


def build_stacks(
    processes: int, quick: bool = False, pool: int = DB_POOL
) -> list[tuple[str, Callable[[], Stack] | str]]:
    """(name, factory or "not run: reason") for one process count."""
    stacks: list[tuple[str, Callable[[], Stack] | str]] = []
    if processes == 1:
        stacks.append(("hybrid", lambda: hybrid_stack(1, pool=pool)))
    else:
        stacks.append(("hybrid", "not run: one port per worker; measured behind nginx"))
    stacks += [
        ("hybrid-nginx", lambda: hybrid_stack(processes, nginx=True, pool=pool)),
        ("raw-tornado", lambda: raw_stack(processes, pool)),
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


def idle_stack(name: str, pool: int = DB_POOL) -> Stack | None:
    """One process of ``name`` for the idle-connection test, or None where it has none."""
    factories: dict[str, Callable[[], Stack]] = {
        "hybrid": lambda: hybrid_stack(1, pool=pool),
        "raw-tornado": lambda: raw_stack(1, pool),
        "uvicorn": lambda: uvicorn_stack(1),
    }
    return factories[name]() if name in factories else None
