"""Native writes: Django 5.2's save, create, get_or_create, update_or_create, bulk_create
and delete, ported line for line with every statement awaited on aiomysql.

Statements are compiled by Django's ``SQLInsertCompiler`` / ``SQLUpdateCompiler`` /
``SQLDeleteCompiler``; ``update`` and ``delete_batch`` run through :func:`replay`. Where
Django uses ``transaction.atomic()`` these use :class:`hybrid.db.atomic` (a savepoint
inside an outer block). What they do not port raises :class:`Unsupported` *before any
statement*, and the caller falls back to Django's thread path: models overriding
``save``/``delete`` (or the helpers under them), multi-table inheritance,
``order_with_respect_to``, deletes that cascade (the ``Collector`` queries related rows
with the sync connection), querysets overriding ``create``/``get_or_create``/...

**Signals.** ``pre_save``/``post_save``/``pre_delete``/``post_delete`` fire in Django's
order with Django's arguments, through ``Signal.asend()``: what Django does for an async
sender. Async receivers run on the loop; sync receivers run through ``sync_to_async``, on
the request's database thread (so they may use the sync ORM as under Django). A model
with no receivers sends nothing and never leaves the loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hybrid.db.execute import FakeCursor, atomic, run_statement
from hybrid.db.replay import Unsupported, replay

__all__ = [
    "bulk_create",
    "create",
    "delete_instance",
    "delete_queryset",
    "get_or_create",
    "save",
    "update_or_create",
]

_MODEL_METHODS = ("save", "save_base", "_save_table", "_save_parents", "_do_update", "_do_insert")
_QUERYSET_METHODS = ("create", "get_or_create", "update_or_create", "bulk_create", "_insert")


def check_model(model: type[Any], *, deleting: bool = False) -> None:
    """Raise :class:`Unsupported` for models whose save/delete this module does not port."""
    from django.db.models import Model

    names = ("delete",) if deleting else _MODEL_METHODS
    for name in names:
        if getattr(model, name) is not getattr(Model, name):
            raise Unsupported(f"{model.__name__}.{name}() is overridden")
    meta = model._meta
    concrete = meta.concrete_model._meta
    if concrete.parents:
        raise Unsupported(f"{model.__name__} uses multi-table inheritance")
    if meta.order_with_respect_to:
        raise Unsupported(f"{model.__name__} has order_with_respect_to")


def check_queryset(qs: Any, *names: str) -> None:
    from django.db.models import QuerySet

    for name in names or _QUERYSET_METHODS:
        if getattr(type(qs), name) is not getattr(QuerySet, name):
            raise Unsupported(f"{type(qs).__name__}.{name}() is overridden")


async def _send(signal: Any, sender: type[Any], **kwargs: Any) -> None:
    if signal.has_listeners(sender):
        await signal.asend(sender=sender, **kwargs)


async def insert(
    model: type[Any],
    objs: list[Any],
    fields: list[Any],
    returning_fields: list[Any] | None,
    using: str,
    *,
    raw: bool = False,
    on_conflict: Any = None,
    update_fields: Any = None,
    unique_fields: Any = None,
) -> list[Any]:
    """``QuerySet._insert`` and ``SQLInsertCompiler.execute_sql``."""
    from django.db.models import AutoField, sql

    query = sql.InsertQuery(
        model, on_conflict=on_conflict, update_fields=update_fields, unique_fields=unique_fields
    )
    query.insert_values(fields, objs, raw=raw)
    compiler = query.get_compiler(using=using)
    connection = compiler.connection
    opts = query.get_meta()
    compiler.returning_fields = returning_fields
    last = None
    for statement, params in compiler.as_sql():
        last = await run_statement(using, statement, params)
    if not returning_fields or last is None:
        return []
    cursor = FakeCursor(last)
    features = connection.features
    if features.can_return_rows_from_bulk_insert and len(objs) > 1:
        rows = connection.ops.fetch_returned_insert_rows(cursor)
        cols = [field.get_col(opts.db_table) for field in returning_fields]
    elif features.can_return_columns_from_insert:
        rows = [connection.ops.fetch_returned_insert_columns(cursor, compiler.returning_params)]
        cols = [field.get_col(opts.db_table) for field in returning_fields]
    elif isinstance(returning_field := returning_fields[0], AutoField):
        cols = [returning_field.get_col(opts.db_table)]
        rows = [(connection.ops.last_insert_id(cursor, opts.db_table, returning_field.column),)]
    else:
        return []
    converters = compiler.get_converters(cols)
    if converters:
        rows = compiler.apply_converters(rows, converters)
    return list(rows)


async def save(
    obj: Any,
    *,
    force_insert: Any = False,
    force_update: bool = False,
    using: str | None = None,
    update_fields: Iterable[str] | None = None,
) -> None:
    """``Model.save()`` (Django 5.2) with ``save_base`` and ``_save_table``."""
    from django.db import router
    from django.db.models.signals import post_save, pre_save

    check_model(type(obj))
    obj._prepare_related_fields_for_save(operation_name="save")
    using = using or router.db_for_write(obj.__class__, instance=obj)
    if force_insert and (force_update or update_fields):
        raise ValueError("Cannot force both insert and updating in model saving.")
    deferred_non_generated_fields = {
        f.attname
        for f in obj._meta.concrete_fields
        if f.attname not in obj.__dict__ and f.generated is False
    }
    if update_fields is not None:
        if not update_fields:
            return
        update_fields = frozenset(update_fields)
        field_names = obj._meta._non_pk_concrete_field_names
        not_updatable_fields = update_fields.difference(field_names)
        if not_updatable_fields:
            raise ValueError(
                "The following fields do not exist in this model, are m2m "
                "fields, primary keys, or are non-concrete fields: "
                + ", ".join(not_updatable_fields)
            )
    elif not force_insert and deferred_non_generated_fields and using == obj._state.db:
        field_names = set()
        pk_fields = obj._meta.pk_fields
        for field in obj._meta.concrete_fields:
            if field not in pk_fields and not hasattr(field, "through"):
                field_names.add(field.attname)
        loaded_fields = field_names.difference(deferred_non_generated_fields)
        if loaded_fields:
            update_fields = frozenset(loaded_fields)
    # save_base
    cls = origin = obj.__class__
    if cls._meta.proxy:
        cls = cls._meta.concrete_model
    meta = cls._meta
    if not meta.auto_created:
        await _send(
            pre_save, origin, instance=obj, raw=False, using=using, update_fields=update_fields
        )
    force_insert = obj._validate_force_insert(force_insert)
    updated = await _save_table(obj, cls, bool(force_insert), force_update, using, update_fields)
    obj._state.db = using
    obj._state.adding = False
    if not meta.auto_created:
        await _send(
            post_save,
            origin,
            instance=obj,
            created=(not updated),
            update_fields=update_fields,
            raw=False,
            using=using,
        )


async def _save_table(
    obj: Any,
    cls: type[Any],
    force_insert: bool,
    force_update: bool,
    using: str,
    update_fields: frozenset[str] | None,
) -> bool:
    from django.db import DatabaseError

    meta = cls._meta
    pk_fields = meta.pk_fields
    non_pks_non_generated = [
        f for f in meta.local_concrete_fields if f not in pk_fields and not f.generated
    ]
    if update_fields:
        non_pks_non_generated = [
            f
            for f in non_pks_non_generated
            if f.name in update_fields or f.attname in update_fields
        ]
    if not obj._is_pk_set(meta):
        setattr(obj, meta.pk.attname, meta.pk.get_pk_value_on_save(obj))
    pk_set = obj._is_pk_set(meta)
    if not pk_set and (force_update or update_fields):
        raise ValueError("Cannot force an update in save() with no primary key.")
    updated = False
    if (
        not force_insert
        and not force_update
        and obj._state.adding
        and all(f.has_default() or f.has_db_default() for f in meta.pk_fields)
    ):
        force_insert = True
    if pk_set and not force_insert:
        base_qs = cls._base_manager.using(using)
        values = [(f, None, f.pre_save(obj, False)) for f in non_pks_non_generated]
        forced_update = bool(update_fields or force_update)
        filtered = base_qs.filter(pk=obj._get_pk_val(meta))
        if not values:
            updated = update_fields is not None or await replay(using, filtered.exists)
        elif meta.select_on_save and not forced_update:
            updated = await replay(using, filtered.exists) and (
                await replay(using, filtered._update, values) > 0
                or await replay(using, filtered.exists)
            )
        else:
            updated = await replay(using, filtered._update, values) > 0
        if force_update and not updated:
            raise DatabaseError("Forced update did not affect any rows.")
        if update_fields and not updated:
            raise DatabaseError("Save with update_fields did not affect any rows.")
    if not updated:
        fields = [
            f
            for f in meta.local_concrete_fields
            if not f.generated and (pk_set or f is not meta.auto_field)
        ]
        returning_fields = meta.db_returning_fields
        results = await insert(cls, [obj], fields, returning_fields, using)
        if results:
            for value, field in zip(results[0], returning_fields, strict=False):
                setattr(obj, field.attname, value)
    return updated


async def create(qs: Any, kwargs: dict[str, Any]) -> Any:
    """``QuerySet.create()``."""
    check_queryset(qs, "create")
    check_model(qs.model)
    reverse_one_to_one_fields = frozenset(kwargs).intersection(
        qs.model._meta._reverse_one_to_one_field_names
    )
    if reverse_one_to_one_fields:
        raise Unsupported("reverse one-to-one fields given (Django raises ValueError)")
    obj = qs.model(**kwargs)
    qs._for_write = True
    await save(obj, force_insert=True, using=qs.db)
    return obj


async def get_or_create(
    qs: Any, defaults: dict[str, Any] | None, kwargs: dict[str, Any]
) -> tuple[Any, bool]:
    """``QuerySet.get_or_create()``."""
    from django.db import IntegrityError
    from django.db.models.utils import resolve_callables

    check_queryset(qs, "get_or_create", "create", "get")
    check_model(qs.model)
    qs._for_write = True
    alias = qs.db
    try:
        return await replay(alias, qs.get, **kwargs), False
    except qs.model.DoesNotExist:
        params = qs._extract_model_params(defaults, **kwargs)
        try:
            async with atomic(using=alias):
                params = dict(resolve_callables(params))
                return await create(qs, params), True
        except IntegrityError:
            try:
                return await replay(alias, qs.get, **kwargs), False
            except qs.model.DoesNotExist:
                pass
            raise


async def update_or_create(
    qs: Any,
    defaults: dict[str, Any] | None,
    create_defaults: dict[str, Any] | None,
    kwargs: dict[str, Any],
) -> tuple[Any, bool]:
    """``QuerySet.update_or_create()``: in a transaction, the row locked by
    ``select_for_update()`` until it is saved."""
    from django.db.models import Field
    from django.db.models.utils import resolve_callables

    check_queryset(qs, "update_or_create", "get_or_create", "create", "get")
    check_model(qs.model)
    update_defaults = defaults or {}
    if create_defaults is None:
        create_defaults = update_defaults
    qs._for_write = True
    async with atomic(using=qs.db):
        obj, created = await get_or_create(qs.select_for_update(), create_defaults, kwargs)
        if created:
            return obj, created
        for k, v in resolve_callables(update_defaults):
            setattr(obj, k, v)
        update_fields = set(update_defaults)
        concrete_field_names = qs.model._meta._non_pk_concrete_field_names
        if concrete_field_names.issuperset(update_fields):
            pk_fields = qs.model._meta.pk_fields
            for field in qs.model._meta.local_concrete_fields:
                if not (field in pk_fields or field.__class__.pre_save is Field.pre_save):
                    update_fields.add(field.name)
                    if field.name != field.attname:
                        update_fields.add(field.attname)
            await save(obj, using=qs.db, update_fields=update_fields)
        else:
            await save(obj, using=qs.db)
    return obj, False


async def bulk_create(
    qs: Any,
    objs: Iterable[Any],
    batch_size: int | None = None,
    ignore_conflicts: bool = False,
    update_conflicts: bool = False,
    update_fields: Any = None,
    unique_fields: Any = None,
) -> list[Any]:
    """``QuerySet.bulk_create()``."""
    from django.db.models import AutoField
    from django.db.models.constants import OnConflict
    from django.utils.functional import partition

    check_queryset(qs, "bulk_create", "_insert")
    if batch_size is not None and batch_size <= 0:
        raise ValueError("Batch size must be a positive integer.")
    for parent in qs.model._meta.all_parents:
        if parent._meta.concrete_model is not qs.model._meta.concrete_model:
            raise ValueError("Can't bulk create a multi-table inherited model")
    if not objs:
        return objs  # type: ignore[return-value]  # Django returns what it was given
    opts = qs.model._meta
    if unique_fields:
        unique_fields = [
            qs.model._meta.get_field(opts.pk.name if name == "pk" else name)
            for name in unique_fields
        ]
    if update_fields:
        update_fields = [qs.model._meta.get_field(name) for name in update_fields]
    on_conflict = qs._check_bulk_create_options(
        ignore_conflicts, update_conflicts, update_fields, unique_fields
    )
    qs._for_write = True
    alias = qs.db
    fields = [f for f in opts.concrete_fields if not f.generated]
    objs = list(objs)
    qs._prepare_for_bulk_create(objs)

    async def batched(items: list[Any], fields: list[Any]) -> list[Any]:
        from django.db import connections

        connection = connections[alias]
        max_batch_size = max(connection.ops.bulk_batch_size(fields, items), 1)
        size = min(batch_size, max_batch_size) if batch_size else max_batch_size
        inserted_rows: list[Any] = []
        bulk_return = connection.features.can_return_rows_from_bulk_insert
        for start in range(0, len(items), size):
            item = items[start : start + size]
            returning = bulk_return and (on_conflict is None or on_conflict == OnConflict.UPDATE)
            rows = await insert(
                qs.model,
                item,
                fields,
                opts.db_returning_fields if returning else None,
                alias,
                on_conflict=on_conflict,
                update_fields=update_fields,
                unique_fields=unique_fields,
            )
            if returning:
                inserted_rows.extend(rows)
        return inserted_rows

    async with atomic(using=alias, savepoint=False):
        objs_without_pk, objs_with_pk = partition(lambda o: o._is_pk_set(), objs)
        if objs_with_pk:
            returned_columns = await batched(objs_with_pk, fields)
            for obj_with_pk, results in zip(objs_with_pk, returned_columns, strict=False):
                for result, field in zip(results, opts.db_returning_fields, strict=False):
                    if field != opts.pk:
                        setattr(obj_with_pk, field.attname, result)
            for obj_with_pk in objs_with_pk:
                obj_with_pk._state.adding = False
                obj_with_pk._state.db = alias
        if objs_without_pk:
            fields = [f for f in fields if not isinstance(f, AutoField)]
            returned_columns = await batched(objs_without_pk, fields)
            for obj_without_pk, results in zip(objs_without_pk, returned_columns, strict=False):
                for result, field in zip(results, opts.db_returning_fields, strict=False):
                    setattr(obj_without_pk, field.attname, result)
                obj_without_pk._state.adding = False
                obj_without_pk._state.db = alias
    return objs


def _check_no_cascade(model: type[Any]) -> None:
    from django.db.models import DO_NOTHING
    from django.db.models.deletion import get_candidate_relations_to_delete

    opts = model._meta
    for related in get_candidate_relations_to_delete(opts):
        if related.field.remote_field.on_delete is not DO_NOTHING:
            raise Unsupported(f"deleting {model.__name__} may cascade")
    if any(hasattr(field, "bulk_related_objects") for field in opts.private_fields):
        raise Unsupported(f"{model.__name__} has generic relations")


async def delete_instance(
    obj: Any, using: str | None = None, keep_parents: bool = False
) -> tuple[int, dict[str, int]]:
    """``Model.delete()`` with ``pre_delete``/``post_delete`` receivers (Collector order)."""
    from django.db import router
    from django.db.models import signals, sql

    model = type(obj)
    check_model(model, deleting=True)
    _check_no_cascade(model)
    if obj.pk is None:
        raise Unsupported("no primary key (Django raises ValueError)")
    using = using or router.db_for_write(model, instance=obj)
    fast = not (
        signals.pre_delete.has_listeners(model)
        or signals.post_delete.has_listeners(model)
        or signals.m2m_changed.has_listeners(model)
    )
    label = model._meta.label
    if fast:
        count: int = await replay(using, sql.DeleteQuery(model).delete_batch, [obj.pk], using)
        setattr(obj, model._meta.pk.attname, None)
        return count, {label: count}
    async with atomic(using=using, savepoint=False):
        if not model._meta.auto_created:
            await _send(signals.pre_delete, model, instance=obj, using=using, origin=obj)
        count = await replay(using, sql.DeleteQuery(model).delete_batch, [obj.pk], using)
        if not model._meta.auto_created:
            await _send(signals.post_delete, model, instance=obj, using=using, origin=obj)
    setattr(obj, model._meta.pk.attname, None)
    return count, ({label: count} if count else {})


async def delete_queryset(qs: Any) -> tuple[int, dict[str, int]]:
    """``QuerySet.delete()`` when the ``Collector`` can fast-delete (no signals, no
    cascades): one ``DELETE``."""
    from django.db.models.deletion import Collector

    check_queryset(qs, "delete", "_raw_delete")
    if qs.query.combinator or qs.query.is_sliced or qs.query.distinct_fields:
        raise Unsupported("Django raises for this delete()")
    if qs._fields is not None:
        raise Unsupported("Django raises for delete() after values()")
    del_query = qs._chain()
    del_query._for_write = True
    del_query.query.select_for_update = False
    del_query.query.select_related = False
    del_query.query.clear_ordering(force=True)
    alias = del_query.db
    collector = Collector(using=alias, origin=qs)
    if not collector.can_fast_delete(del_query):
        raise Unsupported("the delete cascades or has signal receivers")
    count: int = await replay(alias, del_query._raw_delete, alias)
    qs._result_cache = None
    return count, ({qs.model._meta.label: count} if count else {})
