"""Which async ORM calls run natively, and the patches that send them there.

:func:`install` replaces Django's async QuerySet and Model methods (``aget``...,
``__aiter__``, ``asave``...) once per process with versions that run natively when
:func:`hybrid.db.aliases.native_alias_reason` finds nothing against it:

* hybrid.db is installed and this loop was :func:`~hybrid.db.pool.activate`\\ d (a worker's
  loop: the worker does both at boot when ``native_mysql`` is on);
* the queryset's database uses Django's MySQL backend and its ``DATABASES`` entry does not
  say ``"HYBRID_NATIVE": False``;
* no sync connection that this context's thread-sensitive code would use (the request's
  database thread; outside a request, any thread of the process) is inside
  ``transaction.atomic()`` or has autocommit off: a second connection could not see that
  transaction's rows (docs/design.md, "A second connection cannot see an open
  transaction"), so such calls keep Django's thread path on that
  very connection, and Django's ``TestCase`` behaves as with plain Django.

Otherwise, or when the call needs something the native path does not do
(:class:`~hybrid.db.replay.Unsupported`), Django's original method runs (the thread path),
logged once per method and reason at debug level on ``hybrid.general``. Inside
:class:`hybrid.db.atomic` there is no fallback: such a call raises
``TransactionManagementError``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from hybrid._compat import django as dj
from hybrid.db import native, reads
from hybrid.db.aliases import installed, mark_installed, native_alias_reason, track_connection
from hybrid.db.pool import prepared_connection, server_info
from hybrid.db.replay import Unsupported, install_compiler_hook, replay, uninstall_compiler_hook
from hybrid.db.transactions import current_transaction
from hybrid.log import gen_log

__all__ = ["install", "stats", "uninstall"]

#: Calls that ran natively (``native``), fell back (``fallback``), both also by method
#: name, and calls that took the thread path from the start (``thread``). Tests read it.
stats: Counter[str] = Counter()

_originals: list[tuple[type[Any], str, Any]] = []
_logged: set[tuple[str, str]] = set()

_READS = {
    "aget": "get",
    "afirst": "first",
    "alast": "last",
    "acount": "count",
    "aexists": "exists",
    "aaggregate": "aggregate",
    "ain_bulk": "in_bulk",
    "acontains": "contains",
    "aearliest": "earliest",
    "alatest": "latest",
}


def _target(alias: str) -> str | None:
    reason = native_alias_reason(alias)
    if reason is None:
        return alias
    if current_transaction(alias) is not None:
        _mixing(alias, reason)
    if installed():
        stats["thread"] += 1
    return None


def _mixing(alias: str, reason: str) -> None:
    from django.db.transaction import TransactionManagementError

    raise TransactionManagementError(
        f"inside hybrid.db.atomic(using={alias!r}) this call would run on the sync "
        f"connection, outside the transaction ({reason}); keep it out of the block, or do "
        "the whole transaction in sync code: transaction.atomic() inside a "
        "hybrid.run_sync() function"
    )


def _fallback(name: str, alias: str, exc: Exception) -> None:
    if current_transaction(alias) is not None:
        _mixing(alias, str(exc))
    stats["fallback"] += 1
    stats[f"fallback:{name}"] += 1
    key = (name, str(exc))
    if key not in _logged:
        _logged.add(key)
        gen_log.debug("native MySQL: %s falls back to the thread path: %s", name, exc)


async def _prepare(alias: str) -> None:
    prepared_connection(alias, await server_info(alias))


def _count(name: str) -> None:
    stats["native"] += 1
    stats[f"native:{name}"] += 1


def _write_db(qs: Any) -> str:
    return dj.write_db(qs)


#: What :func:`_native` returns when the native path did not run (fall back to Django's).
_NOT_RUN = object()


async def _native(name: str, alias: str | None, run: Callable[[str], Any]) -> Any:
    """Run ``run(alias)`` natively on ``alias``; :data:`_NOT_RUN` when the alias is not ours or
    the call is not supported natively (logged once by :func:`_fallback`)."""
    if alias is None:
        return _NOT_RUN
    try:
        await _prepare(alias)
        result = await run(alias)
    except Unsupported as exc:
        _fallback(name, alias, exc)
        return _NOT_RUN
    _count(name)
    return result


def _read_method(name: str, sync_name: str, original: Any) -> Any:
    @functools.wraps(original)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        alias = _target(self.db)
        if name == "aget":
            result = await _native(name, alias, lambda db: reads.get(db, self, args, kwargs))
        else:
            result = await _native(
                name, alias, lambda db: replay(db, getattr(self, sync_name), *args, **kwargs)
            )
        if result is _NOT_RUN:
            result = await original(self, *args, **kwargs)
        return result

    return method


def _write_method(name: str, original: Any, run: Callable[..., Any]) -> Any:
    @functools.wraps(original)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = await _native(
            name, _target(_write_db(self)), lambda _db: run(self, *args, **kwargs)
        )
        if result is _NOT_RUN:
            result = await original(self, *args, **kwargs)
        return result

    return method


def _model_method(name: str, original: Any, run: Callable[..., Any]) -> Any:
    @functools.wraps(original)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        from django.db import router

        if args:  # Django 5.x's deprecated positional arguments: leave them to Django
            return await original(self, *args, **kwargs)
        using = kwargs.get("using")
        if name == "arefresh_from_db":
            from_qs = kwargs.get("from_queryset")
            using = using or (from_qs.db if from_qs is not None else None)
            using = using or router.db_for_read(type(self), instance=self)
        else:
            using = using or router.db_for_write(type(self), instance=self)
        result = await _native(name, _target(using), lambda _db: run(self, **kwargs))
        if result is _NOT_RUN:
            result = await original(self, *args, **kwargs)
        return result

    return method


def _aiter(original: Any) -> Any:
    def __aiter__(self: Any) -> AsyncIterator[Any]:  # noqa: N807
        async def generator() -> AsyncIterator[Any]:
            alias = _target(self.db) if dj.result_cache(self) is None else None
            if alias is not None:
                try:
                    await _prepare(alias)
                    await replay(alias, dj.fetch_all(self))
                except Unsupported as exc:
                    _fallback("__aiter__", alias, exc)
                else:
                    _count("__aiter__")
            cache = dj.result_cache(self)
            if cache is None:
                async for item in original(self):
                    yield item
                return
            for item in cache:
                yield item

        return generator()

    return __aiter__


def _aiterator(original: Any) -> Any:
    @functools.wraps(original)
    async def aiterator(self: Any, chunk_size: int = 2000) -> AsyncIterator[Any]:
        alias = None if dj.prefetch_lookups(self) else _target(self.db)
        items = None
        if alias is not None:
            if chunk_size <= 0:
                raise ValueError("Chunk size must be strictly positive.")
            try:
                await _prepare(alias)
                items = await replay(alias, lambda: list(dj.iterate(self, chunk_size)))
            except Unsupported as exc:
                _fallback("aiterator", alias, exc)
            else:
                _count("aiterator")
        if items is None:
            async for item in original(self, chunk_size=chunk_size):
                yield item
            return
        for item in items:
            yield item

    return aiterator


async def _update(qs: Any, **kwargs: Any) -> int:
    native.check_queryset(qs, "update")
    result: int = await replay(_write_db(qs), qs.update, **kwargs)
    return result


async def _create(qs: Any, **kwargs: Any) -> Any:
    return await native.create(qs, kwargs)


async def _get_or_create(qs: Any, defaults: Any = None, **kwargs: Any) -> Any:
    return await native.get_or_create(qs, defaults, kwargs)


async def _update_or_create(
    qs: Any, defaults: Any = None, create_defaults: Any = None, **kwargs: Any
) -> Any:
    return await native.update_or_create(qs, defaults, create_defaults, kwargs)


async def _asave(obj: Any, **kwargs: Any) -> None:
    await native.save(obj, **kwargs)


async def _adelete(obj: Any, using: str | None = None, keep_parents: bool = False) -> Any:
    return await native.delete_instance(obj, using=using, keep_parents=keep_parents)


async def _arefresh(obj: Any, using: str | None = None, fields: Any = None, **kw: Any) -> None:
    from django.db import router

    alias = using or router.db_for_read(type(obj), instance=obj)
    if kw.get("from_queryset") is not None:
        alias = using or kw["from_queryset"].db
    await replay(alias, obj.refresh_from_db, using=using, fields=fields, **kw)


def install() -> None:
    """Patch Django's async ORM methods (idempotent). Natively only on activated loops."""
    if installed():
        return
    from django.db.backends.signals import connection_created
    from django.db.models import Model, QuerySet

    install_compiler_hook()

    def patch(cls: type[Any], name: str, new: Any) -> None:
        _originals.append((cls, name, dj.replace_method(cls, name, new)))

    for name, sync_name in _READS.items():
        patch(QuerySet, name, _read_method(name, sync_name, getattr(QuerySet, name)))
    patch(QuerySet, "__aiter__", _aiter(QuerySet.__aiter__))
    patch(QuerySet, "aiterator", _aiterator(QuerySet.aiterator))
    writes: dict[str, Callable[..., Any]] = {
        "aupdate": _update,
        "acreate": _create,
        "aget_or_create": _get_or_create,
        "aupdate_or_create": _update_or_create,
        "abulk_create": native.bulk_create,
        "adelete": native.delete_queryset,
    }
    for name, run in writes.items():
        method = _write_method(name, getattr(QuerySet, name), run)
        method.alters_data = True
        patch(QuerySet, name, method)
    models: dict[str, Callable[..., Any]] = {
        "asave": _asave,
        "adelete": _adelete,
        "arefresh_from_db": _arefresh,
    }
    for name, run in models.items():
        method = _model_method(name, getattr(Model, name), run)
        if name != "arefresh_from_db":
            method.alters_data = True
        patch(Model, name, method)
    connection_created.connect(_track, dispatch_uid="hybrid.db.track")
    _track_existing()
    mark_installed(True)


def uninstall() -> None:
    """Undo :func:`install` (tests)."""
    from django.db.backends.signals import connection_created

    while _originals:
        cls, name, original = _originals.pop()
        dj.replace_method(cls, name, original)
    uninstall_compiler_hook()
    connection_created.disconnect(dispatch_uid="hybrid.db.track")
    mark_installed(False)


def _track(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor != "mysql":
        return
    track_connection(connection)
    if not connection.__dict__.get("_hybrid_guard"):
        connection.execute_wrappers.append(_guard)
        connection.__dict__["_hybrid_guard"] = True


def _track_existing() -> None:
    from django.db import connections

    for wrapper in connections.all(initialized_only=True):
        if wrapper.connection is not None:
            _track(None, wrapper)


def _guard(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    alias = context["connection"].alias
    if current_transaction(alias) is not None:
        _mixing(alias, "a sync-ORM statement")
    return execute(sql, params, many, context)
