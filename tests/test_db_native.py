"""hybrid.db against the real MariaDB: the native path gives what the sync ORM gives.

The ``mariadb`` fixture (``scripts/mariadb``) serves a ``native`` alias here, with the
``tests/nativedb`` models routed to it. Every queryset of the differential tables is
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
from dbnative import run_native, seed, setup_alias, snapshot
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
