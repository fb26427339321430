"""Django internals hybrid relies on (see :mod:`hybrid._compat`).

hybrid runs Django's async ORM natively on MySQL by porting ``Model.save()``,
``QuerySet.create()``/``get_or_create()``/``update_or_create()``/``bulk_create()`` and the
fast ``delete()`` line for line (:mod:`hybrid.db.native`), by replaying Django's sync
queryset code with ``SQLCompiler.execute_sql`` answered from aiomysql
(:mod:`hybrid.db.replay`), and by driving Django's request handling from Tornado
(:mod:`hybrid.bridge`). Those ports call the same private helpers Django's own methods
call; each function below is the one place hybrid touches the private name it wraps, and
:func:`library` declares them all for the startup check.

Where Django 5.2 and 6.0 differ (``fetch_returned_insert_*`` became
``fetch_returned_rows``; a save that updates no row raises ``Model.NotUpdated``; values
returned by ``UPDATE``/``INSERT`` are assigned by ``_assign_returned_values``), the
difference is decided here, by :func:`django6`, and nowhere in :mod:`hybrid.db`.

Nothing here imports Django at import time: importing hybrid must not import Django.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hybrid._compat import Internal, Library, has_attrs

__all__ = [
    "MODEL_SAVE_METHODS",
    "add_exception_middleware",
    "QUERYSET_BULK_CREATE_METHODS",
    "QUERYSET_DELETE_METHODS",
    "QUERYSET_WRITE_METHODS",
    "assign_returned_values",
    "bulk_create_atomic",
    "bulk_create_atomic_batches",
    "bulk_create_counts_returned_rows",
    "bulk_create_orders",
    "chain",
    "check_bulk_create_options",
    "close_resources",
    "csrf_origin_verified",
    "deferred_save_allowed",
    "django6",
    "extract_model_params",
    "flatten_middleware_chain",
    "fetch_all",
    "fetch_returned_rows",
    "get_pk_val",
    "handler_import_string",
    "insert_returning_fields",
    "is_pk_set",
    "integrity_error_codes",
    "iterate",
    "library",
    "live_receivers",
    "mark_for_write",
    "mark_logged",
    "lazy_messages_storage",
    "messages_storage",
    "messages_unused",
    "middleware_chain",
    "MESSAGES_ATTRIBUTE",
    "mysql_server_data",
    "non_pk_concrete_field_names",
    "not_updated",
    "prefetch_lookups",
    "prepare_for_bulk_create",
    "prepare_related_fields_for_save",
    "raw_delete",
    "result_cache",
    "replace_method",
    "reverse_one_to_one_field_names",
    "set_handler_import_string",
    "set_result_cache",
    "thread_connection",
    "update_returning",
    "update_returning_fields",
    "validate_force_insert",
    "values_fields",
    "write_db",
]

VERIFIED = ("5.2", "6.0")
REQUIREMENT = "Django>=5.2.18,<6.1"

#: ``Model`` methods under ``save()``: a model overriding any of them keeps Django's path
#: (the port would skip the override).
MODEL_SAVE_METHODS = (
    "save",
    "save_base",
    "_save_table",
    "_save_parents",
    "_do_update",
    "_do_insert",
)
#: ``QuerySet`` methods under the writes :mod:`hybrid.db.native` ports, same reason.
QUERYSET_WRITE_METHODS = ("create", "get_or_create", "update_or_create", "bulk_create", "_insert")
#: What ``bulk_create()`` calls on the queryset: overriding either keeps Django's path.
QUERYSET_BULK_CREATE_METHODS = ("bulk_create", "_insert")
#: What the fast ``delete()`` calls on the queryset: overriding either keeps Django's path.
QUERYSET_DELETE_METHODS = ("delete", "_raw_delete")
#: The request attribute ``MessageMiddleware`` keeps the message storage in: the storage
#: refers back to the request (a cycle to break), and whether it must be stored decides
#: whether the middleware's response hook may run on the loop.
MESSAGES_ATTRIBUTE = "_messages"


@functools.cache
def django6() -> bool:
    """Whether the installed Django is 6.0 or later (the version differences above)."""
    import django

    return tuple(django.VERSION[:2]) >= (6, 0)


# --- QuerySet ----------------------------------------------------------------------------


def write_db(qs: Any) -> str:
    """The alias a write through ``qs`` goes to, as ``QuerySet.db`` decides with
    ``_for_write`` set: hybrid picks the native pool before the write marks the queryset."""
    from django.db import router

    return str(qs._db or router.db_for_write(qs.model, **qs._hints))


def mark_for_write(qs: Any) -> None:
    """``qs._for_write = True``, as Django's write methods do first: ``qs.db`` then routes
    to the write database, and the ported writes must route as Django's do."""
    qs._for_write = True


