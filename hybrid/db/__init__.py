"""Django's async ORM natively on aiomysql for MySQL/MariaDB databases (docs/guide/orm.md,
"Native MySQL/MariaDB").

``await Model.objects.aget(pk=1)``, ``async for``, ``acreate``, ``asave``... run on an
aiomysql pool of the worker's own loop, compiled by Django's compilers and hydrated by
Django's own code, with no database thread involved. :func:`setup` turns it on in a worker
(``native_mysql``, on by default; ``DATABASES[alias]["HYBRID_NATIVE"] = False`` keeps one
database on the threads); :class:`atomic` is an async transaction on one pooled
connection. Importing this package does not import Django.
"""

from __future__ import annotations

from hybrid.config import Config
from hybrid.db.aliases import installed, native_alias_reason
from hybrid.db.dispatch import install, stats, uninstall
from hybrid.db.execute import atomic
from hybrid.db.pool import activate, close_native_pools

__all__ = [
    "activate",
    "atomic",
    "close_native_pools",
    "install",
    "installed",
    "native_alias_reason",
    "setup",
    "stats",
    "uninstall",
]


def setup(config: Config) -> bool:
    """At worker boot, on its loop: with ``config.native_mysql``, patch Django's async ORM
    methods, bound each pool like the database threads (``config.db_thread_count``
    connections per worker and MySQL alias, so lanes + pool stay within the budget that
    :attr:`hybrid.config.Config.db_thread_count` documents) and let this loop open pools
    (lazily: no connection before the first native query). Returns whether it is on."""
    if not config.native_mysql:
        return False
    install()
    activate(config.db_thread_count)
    return True
