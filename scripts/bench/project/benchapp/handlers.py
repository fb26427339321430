"""The benchmark endpoints as hybrid ``DjangoHandler``s (full default middleware).

``/h/lag/*`` and ``/h/ping`` are plain Tornado handlers (no Django, no database thread) for
the harness's extra measurements: the worker's event-loop lag while ``/h/lag/sleep`` or
``/h/lag/true`` keep commands in flight, and a cheap first request on each of the 10,000
idle keep-alive connections.
"""

import asyncio
import random
import time

import tornado.web

from benchapp.models import QUERY_SECONDS, ROWS, Row, slow_query
from hybrid import DjangoHandler, run_command
from hybrid.process import running_commands

LAG_PROBE_SECONDS = 0.005


class Hello(DjangoHandler):
    async def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write(b"Hello, World!")


class OneRow(DjangoHandler):
    async def get(self):
        self.write((await Row.objects.aget(pk=random.randint(1, ROWS))).as_dict())


class Rows(DjangoHandler):
    async def get(self):
        self.write({"rows": [r.as_dict() async for r in Row.objects.order_by("pk")[:20]]})


class Query(DjangoHandler):
    async def get(self):
        self.write({"slept": await slow_query().aget()})


class Io(DjangoHandler):
    async def get(self):
        await asyncio.sleep(QUERY_SECONDS)
        self.set_header("Content-Type", "text/plain")
        self.write(b"slept")


class Cmd(DjangoHandler):
    async def get(self):
        result = await run_command(["true"], timeout=5)
        self.write({"returncode": result.returncode})


class Ping(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write(b"pong")


class SleepCommand(tornado.web.RequestHandler):
    async def get(self):
        result = await run_command(["sleep", self.get_argument("seconds", "0.5")], timeout=30)
        self.write({"returncode": result.returncode})


class TrueCommand(tornado.web.RequestHandler):
    async def get(self):
        result = await run_command(["true"], timeout=30)
        self.write({"returncode": result.returncode})


def quantile(values, fraction):
    return values[min(len(values) - 1, int(len(values) * fraction))] if values else None


class LagProbe(tornado.web.RequestHandler):
    """``GET /h/lag/probe?seconds=S``: for S seconds, how late this worker's loop wakes from
    5 ms sleeps (ms), and how many commands (``hybrid.run_command``) were running."""

    async def get(self):
        seconds = float(self.get_argument("seconds", "3"))
        lags, running = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            lags.append(max(0.0, time.monotonic() - before - LAG_PROBE_SECONDS) * 1000)
            running.append(len(running_commands()))
        lags.sort()
        self.write(
            {
                "samples": len(lags),
                "p50_ms": quantile(lags, 0.5),
                "p99_ms": quantile(lags, 0.99),
                "max_ms": lags[-1] if lags else None,
                "commands_running_mean": sum(running) / len(running) if running else 0,
                "commands_running_max": max(running, default=0),
            }
        )


routes = [
    (r"/h/hello", Hello),
    (r"/h/row", OneRow),
    (r"/h/list", Rows),
    (r"/h/query", Query),
    (r"/h/io", Io),
    (r"/h/cmd", Cmd),
    (r"/h/ping", Ping),
    (r"/h/lag/sleep", SleepCommand),
    (r"/h/lag/true", TrueCommand),
    (r"/h/lag/probe", LagProbe),
]
