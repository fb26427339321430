"""aiomysql pools: one per worker loop and database alias, created lazily after fork.

A loop's pools are a :class:`NativePools` that :func:`activate` installs for it (a worker's
loop at boot, sized from ``Config.db_thread_count`` by :func:`hybrid.db.setup`; a test's
loop), never in the master: nothing here runs at import. A pool is made on the loop's
first native query for its alias.
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
an hour), so an idle connection is replaced before the server drops it.
:func:`close_native_pools` closes the running loop's pools; a stopping worker calls it
after its last request.

The pool (:class:`Pool`) is hybrid's own, over aiomysql connections: at most ``maxsize``
connections (``--db-threads``), none before the first query; the last one released is the
next one handed out, so a quiet worker keeps few connections busy and the others age out;
one the server closed (restart, ``wait_timeout``) or older than ``pool_recycle`` is dropped
when it would be handed out, never given to a query. A waiting query gets a released
connection directly, first come first served (the line is :class:`hybrid.slots.Slots`: a
query cancelled just as it was handed a connection passes it on). aiomysql's own pool takes
a lock and starts a task for every release; this one costs a list operation when a
connection is free.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import threading
from dataclasses import dataclass, field
from typing import Any

from hybrid._compat import aiomysql as aiomysql_compat
from hybrid._compat import django as dj
from hybrid.db.connection import connect
from hybrid.db.outage import in_outage, record_reachable
from hybrid.db.transactions import current_transaction
from hybrid.lanes import run_sync
from hybrid.log import gen_log
from hybrid.slots import PerLoop, Slots

__all__ = [
    "DEFAULT_POOL_SIZE",
    "NativePools",
    "Pool",
    "ServerInfo",
    "activate",
    "close_native_pools",
    "is_active",
    "native_pool",
    "pools",
    "prepared_connection",
    "server_info",
]

#: Connections per pool when :func:`activate` is given no size (tests, scripts).
DEFAULT_POOL_SIZE = 8

#: Per loop and alias, the compile-only ``DatabaseWrapper`` (:func:`prepared_connection`).
_wrappers: PerLoop[dict[str, Any]] = PerLoop(dict)
#: What each alias's server said, once per process (a cache, not configuration).
_infos: dict[str, ServerInfo] = {}
_infos_lock = threading.Lock()

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


def is_active() -> bool:
    """True on a running loop that :func:`activate` marked (and :func:`close_native_pools`
    did not close)."""
    return _native.find() is not None


def _probe(alias: str) -> ServerInfo:
    """On a database thread: what compiling needs from the server, asked once."""
    import os

    from django.db import connections
    from django.utils.functional import cached_property

    conn = connections[alias]
    server_data = dj.mysql_server_data(conn)
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
    compiling never opens the sync connection.

    On a loop thread Django keeps one ``DatabaseWrapper`` per context, so every request
    task would build its own (~30 us, for a wrapper that only compiles). A context that has
    none gets the loop's shared one instead: it never connects (its ``cursor()`` raises
    ``SynchronousOnlyOperation`` on the loop, as any would), and what it answers while
    compiling is the same for every task (``get_autocommit`` reads the task's own
    :class:`hybrid.db.atomic` block)."""
    from django.db import connections

    conn = dj.thread_connection(alias)
    if conn is None:
        shared = _wrappers.get()
        conn = shared.get(alias)
        if conn is None:
            conn = shared[alias] = connections.create_connection(alias)
        connections[alias] = conn
    if conn.__dict__.get("_hybrid_native_info") is not info:
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
        gen_log.debug("native MySQL: connection options aiomysql does not take: %s", dropped)
    kwargs = {k: v for k, v in params.items() if k in accepted}
    kwargs["conv"] = {**pymysql.converters.conversions, FIELD_TYPE.TIME: typecast_time}
    kwargs["client_flag"] = int(kwargs.get("client_flag", 0)) | CLIENT.FOUND_ROWS
    kwargs.setdefault("charset", "utf8mb4")
    kwargs["autocommit"] = True
    level = _ISOLATION.get((info.isolation_level or "").lower())
    if level and not kwargs.get("init_command"):
        kwargs["init_command"] = f"SET SESSION TRANSACTION ISOLATION LEVEL {level}"
    return kwargs


