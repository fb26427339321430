"""The stacks compared: hybrid, raw Tornado + aiomysql, gunicorn (sync, gthread, gevent) and
uvicorn; each one's command line, environment, note and database concurrency. Each is
measured directly and behind nginx (``proxy.py``); hybrid and raw Tornado run in the
project's virtualenv, the peers in the bench virtualenv (``paths.BENCH_PYTHON``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from .harness import Stack, free_port
from .paths import BENCH_PYTHON, HERE, PROJECT

CORES = os.cpu_count() or 1
# wrk's connections on the database endpoints (row, list, query): the database concurrency
# a stack can use per process, at most.
DB_CONNECTIONS = 64
# hybrid --db-threads (its threads and its native aiomysql pool) and raw Tornado's aiomysql
# pool, per process: as many as wrk's connections, the concurrency gevent (a connection per
# greenlet) and uvicorn (a thread and a connection per request) get by themselves.
DB_POOL = DB_CONNECTIONS
THREADS = 16  # gunicorn gthread --threads
SYNC_2C1 = 2 * CORES + 1  # gunicorn's recommended sync worker count
# The stacks of the matrix, in the order of each round (hybrid first, then the ceiling and
# the peers); gunicorn-sync-{SYNC_2C1}w is a reference run only when --stacks names it.
STACKS = (
    "hybrid",
    "raw-tornado",
    "gunicorn-sync",
    "gunicorn-gthread",
    "gunicorn-gevent",
    "uvicorn",
)
REFERENCE = f"gunicorn-sync-{SYNC_2C1}w"


def db_concurrency(name: str, pool: int = DB_POOL) -> tuple[int, str]:
    """How many database queries one process of ``name`` can have in flight on the
    database endpoints (64 wrk connections), and how it comes to that."""
    if name == "hybrid":
        return pool, f"`--db-threads {pool}`: native aiomysql pool of {pool} (and {pool} threads)"
    if name == "raw-tornado":
        return pool, f"aiomysql pool of {pool}"
    if name == "gunicorn-gevent":
        return DB_CONNECTIONS, (
            f"a connection per greenlet: one per wrk connection, {DB_CONNECTIONS} at most"
        )
    if name == "uvicorn":
        return DB_CONNECTIONS, (
            f"a thread and a connection per request: one per wrk connection,"
            f" {DB_CONNECTIONS} at most"
        )
    if name == "gunicorn-gthread":
        return THREADS, f"{THREADS} threads, a connection each"
    if name.startswith("gunicorn-sync"):
        return 1, "one request at a time"
    raise KeyError(name)


def db_text(name: str, pool: int = DB_POOL) -> str:
    count, how = db_concurrency(name, pool)
    return f"{count} ({how})"


def hybrid_stack(processes: int, extra: list[str] | None = None, pool: int = DB_POOL) -> Stack:
    """``hybrid serve`` with one port per process (nginx, when measured behind it, is the
    harness's: the same config for every stack)."""
    ports = [free_port() for _ in range(processes)]
    argv = [sys.executable, "-m", "hybrid", "serve", "--ports", ",".join(map(str, ports))]
    argv += ["--settings", "benchproject.settings", "--pythonpath", str(PROJECT)]
    argv += ["--native-mysql", "true", "--db-threads", str(pool)]
    argv += ["--log-level", "warning", "--graceful-timeout", "2", *(extra or [])]
    note = (
        f"DjangoHandler, default middleware, `--native-mysql true`, `--db-threads {pool}`;"
        f" {processes} port(s), one per worker process"
    )
    return Stack(
        "hybrid",
        processes,
        argv,
        ports[0],
        "/h/",
        {},
        note,
        cwd=PROJECT,
        ports=ports,
        db=db_text("hybrid", pool),
    )


def raw_stack(processes: int, pool: int = DB_POOL) -> Stack:
    port = free_port()
    argv = [sys.executable, str(HERE / "raw_tornado.py"), str(port), str(processes)]
    env = {"BENCH_POOL_SIZE": str(pool)}
    note = (
        "no Django; Tornado's fork_processes on one port, on the event loop hybrid's"
        " workers get (uvloop when installed): the ceiling"
    )
    return Stack(
        "raw-tornado",
        processes,
        argv,
        port,
        "/",
        env,
        note,
        django=False,
        cwd=PROJECT,
        db=db_text("raw-tornado", pool),
    )


def gunicorn_stack(kind: str, workers: int, name: str = "") -> Stack:
    port = free_port()
    argv = [str(BENCH_PYTHON), "-m", "gunicorn", "benchproject.wsgi:application"]
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
            f" CONN_MAX_AGE {age} (BENCH_GEVENT_CONN_MAX_AGE)"
        )
    name = name or f"gunicorn-{kind}"
    db = db_text(name)
    return Stack(name, workers, argv, port, "/sync/", env, note, cwd=PROJECT, db=db)


def uvicorn_stack(processes: int) -> Stack:
    port = free_port()
    argv = [str(BENCH_PYTHON), "-m", "uvicorn", "benchproject.asgi:application"]
    argv += ["--port", str(port), "--host", "127.0.0.1", "--no-access-log"]
    argv += ["--log-level", "warning", "--app-dir", str(PROJECT), "--backlog", "2048"]
    argv += ["--timeout-keep-alive", "75"]
    if processes > 1:
        argv += ["--workers", str(processes)]
    note = (
        "Django async views (async ORM: sync_to_async, PyMySQL); uvloop + httptools;"
        " CONN_MAX_AGE 0, as Django advises under ASGI (each request runs on a new thread, so"
        " persistent connections pile up past MariaDB's limit: error 1040);"
        " --timeout-keep-alive 75 (hybrid's keep-alive; uvicorn's default 5 s drops idle"
        " connections)"
    )
    env = {"BENCH_CONN_MAX_AGE": "0"}
    db = db_text("uvicorn")
    return Stack("uvicorn", processes, argv, port, "/async/", env, note, cwd=PROJECT, db=db)


def build_stacks(processes: int, pool: int = DB_POOL) -> dict[str, Callable[[], Stack]]:
    """name -> factory, for one process count, in the order each round runs them."""
    return {
        "hybrid": lambda: hybrid_stack(processes, pool=pool),
        "raw-tornado": lambda: raw_stack(processes, pool),
        "gunicorn-sync": lambda: gunicorn_stack("sync", processes),
        "gunicorn-gthread": lambda: gunicorn_stack("gthread", processes),
        "gunicorn-gevent": lambda: gunicorn_stack("gevent", processes),
        "uvicorn": lambda: uvicorn_stack(processes),
        REFERENCE: lambda: gunicorn_stack("sync", SYNC_2C1, REFERENCE),
    }


def idle_stack(name: str, pool: int = DB_POOL) -> Stack | None:
    """One process of ``name`` for the idle-connection test, or None where it has none."""
    factories: dict[str, Callable[[], Stack]] = {
        "hybrid": lambda: hybrid_stack(1, pool=pool),
        "raw-tornado": lambda: raw_stack(1, pool),
        "uvicorn": lambda: uvicorn_stack(1),
    }
    return factories[name]() if name in factories else None
