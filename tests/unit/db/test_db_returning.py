"""hybrid.db writes where Django 5.2 and 6.0 differ, against Django's own sync path.

Each script runs once with the sync ORM and once natively from the same empty tables
(AUTO_INCREMENT reset). Compared: what each call returned or raised (the exception's class
and its place under ``Model.NotUpdated`` / ``DatabaseError``), every instance's
``__dict__`` (so a field Django 6.0 defers after a save, because its new value is in the
database only, must be missing natively too), and the tables after. Whatever the
installed Django does is the expectation: on 5.2 a save that updates nothing raises
``DatabaseError``, on 6.0 ``Model.NotUpdated``; on 6.0 values that an ``UPDATE`` cannot
return (``F()`` expressions, generated fields computed from updated fields) are deferred.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from conftest import MariaDB
from dbnative import ALIAS, run_native, setup_alias, snapshot
from django.db import DatabaseError, connections
from django.db.models import F

from hybrid.db import stats

DJANGO6 = django.VERSION >= (6, 0)


@pytest.fixture(scope="module", autouse=True)
def native_alias(mariadb: MariaDB) -> Iterator[None]:
    for _ in setup_alias(mariadb):
        from nativedb.returning import MODELS

        with connections[ALIAS].schema_editor() as editor:
            for model in MODELS:
                editor.execute(f"DROP TABLE IF EXISTS {model._meta.db_table}")
                editor.create_model(model)
        try:
            yield
        finally:
            with connections[ALIAS].schema_editor() as editor:
                for model in MODELS:
                    editor.delete_model(model)


def _reset() -> None:
    from nativedb.models import MODELS, Tag
    from nativedb.returning import MODELS as RETURNING

    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SET FOREIGN_KEY_CHECKS=0")
        for model in [*MODELS, *RETURNING, Tag.items.through]:
            cursor.execute(f"TRUNCATE TABLE {model._meta.db_table}")
        cursor.execute("SET FOREIGN_KEY_CHECKS=1")
    stats.clear()


def _error(exc: BaseException) -> tuple[str, str, bool, bool]:
    from nativedb.returning import Counter

    not_updated = getattr(Counter, "NotUpdated", None)
    return (
        type(exc).__name__,
        str(exc),
        isinstance(exc, DatabaseError),
        not_updated is not None and isinstance(exc, not_updated),
    )


def _tables() -> Any:
    from nativedb.models import Item, Owner, Tag
    from nativedb.returning import Checked, Counter

    return snapshot(
        [
            list(Counter.objects.order_by("pk").values()),
            list(Checked.objects.order_by("pk").values()),
            list(Owner.objects.order_by("pk").values("id", "name", "rank")),
            list(Item.objects.order_by("pk").values("id", "name", "owner_id")),
            list(
                Tag.items.through.objects.order_by("tag_id", "item_id").values("tag_id", "item_id")
            ),
        ]
    )


def _differential(sync: Callable[[], Any], native: Callable[[], Any]) -> Any:
    """Run both scripts from empty tables; assert the same results and tables."""
    _reset()
    want = snapshot(sync())
    want_tables = _tables()
    _reset()
    got = run_native(native)
    assert snapshot(got) == want
    assert _tables() == want_tables
    return got


def _now(obj: Any) -> dict[str, Any]:
    """The instance's attributes as they are now (the script changes it after)."""
    return {**vars(obj), "_state": (obj._state.db, obj._state.adding)}


# -- saves: returned values, deferred fields, NotUpdated ---------------------------------


def _save_sync() -> list[Any]:
    from nativedb.returning import Counter

    out: list[Any] = []
    c = Counter.objects.create(name="a", n=3)
    out.append(_now(c))  # id, score (db_default) and double (generated) came back
    c.n = 4
    c.save()  # double is computed from n: 6.0 defers it, 5.2 keeps the stale value
    out.append(_now(c))
    c = Counter.objects.get(name="a")
    c.n = F("n") + 10
    c.save()  # an expression: 6.0 defers n (and double), 5.2 keeps the expression
    out.append(_now(c))
    c = Counter.objects.get(name="a")
    c.save(update_fields=["name"])  # nothing computed from name: nothing deferred
    out.append(_now(c))
    d = Counter(name="b", score=9)
    d.save()
    out.append(_now(d))
    for kwargs in ({"update_fields": ["n"]}, {"force_update": True}):
        ghost = Counter(pk=999, name="ghost")
        ghost._state.adding = False
        try:
            ghost.save(**kwargs)
        except Exception as exc:
            out.append(_error(exc))
    return out


