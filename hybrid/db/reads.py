"""Native reads that build their queryset once: Django 5.2's ``QuerySet.get``, ported.

:func:`~hybrid.db.replay.replay` runs a sync method twice (once to learn its statement,
once with the rows); for ``get()`` that would build the filtered queryset twice, which is
a good part of the CPU an ``aget(pk=...)`` costs. :func:`get` builds it once, as Django's
``get()`` does, replays only ``_fetch_all()`` on it and then decides as Django does. A
QuerySet class that overrides ``get`` keeps its own method (replayed whole).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hybrid._compat import django as dj
from hybrid.db.replay import replay

__all__ = ["get"]


async def get(alias: str, qs: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``QuerySet.get(*args, **kwargs)`` on ``alias``."""
    from django.db import connections
    from django.db.models.query import MAX_GET_RESULTS, QuerySet

    if type(qs).get is not QuerySet.get or (qs.query.combinator and (args or kwargs)):
        return await replay(alias, qs.get, *args, **kwargs)  # Django's own, errors included
    clone = dj.chain(qs) if qs.query.combinator else qs.filter(*args, **kwargs)
    if qs.query.can_filter() and not qs.query.distinct_fields:
        clone = clone.order_by()
    limit = None
    if (
        not clone.query.select_for_update
        or connections[clone.db].features.supports_select_for_update_with_limit
    ):
        limit = MAX_GET_RESULTS
        clone.query.set_limits(high=limit)
    await replay(alias, dj.fetch_all(clone))
    rows = dj.result_cache(clone) or []
    num = len(rows)
    if num == 1:
        return rows[0]
    name = qs.model._meta.object_name
    if not num:
        raise qs.model.DoesNotExist(f"{name} matching query does not exist.")
    count = num if not limit or num < limit else f"more than {limit - 1}"
    raise qs.model.MultipleObjectsReturned(
        f"get() returned more than one {name} -- it returned {count}!"
    )
