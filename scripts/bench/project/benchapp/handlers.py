"""The benchmark endpoints as hybrid ``DjangoHandler``s (full default middleware)."""

import asyncio
import random

from benchapp.models import QUERY_SECONDS, ROWS, Row, slow_query
from hybrid import DjangoHandler, run_command


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


routes = [
    (r"/h/hello", Hello),
    (r"/h/row", OneRow),
    (r"/h/list", Rows),
    (r"/h/query", Query),
    (r"/h/io", Io),
    (r"/h/cmd", Cmd),
]