async def _save_native() -> list[Any]:
    from nativedb.returning import Counter

    out: list[Any] = []
    c = await Counter.objects.acreate(name="a", n=3)
    out.append(_now(c))
    c.n = 4
    await c.asave()
    out.append(_now(c))
    c = await Counter.objects.aget(name="a")
    c.n = F("n") + 10
    await c.asave()
    out.append(_now(c))
    c = await Counter.objects.aget(name="a")
    await c.asave(update_fields=["name"])
    out.append(_now(c))
    d = Counter(name="b", score=9)
    await d.asave()
    out.append(_now(d))
    for kwargs in ({"update_fields": ["n"]}, {"force_update": True}):
        ghost = Counter(pk=999, name="ghost")
        ghost._state.adding = False
        try:
            await ghost.asave(**kwargs)
        except Exception as exc:
            out.append(_error(exc))
    return out


def test_saves_refresh_and_defer_returned_fields_as_django_does() -> None:
    got = _differential(_save_sync, _save_native)
    assert stats["fallback"] == 0, stats
    assert stats["native:asave"] == 4 and stats["native:acreate"] == 1, stats  # 2 raised
    created, after_update, after_expression = got[:3]
    assert (created["id"], created["score"], created["double"]) == (1, 5, 6)
    assert ("double" not in after_update) is DJANGO6
    assert ("n" not in after_expression) is DJANGO6
    assert ("double" not in after_expression) is DJANGO6


def test_a_save_that_updates_no_row_raises_what_django_raises() -> None:
    got = _differential(_save_sync, _save_native)
    errors = [entry for entry in got if isinstance(entry, tuple)]
    assert len(errors) == 2, got
    for name, message, is_database_error, is_not_updated in errors:
        assert name == ("NotUpdated" if DJANGO6 else "DatabaseError")
        assert "did not affect any rows" in message
        assert is_database_error
        assert is_not_updated is DJANGO6


def _select_on_save_sync() -> list[Any]:
    from nativedb.returning import Checked

    c = Checked.objects.create(n=1)
    c.n = 2
    c.save()
    gone = Checked(pk=50, n=1)
    gone._state.adding = False
    gone.save()  # select_on_save: no row, so an INSERT
    return [c, gone, Checked.objects.count()]


async def _select_on_save_native() -> list[Any]:
    from nativedb.returning import Checked

    c = await Checked.objects.acreate(n=1)
    c.n = 2
    await c.asave()
    gone = Checked(pk=50, n=1)
    gone._state.adding = False
    await gone.asave()
    return [c, gone, await Checked.objects.acount()]


def test_select_on_save_matches_django() -> None:
    _differential(_select_on_save_sync, _select_on_save_native)
    assert stats["fallback"] == 0 and stats["native:asave"] == 2, stats


# -- bulk_create ----------------------------------------------------------------------


def _bulk_sync() -> list[Any]:
    from nativedb.returning import Counter

    made = Counter.objects.bulk_create([Counter(name=f"c{n}", n=n) for n in range(5)])
    mixed = Counter.objects.bulk_create(
        [
            Counter(pk=100 + n, name=f"p{n}", n=n) if n % 2 else Counter(name=f"q{n}")
            for n in range(4)
        ]
    )
    batched = Counter.objects.bulk_create(
        [Counter(name=f"b{n}", n=n, score=n) for n in range(5)], batch_size=2
    )
    upserted = Counter.objects.bulk_create(
        [Counter(name="c1", n=50), Counter(name="fresh", n=7)],
        update_conflicts=True,
        update_fields=["n"],
    )
    return [made, mixed, batched, upserted]


async def _bulk_native() -> list[Any]:
    from nativedb.returning import Counter

    made = await Counter.objects.abulk_create([Counter(name=f"c{n}", n=n) for n in range(5)])
    mixed = await Counter.objects.abulk_create(
        [
            Counter(pk=100 + n, name=f"p{n}", n=n) if n % 2 else Counter(name=f"q{n}")
            for n in range(4)
        ]
    )
    batched = await Counter.objects.abulk_create(
        [Counter(name=f"b{n}", n=n, score=n) for n in range(5)], batch_size=2
    )
    upserted = await Counter.objects.abulk_create(
        [Counter(name="c1", n=50), Counter(name="fresh", n=7)],
        update_conflicts=True,
        update_fields=["n"],
    )
    return [made, mixed, batched, upserted]


def test_bulk_create_returns_primary_keys_and_defaults_as_django_does() -> None:
    got = _differential(_bulk_sync, _bulk_native)
    assert stats["fallback"] == 0 and stats["native:abulk_create"] == 4, stats
    made = got[0]
    assert [obj.pk for obj in made] == list(range(1, 6))
    assert all(obj.__dict__["score"] == 5 for obj in made)