class Pool:
    """At most ``maxsize`` aiomysql connections of one loop, made on demand (module docs).

    ``await acquire()`` a connection, ``release()`` it after (also when it failed: a closed
    one is forgotten); :meth:`close`, then ``await`` :meth:`wait_closed` for the busy ones.
    Connection errors are the driver's (``pymysql.err.OperationalError``), for the caller
    to translate.

    A query holds one of ``maxsize`` slots while it holds a connection; holding one, it
    takes the last connection released (or opens one when none is free). Connections are
    opened only when none is free, so there are never more than there are slots.
    """

    def __init__(self, maxsize: int, recycle: float, connect_kwargs: dict[str, Any]) -> None:
        self.maxsize = max(1, maxsize)
        self._recycle = recycle
        self._connect_kwargs = connect_kwargs
        self._free: collections.deque[Any] = collections.deque()
        self._used: set[Any] = set()
        #: Connections open or being opened, busy or free.
        self._size = 0
        self._slots = Slots(self.maxsize)
        self._closing = False
        self._all_closed: asyncio.Event | None = None
        #: The database alias (set by :class:`NativePools`), told when a connection succeeds.
        self.alias: str | None = None

    @property
    def size(self) -> int:
        return self._size

    @property
    def freesize(self) -> int:
        return len(self._free)

    @property
    def closing(self) -> bool:
        return self._closing

    def _usable(self, conn: Any, now: float) -> bool:
        reader = aiomysql_compat.packet_reader(conn)
        return not (
            conn.closed
            or reader.at_eof()
            or reader.exception() is not None
            or getattr(reader, "eof_received", False)  # aiomysql's reader: MySQL 8 timeouts
            or (self._recycle >= 0 and now - conn.last_usage > self._recycle)
        )

    async def acquire(self) -> Any:
        """A connection: a free one, a new one while fewer than ``maxsize`` exist, else the
        next one released (waiting in line)."""
        if self._closing:
            raise _closed_error()
        await self._slots.acquire()
        try:
            now = asyncio.get_running_loop().time()
            while self._free:
                conn = self._free.pop()
                if self._usable(conn, now):
                    self._used.add(conn)
                    return conn
                self._forget(conn)
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    async def _connect(self) -> Any:
        self._size += 1
        try:
            conn = await connect(**self._connect_kwargs)
        except BaseException:
            self._size -= 1
            raise
        if self._closing:
            conn.close()
            self._size -= 1
            self._check_closed()
            raise _closed_error()
        if self.alias is not None and in_outage():
            record_reachable(self.alias)
        self._used.add(conn)
        return conn

    def release(self, conn: Any) -> None:
        """Give ``conn`` back; a closed one, one inside a transaction (it was interrupted)
        or any after :meth:`close` is closed and forgotten."""
        if conn not in self._used:
            return  # terminated, or released twice
        self._used.discard(conn)
        if conn.closed or self._closing or conn.get_transaction_status():
            self._forget(conn)
        else:
            self._free.append(conn)
        self._slots.release()

    def _forget(self, conn: Any) -> None:
        conn.close()
        self._size -= 1
        self._check_closed()

    def _check_closed(self) -> None:
        if self._closing and self._size == 0 and self._all_closed is not None:
            self._all_closed.set()

    def close(self) -> None:
        """Close the free connections now, the busy ones when released; waiters fail."""
        self._closing = True
        while self._free:
            self._forget(self._free.pop())
        self._slots.close(_closed_error)

    def terminate(self) -> None:
        """:meth:`close`, cutting the busy connections too."""
        self.close()
        for conn in list(self._used):
            self._used.discard(conn)
            self._forget(conn)
            self._slots.release()

    async def wait_closed(self) -> None:
        """Wait until every connection is closed (after :meth:`close`)."""
        if not self._closing:
            raise RuntimeError("wait_closed() before close()")
        if self._size == 0:
            return
        if self._all_closed is None:
            self._all_closed = asyncio.Event()
        await self._all_closed.wait()


def _closed_error() -> Exception:
    """The driver's ``InterfaceError`` (Django's, once translated), as for a closed
    connection."""
    import pymysql

    error: Exception = pymysql.err.InterfaceError(0, "the native MySQL pool is closed")
    return error


class NativePools:
    """One loop's pools, one per alias, each of at most ``size`` connections.

    :func:`activate` installs it for the loop; a loop without one keeps every query on
    the database threads.
    """

    def __init__(self, size: int = DEFAULT_POOL_SIZE) -> None:
        self.size = max(1, size)
        self.by_alias: dict[str, Pool] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, alias: str) -> Pool:
        """The pool for ``alias``, made on first use (asking the server once)."""
        pool = self.by_alias.get(alias)
        if pool is not None and not pool.closing:
            return pool
        async with self._locks.setdefault(alias, asyncio.Lock()):
            pool = self.by_alias.get(alias)
            if pool is not None and not pool.closing:
                return pool
            info = await server_info(alias)
            pool = Pool(self.size, info.pool_recycle, _connect_kwargs(info))
            pool.alias = alias
            self.by_alias[alias] = pool
            gen_log.debug(
                "native MySQL: pool for %r on this worker (max %d, recycle %ds)",
                alias,
                self.size,
                info.pool_recycle,
            )
            return pool

    async def aclose(self, timeout: float) -> None:
        """Close every pool: idle connections at once, busy ones when released (up to
        ``timeout`` seconds, then they are cut)."""
        for pool in list(self.by_alias.values()):
            pool.close()
            try:
                await asyncio.wait_for(pool.wait_closed(), timeout)
            except TimeoutError:
                pool.terminate()
                await pool.wait_closed()
        self.by_alias.clear()


#: Each activated loop's pools (no factory: a loop is native only once activated).
_native: PerLoop[NativePools] = PerLoop()


def activate(size: int = DEFAULT_POOL_SIZE) -> NativePools:
    """Let native queries on the running loop use pools of at most ``size`` connections
    per alias (:func:`hybrid.db.setup` passes ``Config.db_thread_count``). A loop already
    active keeps its pools; new ones take the new size."""
    pools = _native.find()
    if pools is None:
        return _native.install(NativePools(size))
    pools.size = max(1, size)
    return pools


async def native_pool(alias: str) -> Pool:
    """The running loop's pool for ``alias``, made on first use (the loop must be active)."""
    pools = _native.find()
    if pools is None:
        raise RuntimeError("this event loop has no native pools (hybrid.db.activate())")
    return await pools.get(alias)


def pools() -> dict[str, Pool]:
    """The running loop's pools by alias (tests look at them)."""
    native = _native.find()
    return dict(native.by_alias) if native is not None else {}


async def close_native_pools(timeout: float = 5.0) -> None:
    """Close the running loop's pools: idle connections at once, busy ones when released
    (up to ``timeout`` seconds, then they are cut). The loop is no longer native after."""
    native = _native.pop()
    _wrappers.pop()
    if native is not None:
        await native.aclose(timeout)
