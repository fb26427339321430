"""503 with ``Retry-After`` for a request whose database cannot be reached.

:func:`database_unavailable` is the last ``process_exception`` of every chain hybrid
builds (the one around :class:`~hybrid.DjangoHandler` methods and the Django fallback's):
after the project's own middleware had its say, a view (or handler method) that failed with
an unreachable database (:func:`hybrid.db.outage.unreachable`) gets :func:`unavailable`
instead of Django's 500 page; the flat chain answers middleware hooks that fail so too
(:mod:`hybrid.bridge.chain`). The outage is logged once (:mod:`hybrid.db.outage`), and
the 503s are not logged again by Django's ``django.request`` (their access log lines say
503).
"""

from __future__ import annotations

from typing import Any

from hybrid._compat import django as dj
from hybrid.db.outage import RETRY_AFTER, record_unreachable, unreachable

__all__ = ["database_unavailable", "unavailable"]


def unavailable() -> Any:
    """The 503 response of an outage: ``Retry-After``, no detail for the client."""
    from django.http import HttpResponse

    response = HttpResponse(
        "Service Unavailable: try again in a few seconds\n",
        status=503,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(RETRY_AFTER)
    dj.mark_logged(response)  # the outage is logged once, by record_unreachable()
    return response


def database_unavailable(request: Any, exception: Exception) -> Any:
    """``process_exception``: :func:`unavailable` when the database cannot be reached."""
    if not unreachable(exception):
        return None
    record_unreachable(exception)
    return unavailable()
