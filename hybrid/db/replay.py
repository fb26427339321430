"""Run Django's own sync queryset code on the loop, its statements on aiomysql ("replay").

Django's read methods (``get``, ``count``, ``aggregate``, ``exists``, ``in_bulk``,
iteration with its ``ModelIterable`` / ``ValuesIterable`` / ``ValuesListIterable``
hydration, ``refresh_from_db``...) and ``update()`` touch the database only through
``SQLCompiler.execute_sql``. :func:`replay` calls such a sync function on the loop thread
with ``execute_sql`` answered from a list of recorded results: the first statement it has
no result for is compiled (Django's ``as_sql()``), stops the call (:class:`NeedStatement`,
a ``BaseException`` that Django's ``except Exception`` blocks let through), and runs on
aiomysql; then the call starts again from the top with one more recorded result, until it
returns. A one-query method compiles twice and runs its query once; the rows are hydrated
by Django itself (``results_iter``, converters, ``Model.from_db``, select_related
populators), so they are what the sync ORM gives.

Only functions whose Python side effects repeat harmlessly may be replayed: reads, and
``update()``. Saving and deleting model instances (signals, ``auto_now``) are ported
natively in :mod:`hybrid.db.native` instead. Anything that reaches the sync connection
some other way raises Django's ``SynchronousOnlyOperation`` on the loop: before any
statement ran, that becomes :class:`Unsupported` and the caller falls back to the thread
path.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

from hybrid.db.execute import FakeCursor, Result, run_statement

__all__ = ["NeedStatement", "Unsupported", "install_compiler_hook", "replay"]

R = TypeVar("R")

#: More statements than this in one call: not a simple queryset method; use the thread path.
MAX_STATEMENTS = 16


class Unsupported(Exception):
    """This call cannot run natively; the caller falls back to Django's thread path."""


class NeedStatement(BaseException):
    """Raised from ``execute_sql`` for the first statement without a recorded result."""

    def __init__(self, sql: str, params: tuple[Any, ...]) -> None:
        super().__init__(sql)
        self.sql = sql
        self.params = params


class _Replay:
    def __init__(self, alias: str, recorded: list[Result]) -> None:
        self.alias = alias
        self.recorded = recorded
        self.index = 0

    def execute_sql(self, compiler: Any, result_type: Any) -> Any:
        from django.core.exceptions import EmptyResultSet
        from django.db.models.sql.constants import (
            CURSOR,
            MULTI,
            NO_RESULTS,
            ROW_COUNT,
            SINGLE,
        )

        if compiler.using != self.alias:
            raise Unsupported(f"a query on another database ({compiler.using!r})")
        result_type = result_type or NO_RESULTS
        try:
            sql, params = compiler.as_sql()
            if not sql:
                raise EmptyResultSet
        except EmptyResultSet:
            return iter([]) if result_type == MULTI else None
        index = self.index
        self.index += 1
        if index >= len(self.recorded):
            raise NeedStatement(sql, tuple(params))
        result = self.recorded[index]
        if result.sql != sql:
            raise Unsupported("the query changed between two compilations")
        if result_type == MULTI:
            rows = result.rows
            if compiler.has_extra_select:
                rows = [row[: compiler.col_count] for row in rows]
            return [rows] if rows else []
        if result_type == SINGLE:
            return result.rows[0][: compiler.col_count] if result.rows else None
        if result_type == ROW_COUNT:
            return result.rowcount
        if result_type == CURSOR:
            return FakeCursor(result)
        return None


_current: contextvars.ContextVar[_Replay | None] = contextvars.ContextVar(
    "hybrid_db_replay", default=None
)
_original_execute_sql: Callable[..., Any] | None = None


def install_compiler_hook() -> None:
    """Route ``SQLCompiler.execute_sql`` through :func:`replay` while one is running
    (elsewhere it costs one context variable lookup). Idempotent."""
    global _original_execute_sql
    from django.db.models.sql.compiler import SQLCompiler

    if _original_execute_sql is not None:
        return
    original = SQLCompiler.execute_sql
    _original_execute_sql = original

    def execute_sql(self: Any, result_type: Any = "multi", *args: Any, **kwargs: Any) -> Any:
        state = _current.get()
        if state is None:
            return original(self, result_type, *args, **kwargs)
        return state.execute_sql(self, result_type)

    execute_sql.__wrapped__ = original  # type: ignore[attr-defined]
    SQLCompiler.execute_sql = execute_sql


def uninstall_compiler_hook() -> None:
    global _original_execute_sql
    from django.db.models.sql.compiler import SQLCompiler

    if _original_execute_sql is not None:
        SQLCompiler.execute_sql = _original_execute_sql
        _original_execute_sql = None


async def replay(alias: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Call sync ``fn(*args, **kwargs)`` on the loop with its statements run natively."""
    from django.core.exceptions import SynchronousOnlyOperation

    recorded: list[Result] = []
    while True:
        state = _Replay(alias, recorded)
        token = _current.set(state)
        need: NeedStatement | None = None
        try:
            return fn(*args, **kwargs)
        except NeedStatement as exc:
            need = exc
        except SynchronousOnlyOperation as exc:
            if not recorded or all(_is_read(r.sql) for r in recorded):
                raise Unsupported(f"it reaches the sync connection ({exc})") from None
            raise
        finally:
            _current.reset(token)
        if len(recorded) >= MAX_STATEMENTS:
            raise Unsupported(f"more than {MAX_STATEMENTS} statements")
        recorded.append(await run_statement(alias, need.sql, need.params))


def _is_read(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT"
