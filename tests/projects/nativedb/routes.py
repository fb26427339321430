"""Probe routes of the native MySQL tests (tests/e2e/test_db_pool.py, tests/e2e/test_db_restart.py).

``/native/pool``: a native query, and what this worker's pool looks like.
``/native/probe``: a ``DjangoHandler`` that reads (``acount``) and, with ``?write=1``,
writes (``acreate``) natively; a database error is answered 503 with its class, so that a
test can see exactly what the application would have had to catch. ``/native/count``
catches nothing: an unreachable database is hybrid's 503.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import tornado.web

from hybrid import DjangoHandler

_names = itertools.count()


class PoolInfo(tornado.web.RequestHandler):
    async def get(self) -> None:
        from django.contrib.auth.models import User

        from hybrid.db import pool, stats

        count = await User.objects.acount()
        pools = pool.pools()
        self.write(
            {
                "pid": os.getpid(),
                "count": count,
                "pools": sorted(pools),
                "recycle": {alias: p._recycle for alias, p in pools.items()},
                "maxsize": {alias: p.maxsize for alias, p in pools.items()},
                "native": stats["native"],
                "thread": stats["thread"],
            }
        )


class Probe(DjangoHandler):
    async def get(self) -> None:
        from django.contrib.auth.models import Group, User

        from hybrid.db import stats

        try:
            count = await User.objects.acount()
            if self.get_argument("write", ""):
                await Group.objects.acreate(name=f"probe-{os.getpid()}-{next(_names)}")
        except Exception as exc:
            self.set_status(503)
            self.write(
                {
                    "pid": os.getpid(),
                    "error": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "message": str(exc),
                }
            )
            return
        self.write(
            {
                "pid": os.getpid(),
                "count": count,
                "native": stats["native"],
                "thread": stats["thread"],
            }
        )


class Count(DjangoHandler):
    """Counts users natively and lets a database error through to hybrid's handling."""

    async def get(self) -> None:
        from django.contrib.auth.models import User

        self.write({"pid": os.getpid(), "count": await User.objects.acount()})


routes: list[Any] = [
    (r"/native/pool", PoolInfo),
    (r"/native/probe", Probe),
    (r"/native/count", Count),
]
