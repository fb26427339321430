"""Benchmark (not a test): Django's async ORM natively on aiomysql vs the thread path.

    python -m scripts.bench.native_mysql [--requests 2000] [--repeat 3] [--lanes 8]

Starts a private MariaDB with scripts/mariadb, creates the tests/projects/nativedb tables, then in
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
import tempfile
import time
from typing import Any

from .database import create_database, start_mariadb, stop_mariadb
from .paths import REPO, import_package
from .rounds import alternate, compare

DATABASE = "hybrid_bench"
Sample = tuple[float, float]  # (requests per second, CPU microseconds per request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="hybrid-bench-")
    env = start_mariadb(directory)
    try:
        run(env, args.requests, args.lanes, args.repeat)
    finally:
        stop_mariadb(directory)


def run(env: dict[str, str], requests: int, lane_count: int, repeat: int) -> None:
    import pymysql

    # the tests' app, as a package
    import_package("nativedb", REPO / "tests" / "projects" / "nativedb")
    pymysql.version_info = (2, 2, 7, "final", 0)
    pymysql.install_as_MySQLdb()
    create_database(env, DATABASE)
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
                "NAME": DATABASE,
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
    from hybrid import lanes

    hybrid.db.install()

    async def get_one(n: int) -> Any:
        return await Note.objects.aget(pk=1 + n % 200)

    async def list_100(n: int) -> Any:
        return [o async for o in Note.objects.filter(n__lt=100).order_by("pk")]

    async def thread_path(fn: Any, n: int) -> Any:
        async with lanes.lane_context():
            return await fn(n)

    async def measure(fn: Any, concurrency: int, native: bool) -> Sample:
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
        lanes.install_lane_pool(lanes.LanePool(lane_count))  # as a worker does at boot
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

                async def natively(fn: Any = fn, concurrency: int = concurrency) -> Sample:
                    hybrid.db.activate(lane_count)
                    figures = await measure(fn, concurrency, True)
                    await hybrid.db.close_native_pools()  # also deactivates the loop: thread path
                    return figures

                async def threaded(fn: Any = fn, concurrency: int = concurrency) -> Sample:
                    return await measure(fn, concurrency, False)

                c = compare(*await alternate(repeat, natively, threaded))
                print(
                    f"{name:<10} {concurrency:>5} {c.first_rate:>10.0f} {c.second_rate:>11.0f} "
                    f"{c.rate_ratio:>6.2f} {c.first_cpu_us:>14.0f} {c.second_cpu_us:>16.0f} "
                    f"{c.cpu_ratio:>6.2f}"
                )
        await lanes.close_lane_pools()

    asyncio.run(bench())


if __name__ == "__main__":
    main()
