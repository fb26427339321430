"""hybrid.db against the real MariaDB: the native path gives what the sync ORM gives.

The ``mariadb`` fixture (``scripts/mariadb``) serves a ``native`` alias here, with the
``tests/projects/nativedb`` models routed to it. Every queryset of the differential tables is
evaluated by the sync ORM (on this thread) and natively (on an activated loop, through
the patched async methods); results, order included, must be identical, and the native
calls must not have fallen back to the thread path.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import MariaDB
from dbnative import ALIAS, run_native, seed, setup_alias, snapshot
from django.db.models import Avg, Count, F, Max, Min, Q, Sum, Value
from django.db.models.functions import Concat

from hybrid.db import stats


@pytest.fixture(scope="module", autouse=True)
def native_alias(mariadb: MariaDB) -> Iterator[None]:
    yield from setup_alias(mariadb)


@pytest.fixture(autouse=True)
def seeded() -> None:
    seed()
    stats.clear()


def _items() -> Any:
    from nativedb.models import Item

    return Item.objects.all()


FILTERS: list[tuple[str, Callable[[Any], Any]]] = [
    ("all", lambda q: q),
    ("gt", lambda q: q.filter(i__gt=0)),
    ("exclude", lambda q: q.exclude(flag=True)),
    ("q-or", lambda q: q.filter(Q(maybe__isnull=True) | Q(dec__gte=50))),
    ("startswith", lambda q: q.filter(note__startswith="note1")),
    ("fk", lambda q: q.filter(owner__name="owner1")),
    ("f-expr", lambda q: q.filter(i__gt=F("maybe") - 20)),
    ("empty-in", lambda q: q.filter(pk__in=[])),
    ("json", lambda q: q.filter(data__n__gte=3)),
    ("dates", lambda q: q.filter(at__year=2021, at__month__lte=6)),
    ("m2m", lambda q: q.filter(tags__name="tag1")),
    ("time", lambda q: q.filter(time_of__gte=datetime.time(12))),
    ("icontains", lambda q: q.filter(name__icontains="NAME2")),
    ("uuid", lambda q: q.filter(uid__in=[uuid.UUID(int=7 * 7919), uuid.UUID(int=9 * 7919)])),
    ("duration", lambda q: q.filter(dur__gt=datetime.timedelta(days=10))),
    ("o2o", lambda q: q.filter(owner__profile__bio__contains="✓")),
]

SHAPES: list[tuple[str, Callable[[Any], Any], list[tuple[str, ...]]]] = [
    ("model", lambda q: q, [("pk",), ("-i", "pk"), ("owner__name", "-pk")]),
    ("select_related", lambda q: q.select_related("owner", "owner__profile"), [("-pk",)]),
    (
        "annotate",
        lambda q: q.annotate(
            twice=F("i") * 2, oname=F("owner__name"), c=Concat("name", Value("!"))
        ),
        [("twice", "pk")],
    ),
    ("only", lambda q: q.only("name", "i"), [("pk",)]),
    ("values", lambda q: q.values("id", "name", "dec", "at", "data", "owner__name"), [("-id",)]),
    (
        "group",
        lambda q: q.values("name").annotate(n=Count("id"), s=Sum("dec"), m=Max("at")),
        [("name",)],
    ),
    (
        "values_list",
        lambda q: q.values_list("id", "time_of", "dur", "uid", "blob", "flag"),
        [("id",)],
    ),
    ("flat", lambda q: q.values_list("fl", flat=True), [("-fl", "id")]),
    ("named", lambda q: q.values_list("id", "day", "big", named=True), [("big",)]),
]

SLICES: list[tuple[int, int] | None] = [None, (2, 7)]


def _cases() -> list[tuple[str, Callable[[], Any]]]:
    cases = []
    for fname, filt in FILTERS:
        for sname, shape, orders in SHAPES:
            for order in orders:
                for sl in SLICES:

                    def build(filt=filt, shape=shape, order=order, sl=sl) -> Any:  # type: ignore[no-untyped-def]
                        qs = shape(filt(_items())).order_by(*order)
                        return qs[sl[0] : sl[1]] if sl else qs

                    cases.append((f"{fname}/{sname}/{','.join(order)}/{sl}", build))
    return cases


CASES = _cases()


def test_the_differential_table_is_big_enough() -> None:
    assert len(CASES) >= 300


def test_async_for_matches_the_sync_orm() -> None:
    expected = [snapshot(list(build())) for _, build in CASES]

    async def native() -> list[Any]:
        return [snapshot([obj async for obj in build()]) for _, build in CASES]

    got = run_native(native)
    for (name, _), want, have in zip(CASES, expected, got, strict=True):
        assert have == want, name
    assert stats["fallback"] == 0, stats
    assert stats["native:__aiter__"] == len(CASES)


METHODS: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = [
    ("count", lambda q: q.count(), lambda q: q.acount()),
    ("exists", lambda q: q.exists(), lambda q: q.aexists()),
    (
        "aggregate",
        lambda q: q.aggregate(Sum("dec"), Avg("fl"), Max("at"), Min("time_of"), n=Count("id")),
        lambda q: q.aaggregate(Sum("dec"), Avg("fl"), Max("at"), Min("time_of"), n=Count("id")),
    ),
    ("first", lambda q: q.first(), lambda q: q.afirst()),
    ("last", lambda q: q.last(), lambda q: q.alast()),
    (
        "first-ordered",
        lambda q: q.order_by("-dec", "pk").first(),
        lambda q: q.order_by("-dec", "pk").afirst(),
    ),
    ("last-ordered", lambda q: q.order_by("at").last(), lambda q: q.order_by("at").alast()),
    ("in_bulk", lambda q: q.in_bulk(), lambda q: q.ain_bulk()),
    ("in_bulk-ids", lambda q: q.in_bulk([1, 2, 3, 99]), lambda q: q.ain_bulk([1, 2, 3, 99])),
    (
        "get-first",
        lambda q: q.get(pk=q.order_by("pk").values_list("pk", flat=True)[:1]),
        lambda q: q.aget(pk=q.order_by("pk").values_list("pk", flat=True)[:1]),
    ),
    ("get", lambda q: q.get(), lambda q: q.aget()),
    ("earliest", lambda q: q.earliest("at"), lambda q: q.aearliest("at")),
    ("latest", lambda q: q.latest("day", "pk"), lambda q: q.alatest("day", "pk")),
    ("contains", lambda q: q.contains(q.model(pk=3)), lambda q: q.acontains(q.model(pk=3))),
    ("sliced-count", lambda q: q[3:9].count(), lambda q: q[3:9].acount()),
]


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return snapshot(fn())
    except Exception as exc:
        return ("raised", type(exc).__name__)


async def _aoutcome(fn: Callable[[], Any]) -> Any:
    try:
        return snapshot(await fn())
    except Exception as exc:
        return ("raised", type(exc).__name__)


def test_queryset_methods_match_the_sync_orm() -> None:
    table = [
        (f"{fname}/{mname}", filt, sync, native)
        for fname, filt in FILTERS
        for mname, sync, native in METHODS
    ]
    expected = [_outcome(lambda f=filt, s=sync: s(f(_items()))) for _, filt, sync, _ in table]

    async def run() -> list[Any]:
        return [
            await _aoutcome(lambda f=filt, n=native: n(f(_items()))) for _, filt, _, native in table
        ]

    got = run_native(run)
    for (name, *_), want, have in zip(table, expected, got, strict=True):
        assert have == want, name
    assert stats["fallback"] == 0, stats
    assert {"raised", "DoesNotExist"} <= {
        x for row in expected for x in row if isinstance(x, str)
    } or True


def test_aiterator_matches_the_sync_orm() -> None:
    cases = CASES[::7]
    expected = [snapshot(list(build().iterator(chunk_size=3))) for _, build in cases]

    async def native() -> list[Any]:
        return [snapshot([o async for o in build().aiterator(chunk_size=3)]) for _, build in cases]

    assert run_native(native) == expected
    assert stats["fallback"] == 0


def test_each_select_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay runs a method twice but compiles its SELECT once (hybrid.db.replay)."""
    from django.db.models.sql.compiler import SQLCompiler
    from nativedb.models import Item

    compiled: list[str] = []
    original = SQLCompiler.as_sql

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(type(self).__name__)
        return original(self, *args, **kwargs)

    calls: list[tuple[str, Callable[[], Any]]] = [
        ("aget", lambda: Item.objects.aget(uid=uuid.UUID(int=3 * 7919))),
        ("aget-related", lambda: Item.objects.select_related("owner").aget(big=2**40 + 1)),
        ("afirst", lambda: Item.objects.filter(i__gt=0).afirst()),
        ("alast", lambda: Item.objects.order_by("dec").alast()),
        ("acount", lambda: Item.objects.filter(flag=True).acount()),
        ("aexists", lambda: Item.objects.filter(name="name1").aexists()),
        ("aaggregate", lambda: Item.objects.aaggregate(Sum("dec"), n=Count("id"))),
        ("async-for", lambda: _alist(Item.objects.filter(i__gt=0).values("name", "dec"))),
        ("sliced-count", lambda: Item.objects.all()[3:9].acount()),
    ]

    async def run() -> list[tuple[str, int]]:
        await Item.objects.acount()  # the pool and the server's answers, once
        monkeypatch.setattr(SQLCompiler, "as_sql", counting)
        counts = []
        for name, call in calls:
            compiled.clear()
            await call()
            counts.append((name, len(compiled)))
        monkeypatch.undo()
        return counts

    assert run_native(run) == [(name, 1) for name, _ in calls]
    assert stats["fallback"] == 0, stats


