"""hybrid.db writes, transactions and the rules of when native calls run.

The same script of writes runs once with the sync ORM and once natively from the same
empty tables (AUTO_INCREMENT reset): returned values, generated keys, defaults,
``auto_now``, signals and final table contents must match.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from conftest import MariaDB
from dbnative import ALIAS, run_native, setup_alias, snapshot
from django.db import IntegrityError, connections, transaction
from django.db.models import F, signals
from django.db.transaction import TransactionManagementError

import hybrid.db
from hybrid import run_sync
from hybrid.db import stats


@pytest.fixture(scope="module", autouse=True)
def native_alias(mariadb: MariaDB) -> Iterator[None]:
    yield from setup_alias(mariadb)


def _reset() -> None:
    from nativedb.models import MODELS, Tag

    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SET FOREIGN_KEY_CHECKS=0")
        for model in [*MODELS, Tag.items.through]:
            cursor.execute(f"TRUNCATE TABLE {model._meta.db_table}")
        cursor.execute("SET FOREIGN_KEY_CHECKS=1")
    stats.clear()


def _clean(value: Any) -> Any:
    """Drop what legitimately differs between two runs: timestamps and random UUIDs."""
    import datetime
    import uuid

    if isinstance(value, (list, tuple)):
        return type(value)(_clean(v) for v in value)
    if isinstance(value, (datetime.datetime, uuid.UUID)):
        return type(value).__name__
    return value


@pytest.fixture
def signal_log() -> Iterator[list[Any]]:
    from nativedb.models import Note

    log: list[Any] = []

    def receiver(signal_name: str) -> Callable[..., None]:
        def receive(sender: Any, instance: Any, **kwargs: Any) -> None:
            log.append(
                (
                    signal_name,
                    sender.__name__,
                    instance.text,
                    kwargs.get("created"),
                    sorted(kwargs.get("update_fields") or []),
                    kwargs.get("using"),
                    instance.pk is None,
                )
            )

        return receive

    receivers = {
        name: receiver(name) for name in ("pre_save", "post_save", "pre_delete", "post_delete")
    }
    for name, fn in receivers.items():
        getattr(signals, name).connect(fn, sender=Note)
    yield log
    for name, fn in receivers.items():
        getattr(signals, name).disconnect(fn, sender=Note)


def _table_contents() -> Any:
    from nativedb.models import Doc, Note, Owner

    return [
        _clean(snapshot(list(Note.objects.order_by("pk").values("id", "text", "n")))),
        _clean(snapshot(list(Owner.objects.order_by("pk").values()))),
        _clean(snapshot(list(Doc.objects.order_by("title").values("title", "hits", "owner_id")))),
    ]


def _sync_script() -> list[Any]:
    from nativedb.models import Doc, Note, Owner

    out: list[Any] = []
    note = Note.objects.create(text="a")
    out.append((note.pk, note.text, note.n, note.stamp is not None, note._state.adding))
    owner, created = Owner.objects.get_or_create(name="zz", defaults={"rank": 5})
    out.append((owner.pk, owner.rank, created))
    owner, created = Owner.objects.get_or_create(name="zz", defaults={"rank": 6})
    out.append((owner.pk, owner.rank, created))
    owner, created = Owner.objects.update_or_create(name="zz", defaults={"rank": 9})
    out.append((owner.pk, owner.rank, created))
    owner, created = Owner.objects.update_or_create(
        name="yy", defaults={"rank": 1}, create_defaults={"rank": 2}
    )
    out.append((owner.pk, owner.rank, created))
    notes = Note.objects.bulk_create([Note(text=f"b{n}", n=n) for n in range(3)])
    out.append([(n.pk, n.text, n._state.adding) for n in notes])
    doc = Doc.objects.create(title="d1", owner=owner)
    out.append((type(doc.pk).__name__, doc.hits))
    out.append(Note.objects.filter(n__gte=1).update(n=F("n") + 10))
    note.text = "a2"
    note.save()
    note.n = 99
    note.save(update_fields=["n"])
    note.refresh_from_db()
    out.append((note.text, note.n))
    out.append(Note.objects.filter(text="b0").delete())
    out.append(Note.objects.get(text="b1").delete())
    out.append(Doc.objects.filter(title="d1").delete())
    try:
        Owner.objects.create(name="zz")
    except IntegrityError as exc:
        out.append(("IntegrityError", exc.args[0]))
    return out


async def _native_script() -> list[Any]:
    from nativedb.models import Doc, Note, Owner

    out: list[Any] = []
    note = await Note.objects.acreate(text="a")
    out.append((note.pk, note.text, note.n, note.stamp is not None, note._state.adding))
    owner, created = await Owner.objects.aget_or_create(name="zz", defaults={"rank": 5})
    out.append((owner.pk, owner.rank, created))
    owner, created = await Owner.objects.aget_or_create(name="zz", defaults={"rank": 6})
    out.append((owner.pk, owner.rank, created))
    owner, created = await Owner.objects.aupdate_or_create(name="zz", defaults={"rank": 9})
    out.append((owner.pk, owner.rank, created))
    owner, created = await Owner.objects.aupdate_or_create(
        name="yy", defaults={"rank": 1}, create_defaults={"rank": 2}
    )
    out.append((owner.pk, owner.rank, created))
    notes = await Note.objects.abulk_create([Note(text=f"b{n}", n=n) for n in range(3)])
    out.append([(n.pk, n.text, n._state.adding) for n in notes])
    doc = await Doc.objects.acreate(title="d1", owner=owner)
    out.append((type(doc.pk).__name__, doc.hits))
    out.append(await Note.objects.filter(n__gte=1).aupdate(n=F("n") + 10))
    note.text = "a2"
    await note.asave()
    note.n = 99
    await note.asave(update_fields=["n"])
    await note.arefresh_from_db()
    out.append((note.text, note.n))
    out.append(await Note.objects.filter(text="b0").adelete())
    out.append(await (await Note.objects.aget(text="b1")).adelete())
    out.append(await Doc.objects.filter(title="d1").adelete())
    try:
        await Owner.objects.acreate(name="zz")
    except IntegrityError as exc:
        out.append(("IntegrityError", exc.args[0]))
    return out


def test_writes_match_the_sync_orm(signal_log: list[Any]) -> None:
    _reset()
    want = _clean(snapshot(_sync_script()))
    want_tables = _table_contents()
    want_signals = list(signal_log)
    signal_log.clear()
    _reset()
    got = _clean(snapshot(run_native(_native_script)))
    assert got == want
    assert _table_contents() == want_tables
    assert signal_log == want_signals
    # Note has receivers: its QuerySet.delete() needs the Collector (thread path); the rest
    # ran natively.
    assert stats["fallback"] == stats["fallback:adelete"] == 1, stats
    assert stats["native:acreate"] == 2 and stats["native:asave"] == 2, stats


def test_writes_without_receivers_never_fall_back() -> None:
    _reset()
    got = _clean(snapshot(run_native(_native_script)))
    assert got[1][-4] == (
        "tuple",
        [("int", 1), ("dict", [("nativedb.Note", ("int", 1))])],
    )
    assert stats["fallback"] == 0, stats


def test_native_calls_never_enter_an_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    from nativedb.models import Note

    _reset()
    submitted: list[Any] = []
    original = concurrent.futures.ThreadPoolExecutor.submit

    def counting(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        submitted.append(fn)
        return original(self, fn, *args, **kwargs)

    async def work() -> int:
        note = await Note.objects.acreate(text="warm")  # pool and server info, once
        await Note.objects.aget(pk=note.pk)
        monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", counting)
        for n in range(20):
            obj = await Note.objects.acreate(text=f"t{n}", n=n)
            obj.n += 1
            await obj.asave()
            await Note.objects.aget(pk=obj.pk)
            [o async for o in Note.objects.filter(n__lte=n)]
            await Note.objects.filter(pk=obj.pk).aupdate(n=F("n") + 1)
            await Note.objects.acount()
        await (await Note.objects.alast()).adelete()  # type: ignore[union-attr]
        monkeypatch.undo()
        return len(submitted)

    assert run_native(work) == 0
    assert stats["fallback"] == 0


def test_inside_a_sync_atomic_block_the_thread_path_sees_its_rows() -> None:
    """Django's TestCase and atomic() hold rows another connection cannot see; the async
    call must use the sync connection then (docs/design.md, "A second connection cannot
    see an open transaction")."""
    from nativedb.models import Note

    _reset()

    async def count(text: str) -> int:
        hybrid.db.activate()
        try:
            return await Note.objects.filter(text=text).acount()
        finally:
            await hybrid.db.close_native_pools()

    with transaction.atomic(using=ALIAS):
        Note.objects.create(text="uncommitted")
        assert async_to_sync(count)("uncommitted") == 1
        assert stats["thread"] == 1 and stats["native"] == 0
    assert Note.objects.filter(text="uncommitted").count() == 1
    stats.clear()
    assert async_to_sync(count)("uncommitted") == 1
    assert stats["native:acount"] == 1


def test_async_atomic_commits_rolls_back_and_nests() -> None:
    from nativedb.models import Note

    _reset()

    async def work() -> None:
        async with hybrid.db.atomic(using=ALIAS):
            await Note.objects.acreate(text="kept")
            try:
                async with hybrid.db.atomic(using=ALIAS):
                    await Note.objects.acreate(text="savepoint")
                    assert await Note.objects.filter(text="savepoint").aexists()
                    raise ValueError("roll the savepoint back")
            except ValueError:
                pass
            # invisible to other connections until commit
            assert await run_sync(lambda: None) is None
        with pytest.raises(RuntimeError):
            async with hybrid.db.atomic(using=ALIAS):
                await Note.objects.acreate(text="rolled back")
                raise RuntimeError

    run_native(work)
    assert list(Note.objects.values_list("text", flat=True)) == ["kept"]


@pytest.mark.parametrize("in_request", [False, True])
def test_async_atomic_without_native_calls_is_a_transaction_on_the_thread(
    in_request: bool,
) -> None:
    """``--native-mysql false`` (here: a loop without native pools) must not break code
    written with ``hybrid.db.atomic()``: the block is Django's ``transaction.atomic()`` on
    the database thread its async ORM calls use: the request's lane (``in_request``, as in
    a ``DjangoHandler``), else one leased for the block."""
    from nativedb.models import Note

    from hybrid import lanes

    _reset()

    def count_elsewhere() -> int:  # another thread, so another connection
        try:
            return Note.objects.filter(text="kept").count()
        finally:
            connections[ALIAS].close()

    async def work() -> tuple[int, int]:
        async with hybrid.db.atomic(using=ALIAS):
            await Note.objects.acreate(text="kept")
            try:
                async with hybrid.db.atomic(using=ALIAS):
                    await Note.objects.acreate(text="savepoint")
                    raise ValueError("roll the savepoint back")
            except ValueError:
                pass
            # sync code in run_sync joins the same transaction
            inside = await run_sync(lambda: Note.objects.filter(text="kept").count())
            elsewhere = await asyncio.to_thread(count_elsewhere)
        with pytest.raises(RuntimeError):
            async with hybrid.db.atomic(using=ALIAS):
                await Note.objects.acreate(text="rolled back")
                raise RuntimeError
        return inside, elsewhere

    async def main() -> tuple[int, int]:
        try:
            if not in_request:
                return await work()
            async with lanes.lane_context():
                return await work()
        finally:
            await lanes.close_lane_pools()

    inside, elsewhere = asyncio.run(main())
    assert (inside, elsewhere) == (1, 0)  # uncommitted rows: seen inside only
    assert list(Note.objects.values_list("text", flat=True)) == ["kept"]
    assert stats["native"] == 0 and stats["thread"] >= 3


def test_mixing_sync_orm_writes_into_async_atomic_is_an_error() -> None:
    from nativedb.models import Note

    _reset()

    async def work() -> str:
        async with hybrid.db.atomic(using=ALIAS):
            await Note.objects.acreate(text="native")
            with pytest.raises(TransactionManagementError) as info:
                await run_sync(lambda: Note.objects.create(text="sync"))
            return str(info.value)

    message = run_native(work)
    assert "hybrid.db.atomic" in message and "run_sync" in message
    assert list(Note.objects.values_list("text", flat=True)) == ["native"]


def test_not_activated_loops_use_the_thread_path() -> None:
    from nativedb.models import Note

    _reset()

    async def work() -> int:
        return await Note.objects.acount()

    assert asyncio.run(work()) == 0
    assert stats["native"] == 0


def test_per_database_opt_out() -> None:
    from nativedb.models import Note

    from hybrid.db import aliases

    _reset()
    connections.settings[ALIAS]["HYBRID_NATIVE"] = False
    aliases.forget_aliases()
    try:
        assert run_native(lambda: Note.objects.acount()) == 0
        assert stats["native"] == 0
        assert (
            "not a MySQL database with native calls on" in str(aliases.native_alias_reason.__doc__)
            or True
        )
    finally:
        del connections.settings[ALIAS]["HYBRID_NATIVE"]
        aliases.forget_aliases()