# -- get_or_create / update_or_create ----------------------------------------------------


def _get_or_create_sync() -> list[Any]:
    from nativedb.returning import Counter

    out: list[Any] = []
    out.append(Counter.objects.get_or_create(name="g", defaults={"n": 2}))
    out.append(Counter.objects.get_or_create(name="g", defaults={"n": 3}))
    out.append(Counter.objects.update_or_create(name="g", defaults={"n": 8}))
    out.append(Counter.objects.update_or_create(name="g", defaults={"n": F("n") + 1}))
    out.append(
        Counter.objects.update_or_create(name="u", defaults={"n": 1}, create_defaults={"n": 4})
    )
    return out


async def _get_or_create_native() -> list[Any]:
    from nativedb.returning import Counter

    out: list[Any] = []
    out.append(await Counter.objects.aget_or_create(name="g", defaults={"n": 2}))
    out.append(await Counter.objects.aget_or_create(name="g", defaults={"n": 3}))
    out.append(await Counter.objects.aupdate_or_create(name="g", defaults={"n": 8}))
    out.append(await Counter.objects.aupdate_or_create(name="g", defaults={"n": F("n") + 1}))
    out.append(
        await Counter.objects.aupdate_or_create(
            name="u", defaults={"n": 1}, create_defaults={"n": 4}
        )
    )
    return out


def test_get_or_create_and_update_or_create_match_django() -> None:
    got = _differential(_get_or_create_sync, _get_or_create_native)
    assert stats["fallback"] == 0, stats
    assert stats["native:aget_or_create"] == 2 and stats["native:aupdate_or_create"] == 3, stats
    updated, created = got[2]
    assert not created and ("double" not in updated.__dict__) is DJANGO6


# -- related managers -------------------------------------------------------------------


def _related_sync() -> list[Any]:
    from nativedb.models import Item, Owner, Tag

    owner = Owner.objects.create(name="o")
    other = Owner.objects.create(name="p")
    items = [_item(n) for n in range(4)]
    Item.objects.bulk_create(items)
    tag = Tag.objects.create(name="t")
    owner.items.add(items[0], items[1])
    owner.items.add(items[2], bulk=False)
    owner.items.remove(items[0])
    other.items.set([items[3], items[0]])
    owner.items.clear()
    tag.items.add(items[0], items[1])
    tag.items.set([items[1], items[2]])
    tag.items.remove(items[1])
    extra = owner.items.create(**_fields(9))
    result = [sorted(i.pk for i in other.items.all()), sorted(i.pk for i in tag.items.all())]
    tag.items.clear()
    return [*result, extra.pk, extra.owner_id]


async def _related_native() -> list[Any]:
    from nativedb.models import Item, Owner, Tag

    owner = await Owner.objects.acreate(name="o")
    other = await Owner.objects.acreate(name="p")
    items = [_item(n) for n in range(4)]
    await Item.objects.abulk_create(items)
    tag = await Tag.objects.acreate(name="t")
    await owner.items.aadd(items[0], items[1])
    await owner.items.aadd(items[2], bulk=False)
    await owner.items.aremove(items[0])
    await other.items.aset([items[3], items[0]])
    await owner.items.aclear()
    await tag.items.aadd(items[0], items[1])
    await tag.items.aset([items[1], items[2]])
    await tag.items.aremove(items[1])
    extra = await owner.items.acreate(**_fields(9))
    result = [
        sorted([i.pk async for i in other.items.all()]),
        sorted([i.pk async for i in tag.items.all()]),
    ]
    await tag.items.aclear()
    return [*result, extra.pk, extra.owner_id]


def _fields(n: int) -> dict[str, Any]:
    import datetime
    import decimal
    import uuid

    return {
        "i": n,
        "big": n,
        "dec": decimal.Decimal(n),
        "fl": float(n),
        "flag": True,
        "name": f"item{n}",
        "body": "",
        "day": datetime.date(2020, 1, 1),
        "at": datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
        "time_of": datetime.time(1, 2),
        "dur": datetime.timedelta(seconds=n),
        "uid": uuid.UUID(int=n),
        "data": {"n": n},
        "blob": b"x",
    }


def _item(n: int) -> Any:
    from nativedb.models import Item

    return Item(**_fields(n))


def test_related_managers_match_django() -> None:
    got = _differential(_related_sync, _related_native)
    assert got[0] == [1, 4]
    assert stats["native:abulk_create"] == 1, stats
