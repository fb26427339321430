"""``/native/pool``: a native query, and what this worker's pool looks like."""

from __future__ import annotations

import os
from typing import Any

import tornado.web


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
                "native": stats["native"],
                "thread": stats["thread"],
            }
        )


routes: list[Any] = [(r"/native/pool", PoolInfo)]
