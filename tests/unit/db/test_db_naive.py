"""hybrid.db with ``USE_TZ = False``: naive datetimes, dates and times, read and written.

The differential tables of tests/unit/db/test_db_native.py run again over naive rows, plus
queries that depend on the time zone setting (date/time lookups and extracts, ``Trunc*``,
``dates()``/``datetimes()``), and a script of writes of datetime, date and time values
(explicit, ``auto_now``/``auto_now_add``, ``F()`` updates, ``bulk_create``,
``update_or_create``) runs once with the sync ORM and once natively.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import MariaDB
from dbnative import ALIAS, run_native, seed, setup_alias, snapshot
from django.db import connections
from django.db.models import Count, F, Max, Min
from django.db.models.functions import (
    ExtractHour,
    ExtractWeekDay,
    TruncDate,
    TruncDay,
    TruncHour,
    TruncMonth,
    TruncTime,
)
from django.test.utils import override_settings
from test_db_native import CASES, METHODS, _aoutcome, _outcome

from hybrid.db import stats

NAIVE = datetime.datetime(2021, 6, 2, 12, 30, 15, 250000)


@pytest.fixture(scope="module", autouse=True)
def naive(mariadb: MariaDB) -> Iterator[None]:
    with override_settings(USE_TZ=False):
        yield from setup_alias(mariadb)


@pytest.fixture(autouse=True)
def seeded(naive: None) -> None:
    seed(tz=None)
    stats.clear()


def _items() -> Any:
    from nativedb.models import Item

    return Item.objects.all()


#: Querysets whose SQL or conversions depend on USE_TZ.
DATETIME_CASES: list[tuple[str, Callable[[], Any]]] = [
    ("at-gte", lambda: _items().filter(at__gte=NAIVE).order_by("at")),
    ("at-range", lambda: _items().filter(at__range=(NAIVE, NAIVE.replace(month=11)))),
    ("at-date", lambda: _items().filter(at__date=datetime.date(2021, 3, 2))),
    ("at-hour", lambda: _items().filter(at__hour__gte=12).order_by("pk")),
    ("at-time", lambda: _items().filter(at__time__lt=datetime.time(10))),
    ("day-week-day", lambda: _items().filter(day__week_day=2).order_by("pk")),
    ("day-lt", lambda: _items().filter(day__lt=datetime.date(2020, 6, 1))),
    ("time-minute", lambda: _items().filter(time_of__minute__gt=10).order_by("pk")),
    ("time-eq", lambda: _items().filter(time_of=datetime.time(3, 3, 21, 30))),
    ("created-recent", lambda: _items().filter(created__gte=NAIVE).order_by("pk")),
    (
        "trunc",
        lambda: (
            _items()
            .annotate(
                d=TruncDay("at"),
                m=TruncMonth("at"),
                h=TruncHour("at"),
                dd=TruncDate("at"),
                tt=TruncTime("at"),
            )
            .values("pk", "d", "m", "h", "dd", "tt")
            .order_by("pk")
        ),
    ),
    (
        "extract",
        lambda: (
            _items()
            .annotate(h=ExtractHour("at"), w=ExtractWeekDay("day"))
            .values_list("pk", "h", "w")
            .order_by("pk")
        ),
    ),
    (
        "group-month",
        lambda: (
            _items()
            .annotate(m=TruncMonth("at"))
            .values("m")
            .annotate(n=Count("pk"), last=Max("at"), first=Min("time_of"))
            .order_by("m")
        ),
    ),
    ("dates", lambda: _items().dates("at", "month")),
    ("datetimes", lambda: _items().datetimes("at", "hour", order="DESC")),
    ("dates-day", lambda: _items().dates("day", "year")),
    (
        "shifted",
        lambda: (
            _items()
            .annotate(later=F("at") + datetime.timedelta(days=1, hours=2))
            .filter(later__gt=NAIVE)
            .values_list("pk", "later")
            .order_by("pk")
        ),
    ),
    ("select-related", lambda: _items().select_related("owner").filter(at__month=4)),
]


def test_the_differential_tables_run_over_naive_datetimes() -> None:
    from nativedb.models import Item

    assert all(at.tzinfo is None for at in Item.objects.values_list("at", flat=True))
    cases = [*CASES, *DATETIME_CASES]
    expected = [snapshot(list(build())) for _, build in cases]

    async def native() -> list[Any]:
        return [snapshot([obj async for obj in build()]) for _, build in cases]

    got = run_native(native)
    for (name, _), want, have in zip(cases, expected, got, strict=True):
        assert have == want, name
    assert stats["fallback"] == 0, stats
    assert stats["native:__aiter__"] == len(cases)


def test_queryset_methods_over_naive_datetimes() -> None:
    table = [
        (f"{name}/{mname}", build, sync, native)
        for name, build in DATETIME_CASES[:10]
        for mname, sync, native in METHODS
        if name not in ("dates", "datetimes", "dates-day")
    ]
    expected = [_outcome(lambda b=build, s=sync: s(b())) for _, build, sync, _ in table]

    async def run() -> list[Any]:
        return [await _aoutcome(lambda b=build, n=native: n(b())) for _, build, _, native in table]

    got = run_native(run)
    for (name, *_), want, have in zip(table, expected, got, strict=True):
        assert have == want, name
    assert stats["fallback"] == 0, stats


def _reset() -> None:
    from nativedb.models import MODELS, Tag

    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SET FOREIGN_KEY_CHECKS=0")
        for model in [*MODELS, Tag.items.through]:
            cursor.execute(f"TRUNCATE TABLE {model._meta.db_table}")
        cursor.execute("SET FOREIGN_KEY_CHECKS=1")
    stats.clear()


def _item(n: int) -> dict[str, Any]:
    import decimal
    import uuid

    return {
        "i": n,
        "big": n,
        "dec": decimal.Decimal(n),
        "fl": float(n),
        "flag": bool(n % 2),
        "name": f"w{n}",
        "body": "",
        "day": datetime.date(2024, 2, 28 + n % 2),
        "at": NAIVE + datetime.timedelta(days=n, microseconds=n),
        "time_of": datetime.time(23, 59, 59, 999999 - n),
        "dur": datetime.timedelta(hours=n),
        "uid": uuid.UUID(int=n),
        "data": {},
        "blob": bytes([0, 39, 92, 255, n]) + b"%s%%",  # quote, backslash, NUL, percent
    }


def _datetime_columns() -> Any:
    from nativedb.models import Item, Note

    items = list(
        Item.objects.order_by("pk").values_list("pk", "at", "day", "time_of", "dur", "blob")
    )
    stamps = list(Item.objects.order_by("pk").values_list("created", "updated"))
    notes = list(Note.objects.order_by("pk").values_list("stamp", flat=True))
    naive = all(v.tzinfo is None for row in stamps for v in row) and all(
        v.tzinfo is None for v in notes
    )
    return snapshot(items), naive, len(stamps), len(notes)


def _sync_writes() -> list[Any]:
    from nativedb.models import Item, Note

    out: list[Any] = []
    item = Item.objects.create(**_item(1))
    out.append((item.at, item.day, item.time_of, item.created.tzinfo, item.updated.tzinfo))
    item.at = NAIVE.replace(year=1999, microsecond=1)
    item.time_of = datetime.time(0, 0, 0, 1)
    item.save()
    item.refresh_from_db()
    out.append((item.at, item.time_of, item.updated.tzinfo))
    made = Item.objects.bulk_create([Item(**_item(n)) for n in range(2, 5)])
    out.append([(m.pk, m.at, m.created.tzinfo) for m in made])
    out.append(Item.objects.filter(at__gte=NAIVE).update(at=F("at") + datetime.timedelta(hours=1)))
    out.append(
        Item.objects.filter(day=datetime.date(2024, 2, 29)).update(day=datetime.date(2000, 1, 1))
    )
    obj, created = Item.objects.update_or_create(
        name="w3", defaults={"at": NAIVE.replace(hour=0), "time_of": datetime.time(7)}
    )
    out.append((obj.pk, created, obj.at, obj.time_of))
    note = Note.objects.create(text="n")
    out.append((note.stamp.tzinfo, Note.objects.filter(stamp__lte=datetime.datetime.now()).count()))
    out.append(Item.objects.get(at=NAIVE.replace(year=1999, microsecond=1)).pk)
    return out


async def _native_writes() -> list[Any]:
    from nativedb.models import Item, Note

    out: list[Any] = []
    item = await Item.objects.acreate(**_item(1))
    out.append((item.at, item.day, item.time_of, item.created.tzinfo, item.updated.tzinfo))
    item.at = NAIVE.replace(year=1999, microsecond=1)
    item.time_of = datetime.time(0, 0, 0, 1)
    await item.asave()
    await item.arefresh_from_db()
    out.append((item.at, item.time_of, item.updated.tzinfo))
    made = await Item.objects.abulk_create([Item(**_item(n)) for n in range(2, 5)])
    out.append([(m.pk, m.at, m.created.tzinfo) for m in made])
    out.append(
        await Item.objects.filter(at__gte=NAIVE).aupdate(at=F("at") + datetime.timedelta(hours=1))
    )
    out.append(
        await Item.objects.filter(day=datetime.date(2024, 2, 29)).aupdate(
            day=datetime.date(2000, 1, 1)
        )
    )
    obj, created = await Item.objects.aupdate_or_create(
        name="w3", defaults={"at": NAIVE.replace(hour=0), "time_of": datetime.time(7)}
    )
    out.append((obj.pk, created, obj.at, obj.time_of))
    note = await Note.objects.acreate(text="n")
    out.append(
        (note.stamp.tzinfo, await Note.objects.filter(stamp__lte=datetime.datetime.now()).acount())
    )
    out.append((await Item.objects.aget(at=NAIVE.replace(year=1999, microsecond=1))).pk)
    return out


def test_writes_of_naive_datetimes_match_the_sync_orm() -> None:
    _reset()
    want = snapshot(_sync_writes())
    want_columns = _datetime_columns()
    _reset()
    got = snapshot(run_native(_native_writes))
    assert got == want
    assert _datetime_columns() == want_columns
    assert want_columns[1] is True  # auto_now/auto_now_add stored and read back naive
    assert stats["fallback"] == 0, stats
    assert stats["native:acreate"] == 2 and stats["native:asave"] == 1, stats