def chain(qs: Any) -> Any:
    """``qs._chain()``: the copy Django's ``delete()`` and combined ``get()`` work on."""
    return qs._chain()


def fetch_all(qs: Any) -> Callable[[], None]:
    """``qs._fetch_all``: what evaluating a queryset runs; replayed to fill its cache."""
    method: Callable[[], None] = qs._fetch_all
    return method


def result_cache(qs: Any) -> list[Any] | None:
    """``qs._result_cache``: the rows a replayed ``_fetch_all()`` left, None before."""
    cache: list[Any] | None = qs._result_cache
    return cache


def set_result_cache(qs: Any, value: list[Any] | None) -> None:
    """Set ``qs._result_cache``: Django's ``delete()`` clears it after deleting."""
    qs._result_cache = value


def values_fields(qs: Any) -> tuple[str, ...] | None:
    """``qs._fields``: set by ``values()``/``values_list()``, after which Django's
    ``delete()`` raises."""
    fields: tuple[str, ...] | None = qs._fields
    return fields


def prefetch_lookups(qs: Any) -> Sequence[Any]:
    """``qs._prefetch_related_lookups``: ``aiterator()`` with prefetches is Django's."""
    lookups: Sequence[Any] = qs._prefetch_related_lookups
    return lookups


def iterate(qs: Any, chunk_size: int) -> Iterator[Any]:
    """``qs._iterable_class(qs, chunk_size=...)``: what ``iterator()`` iterates, the
    hydration of model instances, values and value lists."""
    iterable: Iterator[Any] = iter(qs._iterable_class(qs, chunk_size=chunk_size))
    return iterable


