"""aiomysql pools: one per worker loop and database alias, created lazily after fork.

A pool is made on the first native query of a loop that :func:`activate` marked (a
worker's loop at boot, or a test's loop), never in the master: nothing here runs at import.
Before its first pool for an alias, the process asks the server once, on a database
thread (:func:`hybrid.run_sync`), what Django's MySQL backend would ask it while compiling
(``connection.mysql_server_data``: version, MariaDB or not, ``sql_mode``...; the
backend's feature flags) and ``@@wait_timeout``. Compiling on the loop then never touches
the sync connection: :func:`prepared_connection` copies those answers into the loop
thread's ``DatabaseWrapper``.

Connections are made as Django's backend makes them (``get_connection_params()``):
utf8mb4, ``client_flag=FOUND_ROWS`` (Django counts matched rows, not changed ones),
Django's converters (``TIME`` columns as ``datetime.time``), the transaction isolation
level Django sets (``READ COMMITTED`` unless ``OPTIONS["isolation_level"]`` says
otherwise), autocommit on. ``pool_recycle`` is half the server's ``wait_timeout`` (at most
an hour), so an idle connection is replaced before the server drops it. :func:`close_pools`
closes the running loop's pools; a stopping worker calls it after its last request.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ServerInfo",
    "activate",
    "close_pools",
    "get_pool",
    "is_active",
    "pool_size",
    "prepared_connection",
    "server_info",
    "set_pool_size",
]

log = logging.getLogger("hybrid.general")

#: Loops whose native queries may open pools (a worker's loop; a test's loop).
_active: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_infos: dict[str, ServerInfo] = {}
_infos_lock = threading.Lock()
_pool_size = 8

#: The isolation levels Django's backend accepts, as SQL.
_ISOLATION = {
    "read uncommitted": "READ UNCOMMITTED",
    "read committed": "READ COMMITTED",
    "repeatable read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


@dataclass
class ServerInfo:
    """What the server told a sync connection once per process, per alias."""

    server_data: dict[str, Any]
    features: dict[str, Any]
    wait_timeout: int
    params: dict[str, Any]
    isolation_level: str | None
    pid: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pool_recycle(self) -> int:
        """Seconds an idle pooled connection is kept: half ``wait_timeout``, 1 to 3600."""
        return max(1, min(3600, self.wait_timeout // 2))


def set_pool_size(size: int) -> None:
    """Connections per pool (per worker and alias); the worker passes ``--db-threads``."""
    global _pool_size
    _pool_size = max(1, size)


def pool_size() -> int:
    return _pool_size


def activate(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Let native queries on ``loop`` (default: the running one) use pools."""
    _active.add(loop or asyncio.get_running_loop())


def is_active() -> bool:
    """True on a running loop that :func:`activate` marked (and :func:`close_pools` did not
    close)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return loop in _active


def _probe(alias: str) -> ServerInfo:
    """On a database thread: what compiling needs from the server, asked once."""
    import os

    from django.db import connections
    from django.utils.functional import cached_property

    conn = connections[alias]
    server_data = dict(conn.mysql_server_data)
    features: dict[str, Any] = {}
    for name in dir(type(conn.features)):
        if name.startswith("django_test"):
            continue
        if isinstance(inspect.getattr_static(type(conn.features), name, None), cached_property):
            try:
                features[name] = getattr(conn.features, name)
            except Exception:  # a flag that cannot be computed stays lazy
                continue
    with conn.cursor() as cursor:
        cursor.execute("SELECT @@wait_timeout")
        wait_timeout = int(cursor.fetchone()[0])
    params = dict(conn.get_connection_params())
    return ServerInfo(
        server_data=server_data,
        features=features,
        wait_timeout=wait_timeout,
        params=params,
        isolation_level=conn.isolation_level,
        pid=os.getpid(),
    )


async def server_info(alias: str) -> ServerInfo:
    """The alias's :class:`ServerInfo`, asked on a database thread the first time."""
    import os

    info = _infos.get(alias)
    if info is not None and info.pid == os.getpid():
        return info
    from hybrid.bridge.lanes import run_sync

    info = await run_sync(_probe, alias)
    with _infos_lock:
        _infos[alias] = info
    return info


