"""Helpers of the native MySQL tests: the ``native`` alias on the session's MariaDB."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from conftest import MariaDB

T = TypeVar("T")
ALIAS = "native"


class NativeRouter:
    """Send the nativedb models to the MariaDB alias."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return ALIAS if model._meta.app_label == "nativedb" else None

    db_for_write = db_for_read

    def allow_relation(self, *objs: Any, **hints: Any) -> bool | None:
        return None


def setup_alias(mariadb: MariaDB) -> Iterator[None]:
    """Add the ``native`` alias, route nativedb to it, create the tables, install hybrid.db."""
    import pymysql
    from django.conf import settings
    from django.db import connections, router
    from django.test.utils import override_settings

    import hybrid.db

    apps_override = override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "nativedb"])
    apps_override.enable()
    from nativedb.models import MODELS

    pymysql.version_info = (2, 2, 7, "final", 0)
    pymysql.install_as_MySQLdb()
    conf = {
        "ENGINE": "django.db.backends.mysql",
        "HOST": mariadb.env["MARIADB_HOST"],
        "PORT": mariadb.env["MARIADB_PORT"],
        "USER": mariadb.env["MARIADB_USER"],
        "PASSWORD": mariadb.env["MARIADB_PASSWORD"],
        "NAME": mariadb.env["MARIADB_DATABASE"],
        "OPTIONS": {"charset": "utf8mb4"},
    }
    full = connections.configure_settings(
        {"default": dict(connections.settings["default"]), ALIAS: conf}
    )
    connections.settings[ALIAS] = full[ALIAS]
    native_router = NativeRouter()
    router.routers.insert(0, native_router)
    connection = connections[ALIAS]
    with connection.cursor() as cursor:
        cursor.execute("SET FOREIGN_KEY_CHECKS=0")
        for model in MODELS:
            cursor.execute(f"DROP TABLE IF EXISTS {model._meta.db_table}")
            for field in model._meta.local_many_to_many:
                cursor.execute(f"DROP TABLE IF EXISTS {field.remote_field.through._meta.db_table}")
        cursor.execute("SET FOREIGN_KEY_CHECKS=1")
    with connection.schema_editor() as editor:
        for model in MODELS:
            editor.create_model(model)
    hybrid.db.install()
    try:
        yield
    finally:
        hybrid.db.uninstall()
        router.routers.remove(native_router)
        connection.close()
        del connections[ALIAS]
        connections.settings.pop(ALIAS, None)
        apps_override.disable()


def run_native(factory: Callable[[], Awaitable[T]], *, pool_size: int = 8) -> T:
    """Run ``factory()`` on a fresh loop that may use native pools of at most
    ``pool_size`` connections per alias; close them after."""
    from hybrid import lanes
    from hybrid.db import activate, close_native_pools

    async def main() -> T:
        activate(pool_size)
        try:
            return await factory()
        finally:
            await close_native_pools()
            await lanes.close_lane_pools()

    return asyncio.run(main())


def seed(tz: datetime.tzinfo | None = datetime.UTC) -> None:
    """A few dozen rows, with the edge values of each type (sync ORM); the datetimes in
    ``tz``, naive with ``tz=None`` (for ``USE_TZ = False``)."""
    from nativedb.models import Doc, Item, Note, Owner, Profile, Tag

    for model in (Tag.items.through, Tag, Profile, Item, Doc, Note, Owner):
        model.objects.all().delete()
    owners = [Owner.objects.create(name=f"owner{n}", rank=n % 3) for n in range(4)]
    Profile.objects.create(owner=owners[0], bio="first ✓ 🐍")
    Profile.objects.create(owner=owners[2], bio="")
    items = []
    for n in range(30):
        items.append(
            Item.objects.create(
                i=n * 7 % 11 - 5,
                big=2**40 + n if n % 2 else -(2**50) - n,
                dec=decimal.Decimal(n * 37 % 1000) / 8,
                fl=n / 3.0,
                flag=n % 3 == 0,
                name=f"name{n % 6}",
                body="x" * n + ("é🙂" if n % 4 == 0 else ""),
                day=datetime.date(2020, 1 + n % 12, 1 + n % 28),
                at=datetime.datetime(2021, 1 + n % 12, 2, n % 24, n, n, n * 1000, tzinfo=tz),
                time_of=datetime.time(n % 24, n % 60, (n * 7) % 60, n * 10),
                dur=datetime.timedelta(days=n, seconds=n * 13, microseconds=n),
                uid=uuid.UUID(int=n * 7919),
                data={"n": n, "list": list(range(n % 4)), "s": "ü", "none": None}
                if n % 5
                else [n, "x", {"k": True}],
                blob=bytes(range(n % 7)) + b"\x00\xff",
                maybe=None if n % 3 == 1 else n,
                note=None if n % 4 == 2 else f"note{n % 5}",
                owner=None if n % 7 == 6 else owners[n % 4],
            )
        )
    for t in range(3):
        tag = Tag.objects.create(name=f"tag{t}")
        tag.items.set(items[t::3])
    Doc.objects.create(title="doc-a", owner=owners[1])
    Doc.objects.create(title="doc-b", hits=3)
    for n in range(5):
        Note.objects.create(text=f"note{n}", n=n)


def snapshot(value: Any, depth: int = 0) -> Any:
    """A comparable picture of a result: model instances by class, fields, cached relations
    (select_related) and annotations; containers recursively."""
    from django.db.models import Model

    if isinstance(value, Model) and depth > 2:  # select_related caches point back
        return ("ref", type(value).__name__, value.pk)
    if isinstance(value, Model):
        fields = {k: snapshot(v) for k, v in vars(value).items() if k != "_state"}
        cache = {k: snapshot(v, depth + 1) for k, v in value._state.fields_cache.items()}
        return (
            "model",
            type(value).__name__,
            value._state.db,
            value._state.adding,
            sorted(fields.items()),
            sorted(cache.items()),
        )
    if isinstance(value, dict):
        return ("dict", sorted((str(k), snapshot(v)) for k, v in value.items()))
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return ("named", type(value)._fields, [snapshot(v) for v in value])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [snapshot(v) for v in value])
    if isinstance(value, memoryview):
        return ("bytes", bytes(value))
    return (type(value).__name__, value)