def extract_model_params(qs: Any, defaults: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``qs._extract_model_params(defaults, **kwargs)``: ``get_or_create()``'s create
    arguments, with its checks."""
    params: dict[str, Any] = qs._extract_model_params(defaults, **kwargs)
    return params


def check_bulk_create_options(
    qs: Any, ignore_conflicts: bool, update_conflicts: bool, update_fields: Any, unique_fields: Any
) -> Any:
    """``qs._check_bulk_create_options(...)``: ``bulk_create()``'s argument checks and its
    ``OnConflict``."""
    return qs._check_bulk_create_options(
        ignore_conflicts, update_conflicts, update_fields, unique_fields
    )


def prepare_for_bulk_create(qs: Any, objs: list[Any]) -> tuple[list[Any], list[Any]]:
    """``qs._prepare_for_bulk_create(objs)``, split as ``bulk_create()`` splits them:
    ``(objs_with_pk, objs_without_pk)``.

    Django 6.0's returns that split itself (a ``DatabaseDefault`` primary key counts as
    unset); 5.2's returns nothing and ``bulk_create()`` partitions on ``_is_pk_set()``.
    """
    if django6():
        with_pk, without_pk = qs._prepare_for_bulk_create(objs)
        return list(with_pk), list(without_pk)
    qs._prepare_for_bulk_create(objs)
    with_pk = [obj for obj in objs if obj._is_pk_set()]
    without_pk = [obj for obj in objs if not obj._is_pk_set()]
    return with_pk, without_pk


def bulk_create_orders(model: type[Any]) -> bool:
    """Whether ``bulk_create()`` numbers ``order_with_respect_to`` objects itself (6.0: a
    query the native port does not make; 5.2 leaves ``_order`` alone)."""
    return django6() and bool(model._meta.order_with_respect_to)


def bulk_create_atomic(both_kinds: bool) -> bool:
    """Whether ``bulk_create()`` wraps its inserts in ``atomic(savepoint=False)``: always
    on 5.2; on 6.0 only when it inserts objects with and without a primary key."""
    return both_kinds if django6() else True


def bulk_create_atomic_batches(batches: int) -> bool:
    """Whether ``_batched_insert()`` wraps its batches in ``atomic(savepoint=False)``:
    6.0 does for more than one batch; 5.2 never (its caller's block holds them)."""
    return django6() and batches > 1


def bulk_create_counts_returned_rows() -> bool:
    """Whether ``bulk_create()`` asserts one returned row per object without a primary
    key (6.0)."""
    return django6()


def update_returning(qs: Any) -> Callable[[list[Any], list[Any]], list[tuple[Any, ...]]]:
    """``qs._update`` as Django 6.0's ``_save_table()`` calls it: ``(values,
    returning_fields)`` to one row of returned values per updated row (``[()] * rowcount``
    where the backend returns no rows from ``UPDATE``, MySQL's case). On 5.2, which returns
    only the row count, the same list is made from it. Replayable: the statements go
    through ``SQLCompiler.execute_sql``."""
    if django6():

        def update6(values: list[Any], returning_fields: list[Any]) -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = qs._update(values, returning_fields)
            return rows

        return update6

    def update5(values: list[Any], returning_fields: list[Any]) -> list[tuple[Any, ...]]:
        count: int = qs._update(values)
        return [()] * count

    return update5


def raw_delete(qs: Any) -> Callable[[str], int]:
    """``qs._raw_delete``: the one ``DELETE`` of a fast delete (no cascade, no signals)."""
    method: Callable[[str], int] = qs._raw_delete
    return method


# --- Model -------------------------------------------------------------------------------


def prepare_related_fields_for_save(obj: Any, operation_name: str) -> None:
    """``obj._prepare_related_fields_for_save()``: ``save()``'s check that related objects
    are saved, and its copy of their primary keys."""
    obj._prepare_related_fields_for_save(operation_name=operation_name)


def validate_force_insert(obj: Any, force_insert: Any) -> Any:
    """``obj._validate_force_insert(force_insert)``: ``save_base()``'s normalisation."""
    return obj._validate_force_insert(force_insert)


def is_pk_set(obj: Any, meta: Any = None) -> bool:
    """``obj._is_pk_set(meta)``: whether the primary key (every part of a composite one)
    is set."""
    return bool(obj._is_pk_set(meta))


def get_pk_val(obj: Any, meta: Any) -> Any:
    """``obj._get_pk_val(meta)``: the primary key ``_save_table()`` updates by."""
    return obj._get_pk_val(meta)


def non_pk_concrete_field_names(meta: Any) -> frozenset[str]:
    """``meta._non_pk_concrete_field_names``: what ``save(update_fields=...)`` accepts."""
    names: frozenset[str] = meta._non_pk_concrete_field_names
    return names


def reverse_one_to_one_field_names(meta: Any) -> frozenset[str]:
    """``meta._reverse_one_to_one_field_names``: ``create()`` refuses these as arguments."""
    names: frozenset[str] = meta._reverse_one_to_one_field_names
    return names


def deferred_save_allowed(obj: Any) -> bool:
    """Whether ``save()`` of an instance with deferred fields may save only its loaded
    fields: 6.0 asks for a primary key too, 5.2 does not."""
    return not django6() or is_pk_set(obj)


def not_updated(obj: Any, message: str) -> Exception:
    """What ``save()`` raises when an update it must do matches no row: Django 6.0's
    ``Model.NotUpdated`` (a ``DatabaseError``), 5.2's plain ``DatabaseError``."""
    from django.db import DatabaseError

    error: Exception
    if django6():
        error = type(obj).NotUpdated(message)
    else:
        error = DatabaseError(message)
    return error


def update_returning_fields(
    meta: Any, non_pks_non_generated: list[Any], values: list[Any], update_fields: Any
) -> list[Any]:
    """The fields Django 6.0's ``_save_table()`` asks back from its ``UPDATE``: generated
    fields computed from an updated field, and fields saved as an expression (``F()``).
    5.2 asks nothing back."""
    if not django6():
        return []
    returning = [
        f
        for f in meta.local_concrete_fields
        if f.generated and f.referenced_fields.intersection(non_pks_non_generated)
    ]
    for field, _model, value in values:
        if (update_fields is None or field.name in update_fields) and hasattr(
            value, "resolve_expression"
        ):
            returning.append(field)
    return returning


def insert_returning_fields(
    obj: Any, meta: Any, insert_fields: list[Any], pk_set: bool, using: str, raw: bool = False
) -> list[Any]:
    """The fields ``_save_table()`` asks back from its ``INSERT``: ``db_returning_fields``
    on 5.2; on 6.0 also fields saved as an expression, less those the backend cannot
    return."""
    returning = list(meta.db_returning_fields)
    if not django6():
        return returning
    from django.db import connections

    can_return_columns_from_insert = connections[using].features.can_return_columns_from_insert
    for field in insert_fields:
        value = getattr(obj, field.attname) if raw else field.pre_save(obj, add=True)
        if hasattr(value, "resolve_expression"):
            if field not in returning:
                returning.append(field)
        elif (
            field.db_returning
            and not can_return_columns_from_insert
            and not (pk_set and field is meta.auto_field)
        ):
            returning.remove(field)
    return returning


def assign_returned_values(obj: Any, values: Sequence[Any], fields: Sequence[Any]) -> None:
    """What ``_save_table()`` does with the values an ``INSERT``/``UPDATE`` returned: 6.0's
    ``_assign_returned_values`` also defers the fields asked for and not returned (stale
    expressions); 5.2 sets what came back."""
    if django6():
        obj._assign_returned_values(values, fields)
        return
    for value, field in zip(values, fields, strict=False):
        setattr(obj, field.attname, value)


# --- SQL ---------------------------------------------------------------------------------


def fetch_returned_rows(
    connection: Any, cursor: Any, returning_params: Any, many: bool
) -> list[tuple[Any, ...]]:
    """The rows an ``INSERT ... RETURNING`` returned, as ``SQLInsertCompiler.execute_sql``
    reads them: 6.0's ``fetch_returned_rows``; 5.2's ``fetch_returned_insert_rows`` for
    several objects, ``fetch_returned_insert_columns`` (one row) for one."""
    ops = connection.ops
    if django6():
        return list(ops.fetch_returned_rows(cursor, returning_params))
    if many:
        return list(ops.fetch_returned_insert_rows(cursor))
    return [ops.fetch_returned_insert_columns(cursor, returning_params)]


def replace_method(cls: type[Any], name: str, new: Any) -> Any:
    """Set ``cls.<name>`` to ``new``; return what ``cls`` itself defined before. hybrid
    replaces ``QuerySet``'s and ``Model``'s async methods (native calls) and
    ``SQLCompiler.execute_sql`` (replay) this way, and puts them back the same way."""
    original = cls.__dict__[name]
    setattr(cls, name, new)
    return original


def integrity_error_codes() -> Any:
    """``CursorWrapper.codes_for_integrityerror``: the MySQL error codes Django's MySQL
    cursor raises as ``IntegrityError``; native statements raise what it raises."""
    from django.db.backends.mysql.base import CursorWrapper

    return CursorWrapper.codes_for_integrityerror


def thread_connection(alias: str) -> Any:
    """The ``DatabaseWrapper`` this context already has for ``alias``, or None, without
    creating one (``connections[alias]`` would: ``connections._connections`` is the
    ``asgiref.local.Local`` that holds them)."""
    from django.db import connections

    return getattr(connections._connections, alias, None)


def mysql_server_data(connection: Any) -> dict[str, Any]:
    """``connection.mysql_server_data``: the MySQL backend's one query for the server's
    version and modes, which compiling needs and a loop must not run."""
    return dict(connection.mysql_server_data)


# --- request handling --------------------------------------------------------------------


def live_receivers(signal: Any, sender: Any) -> tuple[list[Any], list[Any]]:
    """``signal._live_receivers(sender)``: (sync, async) receivers, to tell Django's own
    request-signal receivers from a project's."""
    sync, async_ = signal._live_receivers(sender)
    return list(sync), list(async_)


def close_resources(response: Any, *, ignore_errors: bool = False) -> None:
    """Run and forget ``response._resource_closers``: ``HttpResponseBase.close()`` without
    sending ``request_finished`` (hybrid does that work itself, or not at all)."""
    for closer in response._resource_closers:
        if ignore_errors:
            try:
                closer()
            except Exception:  # Django's close() ignores a failing closer too
                pass
        else:
            closer()
    response._resource_closers.clear()


def csrf_origin_verified(middleware: Any, request: Any) -> bool:
    """``CsrfViewMiddleware._origin_verified(request)``: a WebSocket handshake's Origin is
    checked as Django checks a form POST's."""
    return bool(middleware._origin_verified(request))


def messages_storage(request: Any) -> Any:
    """The message storage ``MessageMiddleware`` put on ``request``, or None."""
    return getattr(request, MESSAGES_ATTRIBUTE, None)


def lazy_messages_storage(request: Any) -> Any:
    """``default_storage(request)`` (what ``MessageMiddleware.process_request`` puts on
    ``request``), made on first use: a ``SimpleLazyObject``, as ``request.user`` is."""
    from django.contrib.messages.storage import default_storage
    from django.utils.functional import SimpleLazyObject

    return SimpleLazyObject(lambda: default_storage(request))


def messages_unused(request: Any) -> bool:
    """Whether the message storage :func:`lazy_messages_storage` put on ``request`` was
    never made (nothing added, nothing read: ``update()`` would do nothing)."""
    from django.utils.functional import SimpleLazyObject, empty

    storage: Any = getattr(request, MESSAGES_ATTRIBUTE, None)
    return type(storage) is SimpleLazyObject and storage._wrapped is empty


def handler_import_string() -> Callable[[str], Any]:
    """``django.core.handlers.base.import_string``: the one name ``load_middleware()``
    looks middleware classes up with, swapped to load their loop-safe variants."""
    from django.core.handlers import base

    found: Callable[[str], Any] = base.import_string
    return found


def flatten_middleware_chain(handler: Any, make_chain: Callable[[Any], Any]) -> None:
    """Replace ``handler._middleware_chain`` (what ``load_middleware()`` built) with
    ``make_chain(handler._get_response_async)``: the same layers, run flat
    (:mod:`hybrid.bridge.chain`)."""
    handler._middleware_chain = make_chain(handler._get_response_async)


def middleware_chain(handler: Any) -> Any:
    """``handler._middleware_chain``: what ``get_response_async()`` awaits."""
    return handler._middleware_chain


def add_exception_middleware(handler: Any, hook: Callable[[Any, Exception], Any]) -> None:
    """Append ``hook(request, exception)`` to ``handler._exception_middleware``: Django asks
    it, after every ``process_exception`` of ``settings.MIDDLEWARE``, about an exception a
    view raised."""
    handler._exception_middleware.append(hook)


def mark_logged(response: Any) -> None:
    """Tell Django's ``log_response()`` that this response was logged already."""
    response._has_been_logged = True


def set_handler_import_string(fn: Callable[[str], Any]) -> None:
    """Set what :func:`handler_import_string` returns (see there)."""
    from django.core.handlers import base

    base.import_string = fn


# --- the startup check -------------------------------------------------------------------


def _queryset() -> Any:
    from django.db.models import QuerySet

    return QuerySet


def _model() -> Any:
    from django.db.models import Model

    return Model


def _options() -> Any:
    from django.db.models.options import Options

    return Options


def _ops() -> Any:
    from django.db.backends.mysql.operations import DatabaseOperations

    return DatabaseOperations


def _accepts(fn: Callable[[], Any], *names: str) -> Callable[[], bool]:
    """A probe: the callable ``fn()`` returns takes parameters ``names``."""
    return lambda: set(names) <= set(inspect.signature(fn()).parameters)


def _has(fn: Callable[[], Any], *names: str) -> Callable[[], bool]:
    """A probe: what ``fn()`` returns (imported lazily) has every attribute in ``names``."""
    return lambda: has_attrs(fn(), *names)()


def _source_mentions(fn: Callable[[], Any], text: str) -> Callable[[], bool]:
    """A probe: the source of what ``fn()`` returns contains ``text``."""
    return lambda: text in inspect.getsource(fn())


def _fetch_returned() -> bool:
    if django6():
        return has_attrs(_ops(), "fetch_returned_rows")()
    return has_attrs(_ops(), "fetch_returned_insert_rows", "fetch_returned_insert_columns")()


def _update_accepts() -> bool:
    names = {"values", "returning_fields"} if django6() else {"values"}
    return names <= set(inspect.signature(_queryset()._update).parameters)


def _not_updated() -> bool:
    if not django6():
        return True
    from django.core import exceptions

    return (
        has_attrs(exceptions, "ObjectNotUpdated")()
        and has_attrs(_model(), "_assign_returned_values")()
    )


def _connections() -> Any:
    from django.db import connections

    return connections


def _mysql_has(name: str, *attrs: str) -> Callable[[], bool]:
    """A probe on ``django.db.backends.mysql.base.<name>``; passes where no MySQL driver
    is installed (then no database is MySQL, and the native path never runs)."""

    def probe() -> bool:
        from django.core.exceptions import ImproperlyConfigured

        try:
            from django.db.backends.mysql import base
        except (ImportError, ImproperlyConfigured):
            return True
        return has_attrs(getattr(base, name), *attrs)()

    return probe


def _signal() -> Any:
    from django.dispatch import Signal

    return Signal


def _response() -> Any:
    from django.http import HttpResponse

    return HttpResponse()


def _csrf() -> Any:
    from django.middleware.csrf import CsrfViewMiddleware

    return CsrfViewMiddleware


def _messages_storage_lazily() -> bool:
    from django.contrib.messages.middleware import MessageMiddleware
    from django.utils.functional import SimpleLazyObject

    source = inspect.getsource(MessageMiddleware.process_request)
    return (
        "request._messages = default_storage(request)" in source
        and "_wrapped" in vars(SimpleLazyObject.__mro__[1]).get("__init__").__code__.co_names
    )


def _log_module() -> Any:
    from django.utils import log

    return log


def _handlers_base() -> Any:
    from django.core.handlers import base

    return base


def _asgi_handler() -> Any:
    from django.core.handlers.asgi import ASGIHandler

    return ASGIHandler


def _messages_middleware() -> Any:
    from django.contrib.messages.middleware import MessageMiddleware

    return MessageMiddleware.process_request


def _compiler() -> Any:
    from django.db.models.sql.compiler import SQLCompiler

    return SQLCompiler


def _deletion() -> Any:
    from django.db.models import deletion

    return deletion


def _query_module() -> Any:
    from django.db.models import query

    return query


def _internals() -> list[Internal]:
    qs = "django.db.models.QuerySet."
    model = "django.db.models.Model."
    return [
        Internal(
            qs + "_db/_hints/_for_write",
            "the native path routes a write to its database as Django's write methods do",
            lambda: {"_db", "_hints", "_for_write"} <= set(vars(_queryset()()).keys()),
        ),
        Internal(
            qs + "_chain/_fetch_all/_result_cache",
            "native reads replay the queryset's own evaluation and read its cache",
            lambda: (
                has_attrs(_queryset(), "_chain", "_fetch_all")()
                and "_result_cache" in vars(_queryset()())
            ),
        ),
        Internal(
            qs + "_fields/_iterable_class/_prefetch_related_lookups",
            "native aiterator() and delete() decide as Django's do",
            lambda: (
                {"_fields", "_iterable_class", "_prefetch_related_lookups"}
                <= set(vars(_queryset()()).keys())
            ),
        ),
        Internal(
            qs + "_extract_model_params",
            "the native get_or_create() builds its create arguments as Django's",
            _has(_queryset, "_extract_model_params"),
        ),
        Internal(
            qs + "_check_bulk_create_options/_prepare_for_bulk_create",
            "the native bulk_create() checks and prepares objects as Django's",
            _has(_queryset, "_check_bulk_create_options", "_prepare_for_bulk_create"),
        ),
        Internal(
            qs + "_update",
            "the native save() updates a row as Django's _save_table() does",
            _update_accepts,
        ),
        Internal(
            qs + "_insert/_raw_delete",
            "a queryset overriding them keeps Django's path; the fast delete runs _raw_delete",
            _has(_queryset, "_insert", "_raw_delete"),
        ),
        Internal(
            model + "_save_table/_save_parents/_do_update/_do_insert/save_base",
            "a model overriding them keeps Django's path (the native save() ports them)",
            _has(_model, *MODEL_SAVE_METHODS),
        ),
        Internal(
            model + "_prepare_related_fields_for_save/_validate_force_insert",
            "the native save() checks its arguments and relations as Django's",
            _has(_model, "_prepare_related_fields_for_save", "_validate_force_insert"),
        ),
        Internal(
            model + "_is_pk_set/_get_pk_val",
            "the native save() and bulk_create() decide insert or update as Django's",
            _has(_model, "_is_pk_set", "_get_pk_val"),
        ),
        Internal(
            "django.core.exceptions.ObjectNotUpdated, Model._assign_returned_values (6.0)",
            "the native save() raises and refreshes what Django 6's save() does",
            _not_updated,
        ),
        Internal(
            "django.db.models.options.Options._non_pk_concrete_field_names"
            "/_reverse_one_to_one_field_names",
            "the native save() and create() check their arguments as Django's",
            _has(_options, "_non_pk_concrete_field_names", "_reverse_one_to_one_field_names"),
        ),
        Internal(
            "django.db.backends.mysql.operations.DatabaseOperations.fetch_returned_*",
            "the native INSERT reads back what it returned as Django's compiler does",
            _fetch_returned,
        ),
        Internal(
            "django.db.models.sql.compiler.SQLCompiler.execute_sql/as_sql, replaced",
            "replay answers Django's statements from aiomysql",
            _accepts(lambda: _compiler().execute_sql, "result_type"),
        ),
        Internal(
            "django.db.models.deletion.get_candidate_relations_to_delete",
            "the native delete() falls back where Django's would cascade",
            _has(_deletion, "get_candidate_relations_to_delete"),
        ),
        Internal(
            "django.db.models.query.MAX_GET_RESULTS",
            "the native get() limits its rows as Django's",
            _has(_query_module, "MAX_GET_RESULTS"),
        ),
        Internal(
            "django.db.backends.mysql.base.CursorWrapper.codes_for_integrityerror",
            "native statements raise IntegrityError where Django's MySQL cursor does",
            _mysql_has("CursorWrapper", "codes_for_integrityerror"),
        ),
        Internal(
            "django.db.backends.mysql.base.DatabaseWrapper.mysql_server_data",
            "compiling on the loop uses the server's answers asked once on a thread",
            _mysql_has("DatabaseWrapper", "mysql_server_data"),
        ),
        Internal(
            "django.db.connections._connections",
            "the loop shares one never-connected wrapper per alias between requests",
            _has(_connections, "_connections"),
        ),
        Internal(
            "django.dispatch.Signal._live_receivers",
            "request signals with only Django's receivers are done without thread hops",
            _has(_signal, "_live_receivers"),
        ),
        Internal(
            "django.http.HttpResponseBase._resource_closers",
            "hybrid closes a response without sending request_finished twice",
            lambda: isinstance(getattr(_response(), "_resource_closers", None), list),
        ),
        Internal(
            "django.middleware.csrf.CsrfViewMiddleware._origin_verified",
            "a WebSocket handshake's Origin is checked as Django checks a POST's",
            _has(_csrf, "_origin_verified"),
        ),
        Internal(
            "django.contrib.messages: request._messages",
            "the message storage is untangled from a finished request",
            _source_mentions(_messages_middleware, "request." + MESSAGES_ATTRIBUTE),
        ),
        Internal(
            "django.contrib.messages.middleware.MessageMiddleware.process_request"
            " (request._messages = default_storage(request)), SimpleLazyObject._wrapped",
            "the message storage is made on first use; unused, the response hook is skipped",
            _messages_storage_lazily,
        ),
        Internal(
            "django.core.handlers.base.import_string",
            "load_middleware() is made to load loop-safe middleware variants",
            _has(_handlers_base, "import_string"),
        ),
        Internal(
            "django.core.handlers.base.BaseHandler._exception_middleware",
            "a view's unreachable database is answered 503 after the project's process_exception",
            _source_mentions(_handlers_base, "self._exception_middleware.append("),
        ),
        Internal(
            "django.utils.log.log_response: response._has_been_logged",
            "an outage's 503s are logged once, not once per request",
            _source_mentions(_log_module, '"_has_been_logged"'),
        ),
        Internal(
            "django.core.handlers.base.BaseHandler._middleware_chain",
            "the chain of loop-safe middleware is run flat, as one coroutine",
            _source_mentions(_handlers_base, "self._middleware_chain = handler"),
        ),
        Internal(
            "django.core.handlers.asgi.ASGIHandler.resolve_request/make_view_atomic"
            "/create_request/send_response/handle/load_middleware, overridden",
            "hybrid runs Django's middleware chain around Tornado handlers and on lanes",
            _has(
                _asgi_handler,
                "resolve_request",
                "make_view_atomic",
                "create_request",
                "send_response",
                "handle",
                "load_middleware",
                "_get_response_async",
            ),
        ),
    ]


def library() -> Library | None:
    """What hybrid needs of Django, or None when it is not installed."""
    if importlib.util.find_spec("django") is None:
        return None
    return Library("Django", "django", VERIFIED, REQUIREMENT, _internals())
