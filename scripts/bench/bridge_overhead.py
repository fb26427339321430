"""The bridge's overhead: DjangoHandler vs a plain Tornado handler, for hello and a DB read.

    python -m scripts.bench.bridge_overhead [--duration 10] [--concurrency 32] [--wrk]

Starts ``hybrid serve`` on one port with ``tests/projects/testproject`` (SQLite in a temporary
directory, migrated and filled here), then drives two pairs with the same load, one after
the other: ``/bench/bridged-hello`` (a ``DjangoHandler`` writing "hello" through Django's
default ``MIDDLEWARE``) against ``/bench/plain-hello`` (a ``tornado.web.RequestHandler``),
and ``/bench/bridged`` (the same, reading one row with ``Item.objects.aget``: a database
lane, request hygiene) against ``/bench/plain`` (the same read from a plain handler). Prints
requests per second and the ratios.
The load generator is a few lines of asyncio over keep-alive HTTP/1.1 connections; with
``--wrk`` and ``wrk`` on the PATH it uses wrk instead. Not a test: numbers depend on the
machine, so compare runs on one machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from . import wrk
from .harness import free_port, stop_process, wait_ready
from .paths import REPO

TESTS = REPO / "tests" / "projects"


def prepare(env: dict[str, str]) -> None:
    """Migrate the SQLite database and create the row the endpoints read."""
    code = (
        "import django; django.setup();"
        "from django.core.management import call_command; call_command('migrate', verbosity=0);"
        "from shop.models import Item; Item.objects.get_or_create(pk=1, defaults={'name': 'bench'})"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True)


async def one_connection(port: int, path: str, stop: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    try:
        while time.monotonic() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected response: {head[:80]!r}")
            length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])  # type: ignore[index]
            await reader.readexactly(length)
            counts[0] += 1
    finally:
        writer.close()


async def drive(port: int, path: str, duration: float, concurrency: int) -> float:
    counts = [0]
    start = time.monotonic()
    stop = start + duration
    await asyncio.gather(*(one_connection(port, path, stop, counts) for _ in range(concurrency)))
    return counts[0] / (time.monotonic() - start)


def drive_wrk(port: int, path: str, duration: float, concurrency: int) -> float:
    url = f"http://127.0.0.1:{port}{path}"
    argv = wrk.command(url, concurrency, int(duration), latency=False)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return float(wrk.parse(out)["rps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per endpoint")
    parser.add_argument("--concurrency", type=int, default=32, help="connections")
    parser.add_argument("--db-threads", type=int, default=8)
    parser.add_argument("--wrk", action="store_true", help="use wrk when installed")
    args = parser.parse_args()
    use_wrk = args.wrk and shutil.which("wrk") is not None

    workdir = tempfile.mkdtemp(prefix="hybrid-bench-")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["DJANGO_SETTINGS_MODULE"] = "testproject.settings_bench"
    env["TESTPROJECT_DB"] = os.path.join(workdir, "bench.sqlite3")
    prepare(env)

    port = free_port()
    argv = [sys.executable, "-m", "hybrid", "serve", "--ports", str(port)]
    argv += ["--db-threads", str(args.db_threads), "--log-level", "warning"]
    proc = subprocess.Popen(argv, env=env, cwd=REPO, start_new_session=True)
    try:
        try:
            wait_ready(proc, f"http://127.0.0.1:{port}/bench/plain", timeout=30)
        except RuntimeError as error:
            raise SystemExit(f"hybrid serve {error}") from None
        results = {}
        for name in ("plain-hello", "bridged-hello", "plain", "bridged"):
            path = f"/bench/{name}?pk=1"
            if use_wrk:
                drive_wrk(port, path, 2, args.concurrency)  # warm up
                results[name] = drive_wrk(port, path, args.duration, args.concurrency)
            else:
                asyncio.run(drive(port, path, 2, args.concurrency))  # warm up
                results[name] = asyncio.run(drive(port, path, args.duration, args.concurrency))
        tool = "wrk" if use_wrk else "asyncio client (same process for all connections)"
        print(f"load: {tool}, {args.concurrency} connections, {args.duration:g} s per endpoint")
        hello, bridged_hello = results["plain-hello"], results["bridged-hello"]
        read, bridged_read = results["plain"], results["bridged"]
        print(f"hello: plain RequestHandler       : {hello:8.0f} req/s")
        print(f"hello: DjangoHandler + MIDDLEWARE : {bridged_hello:8.0f} req/s")
        print(f"hello: ratio bridged / plain      : {bridged_hello / hello:8.2f}")
        print(f"read : plain RequestHandler + ORM : {read:8.0f} req/s")
        print(f"read : DjangoHandler + MIDDLEWARE : {bridged_read:8.0f} req/s")
        print(f"read : ratio bridged / plain      : {bridged_read / read:8.2f}")
    finally:
        stop_process(proc, grace=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
