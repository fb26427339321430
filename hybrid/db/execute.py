"""One compiled statement on aiomysql, and the async transaction that may hold it.

:func:`run_statement` runs SQL that Django's compiler produced, on the connection of the
current :func:`atomic` block or on a pooled autocommit connection, and returns a
:class:`Result`. Driver errors become Django's (``django.db.IntegrityError``...), exactly
as Django's ``DatabaseErrorWrapper`` and MySQL ``CursorWrapper`` turn them. A read that
finds its pooled connection dead (the server restarted) is retried once on a new one;
a write never is, as Django never retries one.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from hybrid._compat.django import integrity_error_codes
from hybrid.db.aliases import native_alias_reason
from hybrid.db.pool import native_pool
from hybrid.db.transactions import (
    Transaction,
    current_transaction,
    enter_transaction,
    leave_transaction,
)
from hybrid.lanes import current_lane, lane_context, run_sync

__all__ = ["FakeCursor", "Result", "atomic", "run_statement"]

#: MySQL client errors meaning "this connection is gone": retry a read on another one.
_DISCONNECTED = {2006, 2013, 2014, 2045, 2055}

_ERROR_NAMES = (
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
    "DatabaseError",
    "InterfaceError",
    "Error",
)


@dataclass
class Result:
    """What one statement gave: its rows (if it returns any), row count and last id."""

    sql: str
    params: tuple[Any, ...]
    rows: list[tuple[Any, ...]]
    rowcount: int
    lastrowid: int | None
    description: Any = None


class FakeCursor:
    """A closed cursor's worth of a :class:`Result`, for Django code that wants a cursor."""

    def __init__(self, result: Result) -> None:
        self._result = result
        self._rows = list(result.rows)
        self.rowcount = result.rowcount
        self.lastrowid = result.lastrowid
        self.description = result.description

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        self._rows = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _driver_classes(exc: BaseException) -> set[str]:
    """Names of the driver's exception classes ``exc`` is an instance of. By name: with
    ``pymysql.install_as_MySQLdb()`` a second copy of ``pymysql.err`` (``MySQLdb.err``)
    exists, with classes of its own."""
    return {
        cls.__name__
        for cls in type(exc).__mro__
        if cls.__module__ in ("pymysql.err", "MySQLdb.err", "MySQLdb._exceptions")
    }


def django_error(exc: BaseException) -> BaseException:
    """The exception Django's sync path raises for a driver exception ``exc``."""
    from django.db import utils

    names = _driver_classes(exc)
    if not names:
        return exc
    if "OperationalError" in names and exc.args and exc.args[0] in integrity_error_codes():
        new: BaseException = utils.IntegrityError(*exc.args)
        new.__cause__ = exc
        return new
    for name in _ERROR_NAMES:
        if name in names:
            new = getattr(utils, name)(*exc.args)
            new.__cause__ = exc
            return new
    return exc


def _disconnected(exc: BaseException) -> bool:
    names = _driver_classes(exc)
    if "InterfaceError" in names:
        return True
    return "OperationalError" in names and bool(exc.args) and exc.args[0] in _DISCONNECTED


