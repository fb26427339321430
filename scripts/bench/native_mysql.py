"""Benchmark (not a test): Django's async ORM natively on aiomysql vs the thread path.

    python scripts/bench/native_mysql.py [--requests 2000] [--repeat 3] [--lanes 8]

Starts a private MariaDB with scripts/mariadb, creates the tests/nativedb tables, then in
one process and one event loop times, for concurrency 1, 64 and 256:

* ``aget(pk=...)`` and a 100-row ``[o async for o in qs]``;
* natively (hybrid.db, the loop activated) and through the executor path (each "request"
  leases a database lane, as a DjangoHandler does, and Django's ``sync_to_async`` runs the
  query on it; 8 lanes);

and prints requests per second and the native/executor ratio, and the CPU time of this
process per request (``time.process_time()``: the loop, and the lanes' threads on the
executor path). Each measurement is repeated ``--repeat`` times, native and executor
alternating, and the medians are printed: on a shared machine the rate swings with the
neighbours' load, the CPU time per request much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="hybrid-bench-")
    started = subprocess.run(
        ["bash", str(REPO / "scripts" / "mariadb"), "start", directory],
        capture_output=True,
        text=True,
        check=True,
    )
    env = dict(line.split("=", 1) for line in started.stdout.split())
    try:
        run(env, args.requests, args.lanes, args.repeat)
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "mariadb"), "stop", directory], check=False)


def run(env: dict[str, str], requests: int, lane_count: int, repeat: int) -> None:
    import pymysql

    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    pymysql.version_info = (2, 2, 7, "final", 0)
    pymysql.install_as_MySQLdb()
    admin = pymysql.connect(
        host=env["MARIADB_HOST"],
        port=int(env["MARIADB_PORT"]),
        user=env["MARIADB_USER"],
        password=env["MARIADB_PASSWORD"],
    )
    with admin.cursor() as cursor:
        cursor.execute("CREATE DATABASE IF NOT EXISTS hybrid_bench CHARACTER SET utf8mb4")
    admin.close()
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["nativedb"],
        USE_TZ=True,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.mysql",
                "HOST": env["MARIADB_HOST"],
                "PORT": env["MARIADB_PORT"],
                "USER": env["MARIADB_USER"],
                "PASSWORD": env["MARIADB_PASSWORD"],
                "NAME": "hybrid_bench",
                "CONN_MAX_AGE": 600,
            }
        },
    )
    import django

    django.setup()
    from django.db import connection
    from nativedb.models import MODELS, Note

    with connection.schema_editor() as editor:
        for model in MODELS:
            editor.create_model(model)
    Note.objects.bulk_create([Note(text=f"note {n}", n=n) for n in range(200)])
    connection.close()

    import hybrid.db
    from hybrid.bridge import lanes

    hybrid.db.install()
    hybrid.db.set_pool_size(lane_count)
    lanes.set_default_size(lane_count)

    async def get_one(n: int) -> Any:
        return await Note.objects.aget(pk=1 + n % 200)

    async def list_100(n: int) -> Any:
        return [o async for o in Note.objects.filter(n__lt=100).order_by("pk")]

    async def thread_path(fn: Any, n: int) -> Any:
        async with lanes.lane_context():
            return await fn(n)

    async def measure(fn: Any, concurrency: int, native: bool) -> tuple[float, float]:
        """(requests per second, CPU microseconds per request)."""
        semaphore = asyncio.Semaphore(concurrency)

        async def one(n: int) -> None:
            async with semaphore:
                await (fn(n) if native else thread_path(fn, n))

        await asyncio.gather(*(one(n) for n in range(min(requests, 200))))  # warm up
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(n) for n in range(requests)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return requests / elapsed, cpu / requests * 1e6

    async def bench() -> None:
        print(
            f"{requests} requests each, {lane_count} lanes / pool connections, median of "
            f"{repeat}, pid {os.getpid()}"
        )
        print(
            f"{'query':<10} {'conc':>5} {'native/s':>10} {'executor/s':>11} {'ratio':>6} "
            f"{'native CPU us':>14} {'executor CPU us':>16} {'ratio':>6}"
        )
        for name, fn in (("aget", get_one), ("list100", list_100)):
            for concurrency in (1, 64, 256):
                native_runs, thread_runs = [], []
                for _ in range(repeat):
                    hybrid.db.activate()
                    native_runs.append(await measure(fn, concurrency, True))
                    await hybrid.db.close_pools()  # also deactivates the loop: thread path
                    thread_runs.append(await measure(fn, concurrency, False))
                native = statistics.median(r for r, _ in native_runs)
                threaded = statistics.median(r for r, _ in thread_runs)
                native_cpu = statistics.median(c for _, c in native_runs)
                thread_cpu = statistics.median(c for _, c in thread_runs)
                print(
                    f"{name:<10} {concurrency:>5} {native:>10.0f} {threaded:>11.0f} "
                    f"{native / threaded:>6.2f} {native_cpu:>14.0f} {thread_cpu:>16.0f} "
                    f"{thread_cpu / native_cpu:>6.2f}"
                )
        await lanes.close_pools()

    asyncio.run(bench())


if __name__ == "__main__":
    main()