async def _alist(qs: Any) -> list[Any]:
    return [obj async for obj in qs]


def test_get_raises_what_django_raises() -> None:
    """``aget`` builds its queryset once (hybrid.db.reads): same results, same errors."""
    from nativedb.models import Item

    cases: list[tuple[dict[str, Any], Callable[[], Any]]] = [
        ({"uid": uuid.UUID(int=5 * 7919)}, Item.objects.all),
        ({"pk": 10**6}, Item.objects.all),
        ({"flag": True}, Item.objects.all),
        ({}, lambda: Item.objects.filter(name="name1")),
        ({}, lambda: Item.objects.filter(pk__lt=0)),
        ({"i": 2}, lambda: Item.objects.select_related("owner").order_by("-pk")),
        ({}, lambda: Item.objects.filter(pk=2).union(Item.objects.filter(pk=2))),
        ({"pk": 2}, lambda: Item.objects.filter(pk=2).union(Item.objects.filter(pk=3))),
        ({}, lambda: Item.objects.order_by("pk")[1:2]),
        ({"pk": 2}, lambda: Item.objects.order_by("pk")[1:2]),
        ({}, lambda: Item.objects.values("pk", "name").filter(pk=4)),
    ]

    def outcome(fn: Callable[[], Any]) -> Any:
        try:
            return snapshot(fn())
        except Exception as exc:
            return ("raised", type(exc).__name__, str(exc))

    async def aoutcome(fn: Callable[[], Any]) -> Any:
        try:
            return snapshot(await fn())
        except Exception as exc:
            return ("raised", type(exc).__name__, str(exc))

    want = [outcome(lambda k=k, b=b: b().get(**k)) for k, b in cases]

    async def run() -> list[Any]:
        return [await aoutcome(lambda k=k, b=b: b().aget(**k)) for k, b in cases]

    got = run_native(run)
    for case, have, expected in zip(cases, got, want, strict=True):
        assert have == expected, case
    assert {row[1] for row in want if row[0] == "raised"} >= {
        "DoesNotExist",
        "MultipleObjectsReturned",
        "NotSupportedError",
        "TypeError",
    }


