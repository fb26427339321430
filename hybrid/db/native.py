"""Native writes: Django's save, create, get_or_create, update_or_create, bulk_create
and delete, ported line for line with every statement awaited on aiomysql.

The port follows Django 5.2 and 6.0 alike; where they differ (6.0 raises
``Model.NotUpdated``, asks an ``UPDATE``/``INSERT`` for the values of generated fields and
expressions and defers those it did not get back, splits ``bulk_create()``'s objects
itself and opens fewer transactions), :mod:`hybrid._compat.django` decides, and so do the
private helpers of Django's that the port calls.

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

import contextlib
from collections.abc import Iterable
from typing import Any

from hybrid._compat import django as dj
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


def check_model(model: type[Any], *, deleting: bool = False) -> None:
    """Raise :class:`Unsupported` for models whose save/delete this module does not port."""
    from django.db.models import Model

    names = ("delete",) if deleting else dj.MODEL_SAVE_METHODS
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

    for name in names or dj.QUERYSET_WRITE_METHODS:
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
    many = len(objs) > 1
    if (features.can_return_rows_from_bulk_insert and many) or (
        features.can_return_columns_from_insert and not many
    ):
        rows = dj.fetch_returned_rows(connection, cursor, compiler.returning_params, many)
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
    """``Model.save()`` with ``save_base`` and ``_save_table``."""
    from django.db import router
    from django.db.models.signals import post_save, pre_save

    check_model(type(obj))
    dj.prepare_related_fields_for_save(obj, "save")
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
        updatable = dj.non_pk_concrete_field_names(obj._meta)
        not_updatable_fields = update_fields.difference(updatable)
        if not_updatable_fields:
            raise ValueError(
                "The following fields do not exist in this model, are m2m "
                "fields, primary keys, or are non-concrete fields: "
                + ", ".join(not_updatable_fields)
            )
    elif (
        not force_insert
        and deferred_non_generated_fields
        and using == obj._state.db
        and dj.deferred_save_allowed(obj)
    ):
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
    force_insert = dj.validate_force_insert(obj, force_insert)
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
    if not dj.is_pk_set(obj, meta):
        setattr(obj, meta.pk.attname, meta.pk.get_pk_value_on_save(obj))
    pk_set = dj.is_pk_set(obj, meta)
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
        pk_val = dj.get_pk_val(obj, meta)
        returning_fields = dj.update_returning_fields(
            meta, non_pks_non_generated, values, update_fields
        )
        results = await _do_update(
            base_qs, using, pk_val, values, update_fields, forced_update, returning_fields
        )
        if updated := bool(results):
            dj.assign_returned_values(obj, results[0], returning_fields)
        elif force_update:
            raise dj.not_updated(obj, "Forced update did not affect any rows.")
        elif update_fields:
            raise dj.not_updated(obj, "Save with update_fields did not affect any rows.")
    if not updated:
        insert_fields = [
            f
            for f in meta.local_concrete_fields
            if not f.generated and (pk_set or f is not meta.auto_field)
        ]
        returning_fields = dj.insert_returning_fields(obj, meta, insert_fields, pk_set, using)
        results = await insert(cls, [obj], insert_fields, returning_fields, using)
        if results:
            dj.assign_returned_values(obj, results[0], returning_fields)
    return updated


async def _do_update(
    base_qs: Any,
    using: str,
    pk_val: Any,
    values: list[Any],
    update_fields: frozenset[str] | None,
    forced_update: bool,
    returning_fields: list[Any],
) -> list[tuple[Any, ...]]:
    """``Model._do_update()``: one row of returned values per updated row (Django 6.0's
    answer; 5.2's boolean is whether the list is empty)."""
    filtered = base_qs.filter(pk=pk_val)
    if not values:
        if update_fields is not None or await replay(using, filtered.exists):
            return [()]
        return []
    update = dj.update_returning(filtered)
    if base_qs.model._meta.select_on_save and not forced_update:
        if not await replay(using, filtered.exists):
            return []
        if results := await replay(using, update, values, returning_fields):
            return results
        return [()] if await replay(using, filtered.exists) else []
    return await replay(using, update, values, returning_fields)


async def create(qs: Any, kwargs: dict[str, Any]) -> Any:
    """``QuerySet.create()``."""
    check_queryset(qs, "create")
    check_model(qs.model)
    reverse_one_to_one_fields = frozenset(kwargs).intersection(
        dj.reverse_one_to_one_field_names(qs.model._meta)
    )
    if reverse_one_to_one_fields:
        raise Unsupported("reverse one-to-one fields given (Django raises ValueError)")
    obj = qs.model(**kwargs)
    dj.mark_for_write(qs)
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
    dj.mark_for_write(qs)
    alias = qs.db
    try:
        return await replay(alias, qs.get, **kwargs), False
    except qs.model.DoesNotExist:
        params = dj.extract_model_params(qs, defaults, kwargs)
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
    dj.mark_for_write(qs)
    async with atomic(using=qs.db):
        obj, created = await get_or_create(qs.select_for_update(), create_defaults, kwargs)
        if created:
            return obj, created
        for k, v in resolve_callables(update_defaults):
            setattr(obj, k, v)
        update_fields = set(update_defaults)
        concrete_field_names = dj.non_pk_concrete_field_names(qs.model._meta)
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
    from django.db import connections
    from django.db.models import AutoField
    from django.db.models.constants import OnConflict

    check_queryset(qs, *dj.QUERYSET_BULK_CREATE_METHODS)
    if dj.bulk_create_orders(qs.model):
        raise Unsupported(f"{qs.model.__name__} has order_with_respect_to")
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
    on_conflict = dj.check_bulk_create_options(
        qs, ignore_conflicts, update_conflicts, update_fields, unique_fields
    )
    dj.mark_for_write(qs)
    alias = qs.db
    fields = [f for f in opts.concrete_fields if not f.generated]
    objs = list(objs)
    objs_with_pk, objs_without_pk = dj.prepare_for_bulk_create(qs, objs)
    connection = connections[alias]

    async def batched(items: list[Any], fields: list[Any]) -> list[Any]:
        max_batch_size = max(connection.ops.bulk_batch_size(fields, items), 1)
        size = min(batch_size, max_batch_size) if batch_size else max_batch_size
        inserted_rows: list[Any] = []
        bulk_return = connection.features.can_return_rows_from_bulk_insert
        returning = bulk_return and (on_conflict is None or on_conflict == OnConflict.UPDATE)
        batches = [items[start : start + size] for start in range(0, len(items), size)]
        async with _maybe_atomic(alias, dj.bulk_create_atomic_batches(len(batches))):
            for item in batches:
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

    both = bool(objs_with_pk and objs_without_pk)
    async with _maybe_atomic(alias, dj.bulk_create_atomic(both)):
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
            if (
                dj.bulk_create_counts_returned_rows()
                and connection.features.can_return_rows_from_bulk_insert
                and on_conflict is None
            ):
                assert len(returned_columns) == len(objs_without_pk)
            for obj_without_pk, results in zip(objs_without_pk, returned_columns, strict=False):
                for result, field in zip(results, opts.db_returning_fields, strict=False):
                    setattr(obj_without_pk, field.attname, result)
                obj_without_pk._state.adding = False
                obj_without_pk._state.db = alias
    return objs


def _maybe_atomic(alias: str, needed: bool) -> Any:
    """``atomic(using=alias, savepoint=False)`` where Django opens one, else nothing."""
    return atomic(using=alias, savepoint=False) if needed else contextlib.nullcontext()


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

    check_queryset(qs, *dj.QUERYSET_DELETE_METHODS)
    if qs.query.combinator or qs.query.is_sliced or qs.query.distinct_fields:
        raise Unsupported("Django raises for this delete()")
    if dj.values_fields(qs) is not None:
        raise Unsupported("Django raises for delete() after values()")
    del_query = dj.chain(qs)
    dj.mark_for_write(del_query)
    del_query.query.select_for_update = False
    del_query.query.select_related = False
    del_query.query.clear_ordering(force=True)
    alias = del_query.db
    collector = Collector(using=alias, origin=qs)
    if not collector.can_fast_delete(del_query):
        raise Unsupported("the delete cascades or has signal receivers")
    count: int = await replay(alias, dj.raw_delete(del_query), alias)
    dj.set_result_cache(qs, None)
    return count, ({qs.model._meta.label: count} if count else {})