def _is_read(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT"


def _escape(conn: Any, value: Any) -> str:
    """One parameter as SQL, as PyMySQL's sync ``Connection.escape`` writes it. aiomysql
    0.3's own ``escape`` calls ``pymysql.converters.escape_bytes_prefixed``, which PyMySQL
    1.1+ turned into a string: ``bytes`` parameters raised ``TypeError`` there."""
    if isinstance(value, (bytes, bytearray)):
        return f"X'{value.hex()}'"
    return str(conn.escape(value))


async def _execute_on(conn: Any, sql: str, params: Sequence[Any] | None) -> Result:
    args = tuple(params) if params is not None else None
    if args is not None:  # interpolated as the driver would (``%%`` included)
        sql_text = sql % tuple(_escape(conn, arg) for arg in args)
    else:
        sql_text = sql
    async with conn.cursor() as cursor:
        await cursor.execute(sql_text)
        rows = list(await cursor.fetchall()) if cursor.description else []
        return Result(sql, args or (), rows, cursor.rowcount, cursor.lastrowid, cursor.description)


async def run_statement(alias: str, sql: str, params: Sequence[Any] | None) -> Result:
    """Run one statement for ``alias``; raises Django's exceptions."""
    tx = current_transaction(alias)
    if tx is not None:
        return await _execute_in(tx, sql, params)
    pool = await _pool(alias)
    for attempt in (0, 1):
        try:
            conn = await pool.acquire()
        except BaseException as exc:
            raise django_error(exc) from None
        try:
            result = await _execute_on(conn, sql, params)
        except BaseException as exc:
            if not isinstance(exc, Exception) or _disconnected(exc):
                conn.close()  # cancelled mid-statement, or dead: never reuse it
            pool.release(conn)
            if (
                attempt == 0
                and isinstance(exc, Exception)
                and _disconnected(exc)
                and (_is_read(sql))
            ):
                continue
            raise django_error(exc) from None
        pool.release(conn)
        return result
    raise AssertionError("unreachable")  # pragma: no cover


async def _pool(alias: str) -> Any:
    try:
        return await native_pool(alias)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        raise django_error(exc) from None


# --- async transactions ---------------------------------------------------------------


async def _execute_in(tx: Transaction, sql: str, params: Sequence[Any] | None = None) -> Result:
    """One statement on the transaction's connection, the context's tasks one at a time."""
    async with tx.lock:
        try:
            return await _execute_on(tx.conn, sql, params)
        except asyncio.CancelledError:
            tx.conn.close()
            raise
        except Exception as exc:
            raise django_error(exc) from None


class atomic:  # noqa: N801  # named like django.db.transaction.atomic
    """``async with hybrid.db.atomic():`` — a transaction on one aiomysql connection.

    The connection is bound to the current context (the task, and tasks it starts, which
    share it one statement at a time); every native ORM call of that context on ``using``
    runs on it. Nested blocks are savepoints. An exception rolls the block back (to its
    savepoint) and propagates; leaving normally commits (releases the savepoint).

    Only native calls can join: a sync-ORM statement in the same context (``run_sync``,
    a signal receiver on a database thread) or an async call that has to fall back to the
    thread path raises ``TransactionManagementError``, because it would run on another
    connection, outside this transaction. Use ``transaction.atomic()`` inside a
    ``hybrid.run_sync`` function for such work instead.

    Where ``using`` cannot run natively (native calls off, not MySQL, not a worker's loop,
    or a sync ``transaction.atomic()`` already open), the block is Django's
    ``transaction.atomic()`` entered on the request's database thread (a lane of its own
    outside a request): the async ORM calls of the block then run on that thread's
    connection, so they are inside the transaction, and so is sync code in ``run_sync``.
    Code written with ``hybrid.db.atomic()`` keeps working when native calls are off.
    """

    def __init__(self, using: str | None = None, savepoint: bool = True) -> None:
        self.using = using
        self.savepoint = savepoint
        #: Per ``async with`` level: a native one's savepoint name and context token (None
        #: when nested), or the sync block of the thread path.
        self._stack: list[tuple[str | None, contextvars.Token[Any] | None] | _ThreadBlock] = []

    async def __aenter__(self) -> atomic:
        from django.db import DEFAULT_DB_ALIAS
        from django.db.transaction import TransactionManagementError

        alias = self.using or DEFAULT_DB_ALIAS
        reason = native_alias_reason(alias)
        if reason:
            if current_transaction(alias) is not None:  # a native block is open: can't mix
                raise TransactionManagementError(
                    f"hybrid.db.atomic(using={alias!r}) cannot run natively here: {reason}; "
                    "use transaction.atomic() inside a hybrid.run_sync() function instead"
                )
            block = _ThreadBlock(alias, self.savepoint)
            await block.enter()
            self._stack.append(block)
            return self
        tx = current_transaction(alias)
        if tx is not None:
            name = None
            if self.savepoint:
                name = f"hybrid_s{next(tx.ids)}"
                await _execute_in(tx, f"SAVEPOINT `{name}`")
            self._stack.append((name, None))
            return self
        pool = await _pool(alias)
        try:
            conn = await pool.acquire()
        except BaseException as exc:
            raise django_error(exc) from None
        try:
            await conn.begin()
        except BaseException as exc:
            conn.close()
            pool.release(conn)
            raise django_error(exc) from None
        self._stack.append((None, enter_transaction(Transaction(alias, pool, conn))))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from django.db import DEFAULT_DB_ALIAS

        level = self._stack.pop()
        if isinstance(level, _ThreadBlock):
            await level.exit(exc_type, exc, tb)
            return
        alias = self.using or DEFAULT_DB_ALIAS
        name, token = level
        tx = current_transaction(alias)
        assert tx is not None
        if token is None:  # nested
            if name is not None:
                verb = "ROLLBACK TO SAVEPOINT" if exc_type else "RELEASE SAVEPOINT"
                await _execute_in(tx, f"{verb} `{name}`")
            return
        leave_transaction(token)
        try:
            if exc_type is None:
                try:
                    await tx.conn.commit()
                except Exception as error:
                    tx.conn.close()
                    raise django_error(error) from None
            else:
                try:
                    await tx.conn.rollback()
                except Exception:
                    tx.conn.close()
        finally:
            tx.pool.release(tx.conn)


class _ThreadBlock:
    """:class:`atomic` where ``alias`` cannot run natively: Django's
    ``transaction.atomic()`` entered on the context's database thread, whose connection
    the block's async ORM calls (their thread path) and ``run_sync`` code then share.
    Outside a request, a lane is leased for the block."""

    def __init__(self, alias: str, savepoint: bool) -> None:
        from django.db import transaction

        self.block = transaction.atomic(using=alias, savepoint=savepoint)
        self.lane_block: Any = None

    async def enter(self) -> None:
        if current_lane() is None:
            self.lane_block = lane_context()
            await self.lane_block.__aenter__()
        try:
            await run_sync(self.block.__enter__)
        except BaseException as error:
            if self.lane_block is not None:
                await self.lane_block.__aexit__(type(error), error, error.__traceback__)
            raise

    async def exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await run_sync(self.block.__exit__, exc_type, exc, tb)
        finally:
            if self.lane_block is not None:
                await self.lane_block.__aexit__(exc_type, exc, tb)