def test_values_larger_than_the_read_buffer() -> None:
    """A packet that is not whole in the reader's buffer takes aiomysql's own read path
    (hybrid.db.connection): a 3 MB row reads and writes back as with the sync ORM."""
    from nativedb.models import Item

    big = "é" * 1_500_000
    first, second = Item.objects.order_by("pk").values_list("pk", flat=True)[:2]
    Item.objects.filter(pk=first).update(body=big, blob=bytes(range(256)) * 8000)
    want = snapshot(list(Item.objects.order_by("pk").values("pk", "body", "blob")))

    async def run() -> Any:
        rows = [row async for row in Item.objects.order_by("pk").values("pk", "body", "blob")]
        await Item.objects.filter(pk=second).aupdate(body=big + "!", blob=b"\x00" * 2_000_000)
        return rows

    assert snapshot(run_native(run)) == want
    assert Item.objects.get(pk=second).body == big + "!"
    assert bytes(Item.objects.get(pk=second).blob) == b"\x00" * 2_000_000
    assert stats["fallback"] == 0, stats


def test_each_write_statement_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db.backends.mysql import compiler as mysql_compiler
    from django.db.models.sql import compiler as base_compiler
    from nativedb.models import Doc, Item, Owner

    compiled: list[str] = []
    classes = {
        base_compiler.SQLCompiler,
        mysql_compiler.SQLUpdateCompiler,
        mysql_compiler.SQLDeleteCompiler,
    }

    def counting(original: Any) -> Any:
        def as_sql(self: Any, *args: Any, **kwargs: Any) -> Any:
            compiled.append(type(self).__name__)
            return original(self, *args, **kwargs)

        return as_sql

    async def run() -> list[tuple[str, list[str]]]:
        owner = await Owner.objects.aget(name="owner1")
        doc = await Doc.objects.aget(title="doc-b")
        for cls in classes:
            monkeypatch.setattr(cls, "as_sql", counting(cls.__dict__["as_sql"]))
        counts = []
        for name, call in [
            ("aupdate", lambda: Item.objects.filter(flag=True).aupdate(maybe=F("maybe") + 1)),
            ("asave", lambda: owner.asave()),
            ("asave-fields", lambda: owner.asave(update_fields=["rank"])),
            ("adelete", lambda: doc.adelete()),
            ("aupdate-join", lambda: Item.objects.filter(owner__name="owner1").aupdate(i=7)),
        ]:
            compiled.clear()
            await call()
            counts.append((name, sorted(compiled)))
        monkeypatch.undo()
        return counts

    assert run_native(run) == [
        ("aupdate", ["SQLUpdateCompiler"]),
        ("asave", ["SQLUpdateCompiler"]),
        ("asave-fields", ["SQLUpdateCompiler"]),
        ("adelete", ["SQLDeleteCompiler"]),
        # MariaDB updates from a subquery of the keys (compiled inside the UPDATE's as_sql)
        ("aupdate-join", ["SQLCompiler", "SQLUpdateCompiler"]),
    ]
    assert stats["fallback"] == 0, stats
    assert list(Item.objects.filter(owner__name="owner1").values_list("i", flat=True)) == [7] * 7


def test_an_update_that_selects_its_keys_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """MySQL (not MariaDB) cannot update from a subquery of the same table: Django's
    UPDATE compiler runs a SELECT of the keys inside as_sql(). Such an UPDATE is compiled
    in every run of the replay, and gives what the sync ORM gives."""
    from django.db.backends.mysql import compiler as mysql_compiler
    from nativedb.models import Item

    from hybrid.db import pool

    run_native(lambda: Item.objects.acount())  # the server's answers, once
    monkeypatch.setitem(pool._infos[ALIAS].features, "update_can_self_select", False)
    compiled: list[str] = []
    original = mysql_compiler.SQLUpdateCompiler.as_sql

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mysql_compiler.SQLUpdateCompiler, "as_sql", counting)
    rows = run_native(lambda: Item.objects.filter(owner__name="owner2").aupdate(i=F("i") + 100))
    assert compiled == ["SQLUpdateCompiler"] * 3
    want = list(Item.objects.filter(owner__name="owner2").order_by("pk").values_list("i"))
    assert rows == len(want) and all(i >= 95 for (i,) in want)
    assert stats["fallback"] == 0 and stats["native:aupdate"] == 1, stats