def forget_server_info(alias: str | None = None) -> None:
    """Ask the server again next time (tests; a server upgraded under a running worker)."""
    with _infos_lock:
        if alias is None:
            _infos.clear()
        else:
            _infos.pop(alias, None)


def prepared_connection(alias: str, info: ServerInfo) -> Any:
    """The loop thread's ``connections[alias]``, with the server's answers filled in so that
    compiling never opens the sync connection."""
    from django.db import connections

    conn = connections[alias]
    if conn.__dict__.get("_hybrid_native_info") is not info:
        from hybrid.db.execute import current_transaction

        # Compiling select_for_update() asks whether a transaction is open: the context's
        # hybrid.db.atomic() block, not this never-connected wrapper.
        conn.__dict__["get_autocommit"] = lambda: current_transaction(alias) is None
        conn.__dict__["mysql_server_data"] = info.server_data
        conn.features.__dict__.update(info.features)
        conn.__dict__["_hybrid_native_info"] = info
    return conn


def _connect_kwargs(info: ServerInfo) -> dict[str, Any]:
    """aiomysql's ``connect()`` arguments from Django's ``get_connection_params()``."""
    import aiomysql  # type: ignore[import-untyped]
    import pymysql  # type: ignore[import-untyped]
    from django.db.backends.utils import typecast_time
    from pymysql.constants import CLIENT, FIELD_TYPE  # type: ignore[import-untyped]

    params = dict(info.params)
    params.pop("conv", None)
    if "database" in params:
        params["db"] = params.pop("database")
    if "passwd" in params:
        params["password"] = params.pop("passwd")
    accepted = set(inspect.signature(aiomysql.connect).parameters) - {"loop", "echo"}
    dropped = sorted(set(params) - accepted)
    if dropped:
        log.debug("native MySQL: connection options aiomysql does not take: %s", dropped)
    kwargs = {k: v for k, v in params.items() if k in accepted}
    kwargs["conv"] = {**pymysql.converters.conversions, FIELD_TYPE.TIME: typecast_time}
    kwargs["client_flag"] = int(kwargs.get("client_flag", 0)) | CLIENT.FOUND_ROWS
    kwargs.setdefault("charset", "utf8mb4")
    kwargs["autocommit"] = True
    level = _ISOLATION.get((info.isolation_level or "").lower())
    if level and not kwargs.get("init_command"):
        kwargs["init_command"] = f"SET SESSION TRANSACTION ISOLATION LEVEL {level}"
    return kwargs


async def get_pool(alias: str) -> Any:
    """The running loop's aiomysql pool for ``alias``, made on first use."""
    loop = asyncio.get_running_loop()
    pools = _pools.setdefault(loop, {})
    pool = pools.get(alias)
    if pool is not None and not pool._closing:
        return pool
    lock = _locks.setdefault(loop, {}).setdefault(alias, asyncio.Lock())
    async with lock:
        pool = pools.get(alias)
        if pool is not None and not pool._closing:
            return pool
        import aiomysql

        info = await server_info(alias)
        pool = await aiomysql.create_pool(
            minsize=0, maxsize=_pool_size, pool_recycle=info.pool_recycle, **_connect_kwargs(info)
        )
        pools[alias] = pool
        log.debug(
            "native MySQL: pool for %r on this worker (max %d, recycle %ds)",
            alias,
            _pool_size,
            info.pool_recycle,
        )
        return pool


def pools() -> dict[str, Any]:
    """The running loop's pools by alias (tests look at them)."""
    return dict(_pools.get(asyncio.get_running_loop(), {}))


async def close_pools(timeout: float = 5.0) -> None:
    """Close the running loop's pools: idle connections at once, busy ones when released
    (up to ``timeout`` seconds, then they are cut). The loop is no longer native after."""
    loop = asyncio.get_running_loop()
    _active.discard(loop)
    for pool in list(_pools.pop(loop, {}).values()):
        pool.close()
        try:
            await asyncio.wait_for(pool.wait_closed(), timeout)
        except TimeoutError:
            pool.terminate()
            await pool.wait_closed()
    _locks.pop(loop, None)
