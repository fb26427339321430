"""The ceiling for scripts/bench/run: raw Tornado + raw aiomysql, no Django.

    python scripts/bench/raw_tornado.py PORT [PROCESSES]

The same endpoints as the benchmark project (``/hello``, ``/row``, ``/list``, ``/query``,
``/io``, ``/cmd``) on the same table; the database comes from ``MARIADB_*`` and
``BENCH_DATABASE`` as in ``project/benchproject/settings.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from typing import Any

import aiomysql
import tornado.httpserver
import tornado.netutil
import tornado.process
import tornado.web

ROWS = 100
COLUMNS = "id, name, value, note"
POOL: list[Any] = []


def as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "name": row[1], "value": row[2], "note": row[3]}


async def fetch(sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    if not POOL:
        POOL.append(
            await aiomysql.create_pool(
                host=os.environ["MARIADB_HOST"],
                port=int(os.environ["MARIADB_PORT"]),
                user=os.environ["MARIADB_USER"],
                password=os.environ["MARIADB_PASSWORD"],
                db=os.environ.get("BENCH_DATABASE", "hybrid_bench"),
                minsize=1,
                maxsize=int(os.environ.get("BENCH_POOL_SIZE", "32")),
                autocommit=True,
            )
        )
    async with POOL[0].acquire() as conn, conn.cursor() as cursor:
        await cursor.execute(sql, args)
        return list(await cursor.fetchall())


class Hello(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.write(b"Hello, World!")


class OneRow(tornado.web.RequestHandler):
    async def get(self) -> None:
        sql = f"SELECT {COLUMNS} FROM benchapp_row WHERE id = %s"
        rows = await fetch(sql, (random.randint(1, ROWS),))
        self.write(as_dict(rows[0]))


class Rows(tornado.web.RequestHandler):
    async def get(self) -> None:
        rows = await fetch(f"SELECT {COLUMNS} FROM benchapp_row ORDER BY id LIMIT 20")
        self.write({"rows": [as_dict(r) for r in rows]})


class Query(tornado.web.RequestHandler):
    async def get(self) -> None:
        rows = await fetch("SELECT SLEEP(0.05) FROM benchapp_row WHERE id = 1")
        self.write({"slept": rows[0][0]})


class Io(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(0.05)
        self.set_header("Content-Type", "text/plain")
        self.write(b"slept")


class Cmd(tornado.web.RequestHandler):
    async def get(self) -> None:
        proc = await asyncio.create_subprocess_exec("true")
        self.write(json.dumps({"returncode": await asyncio.wait_for(proc.wait(), 5)}))


def main() -> None:
    port = int(sys.argv[1])
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    sockets = tornado.netutil.bind_sockets(port, "127.0.0.1", backlog=2048)
    if processes > 1:
        tornado.process.fork_processes(processes, max_restarts=0)
    app = tornado.web.Application(
        [
            (r"/hello", Hello),
            (r"/row", OneRow),
            (r"/list", Rows),
            (r"/query", Query),
            (r"/io", Io),
            (r"/cmd", Cmd),
        ]
    )

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        await asyncio.Event().wait()

    # The same event loop as hybrid's workers get with their default ``--loop auto``:
    # uvloop when it is installed (BENCH_LOOP=asyncio to compare with asyncio's own).
    loop_factory = None
    if os.environ.get("BENCH_LOOP", "auto") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()
