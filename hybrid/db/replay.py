"""Run Django's own sync queryset code on the loop, its statements on aiomysql ("replay").

Django's read methods (``get``, ``count``, ``aggregate``, ``exists``, ``in_bulk``,
iteration with its ``ModelIterable`` / ``ValuesIterable`` / ``ValuesListIterable``
hydration, ``refresh_from_db``...) and ``update()`` touch the database only through
``SQLCompiler.execute_sql``. :func:`replay` calls such a sync function on the loop thread
with ``execute_sql`` answered from a list of recorded results: the first statement it has
no result for is compiled (Django's ``as_sql()``), stops the call (:class:`NeedStatement`,
a ``BaseException`` that Django's ``except Exception`` blocks let through), and runs on
aiomysql; then the call starts again from the top with one more recorded result, until it
returns. The rows are hydrated by Django itself (``results_iter``, converters,
``Model.from_db``, select_related populators), so they are what the sync ORM gives.

**Each statement is compiled once.** Compiling is much of the CPU a query costs on the
loop. A compiler keeps what ``as_sql()`` worked out on itself (``select``,
``klass_info``, ``annotation_col_map``, ``col_count``...), and that is all the code after
``execute_sql`` reads. So the compiler of each call is kept, and in the runs after, the
same call (the n-th ``execute_sql`` of the run: a replayed function is deterministic up to
its first unrecorded statement) takes over its state instead of compiling again; the
compiler class, model and result type must match, else the call is :class:`Unsupported`.
Compilers whose ``as_sql()`` runs a query itself (MySQL's multi-table ``UPDATE``), that
leave state on their query (``related_updates``) or that are not Django's are compiled in
every run instead, and their SQL must not change between runs.

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
from dataclasses import dataclass
from typing import Any, TypeVar

from hybrid._compat import django as dj
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


@dataclass
class _Compiled:
    """A compiler's state after ``as_sql()``, for the same call of a later run."""

    compiler: Any
    result_type: Any
    #: Index of its statement in the recorded results; None when it compiled to nothing
    #: (``EmptyResultSet``).
    index: int | None
    #: Whether a later run may take this state instead of compiling (module docs).
    reusable: bool


#: Modules whose compilers keep all a later run needs on themselves (Django's own).
_COMPILER_MODULES = frozenset(
    {"django.db.models.sql.compiler", "django.db.backends.mysql.compiler"}
)


class _Replay:
    def __init__(self, alias: str, recorded: list[Result], compiled: dict[int, _Compiled]) -> None:
        self.alias = alias
        self.recorded = recorded
        self.compiled = compiled
        self.index = 0
        self.calls = 0

    def execute_sql(self, compiler: Any, result_type: Any) -> Any:
        """``compiler.execute_sql(result_type)``: compiled in the first run that reaches
        it, answered from the recorded results in the runs after."""
        from django.core.exceptions import EmptyResultSet
        from django.db.models.sql.constants import NO_RESULTS

        if compiler.using != self.alias:
            raise Unsupported(f"a query on another database ({compiler.using!r})")
        result_type = result_type or NO_RESULTS
        call = self.calls  # the n-th execute_sql of this run, nested ones included
        self.calls += 1
        done = self.compiled.get(call)
        if done is not None:
            if (
                type(done.compiler) is not type(compiler)
                or done.compiler.query.model is not compiler.query.model
                or done.result_type != result_type
            ):
                raise Unsupported("the query changed between two runs")
            if done.reusable:  # take the state as_sql() left, instead of compiling again
                state = dict(done.compiler.__dict__)
                state["query"] = compiler.query
                compiler.__dict__.update(state)
                if done.index is None:
                    return _empty(result_type)
                if done.index != self.index:
                    raise Unsupported("the statements changed order between two runs")
                self.index += 1
                return _answer(compiler, result_type, self.recorded[done.index])
        try:
            sql, params = compiler.as_sql()
            if not sql:
                raise EmptyResultSet
        except EmptyResultSet:
            if done is None:
                self.compiled[call] = _Compiled(
                    compiler, result_type, None, self._reusable(compiler, call)
                )
            return _empty(result_type)
        index = self.index
        self.index += 1
        if done is None:
            self.compiled[call] = _Compiled(
                compiler, result_type, index, self._reusable(compiler, call)
            )
        if index >= len(self.recorded):
            raise NeedStatement(sql, tuple(params))
        result = self.recorded[index]
        if result.sql != sql:
            raise Unsupported("the query changed between two compilations")
        return _answer(compiler, result_type, result)

    def _reusable(self, compiler: Any, call: int) -> bool:
        """Whether a later run may skip compiling this call: a compiler of Django's whose
        ``as_sql()`` ran no query of its own (MySQL's multi-table ``UPDATE`` selects its
        primary keys first) and keeps no state on its query that is read after
        (``related_updates``: multi-table inheritance)."""
        return (
            self.calls == call + 1
            and type(compiler).__module__ in _COMPILER_MODULES
            and not getattr(compiler.query, "related_updates", None)
        )


def _empty(result_type: Any) -> Any:
    from django.db.models.sql.constants import MULTI

    return iter([]) if result_type == MULTI else None


def _answer(compiler: Any, result_type: Any, result: Result) -> Any:
    """What ``execute_sql(result_type)`` returns for ``result``."""
    from django.db.models.sql.constants import CURSOR, MULTI, ROW_COUNT, SINGLE

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

    def execute_sql(self: Any, result_type: Any = "multi", *args: Any, **kwargs: Any) -> Any:
        state = _current.get()
        if state is None:
            return original(self, result_type, *args, **kwargs)
        return state.execute_sql(self, result_type)

    execute_sql.__wrapped__ = original  # type: ignore[attr-defined]
    _original_execute_sql = dj.replace_method(SQLCompiler, "execute_sql", execute_sql)


def uninstall_compiler_hook() -> None:
    global _original_execute_sql
    from django.db.models.sql.compiler import SQLCompiler

    if _original_execute_sql is not None:
        dj.replace_method(SQLCompiler, "execute_sql", _original_execute_sql)
        _original_execute_sql = None


async def replay(alias: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Call sync ``fn(*args, **kwargs)`` on the loop with its statements run natively."""
    from django.core.exceptions import SynchronousOnlyOperation

    recorded: list[Result] = []
    compiled: dict[int, _Compiled] = {}
    while True:
        state = _Replay(alias, recorded, compiled)
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
