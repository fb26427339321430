"""Finished requests leave no reference cycles: reference counting frees them at once.

Requests left in cycles wait for the cyclic garbage collector; on a loop with many
requests in flight they survive into its oldest generation, whose collections then stall
the worker for tens of milliseconds under load (see ``hybrid.worker.tune_gc``).
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator

import pytest
from django.test import override_settings
from test_bridge_handler import ROUTES, fetch, session_for
from testproject.settings import DJANGO_MIDDLEWARE
from tornado.httpclient import AsyncHTTPClient

from hybrid import Config, make_app
from hybrid.web import HybridApplication, _TrackedRequest


@pytest.fixture
def app(http_port: int) -> Iterator[HybridApplication]:
    # Django's default middleware only: a sync-only middleware runs its chain through
    # asgiref's async_to_sync, whose machinery leaves cycles of its own.
    with override_settings(HYBRID_ROUTES=ROUTES, MIDDLEWARE=DJANGO_MIDDLEWARE):
        yield make_app(Config(db_threads=4), http_port)


@pytest.fixture
def cookie() -> str:
    return session_for(superuser=False)


def query_of(thing: object) -> str:
    """The query string of the request a server-side object belongs to ("" if unknown)."""
    from django.http import HttpRequest
    from tornado.httputil import HTTPServerRequest
    from tornado.web import RequestHandler

    # type(), not isinstance(): the garbage holds lazy objects (request.user) that
    # isinstance() would evaluate, querying the database.
    if issubclass(type(thing), _TrackedRequest):  # -> tornado's routing delegate -> request
        thing = getattr(getattr(thing._inner, "delegate", None), "request", None)  # type: ignore[attr-defined]
    if issubclass(type(thing), RequestHandler):
        thing = thing.request  # type: ignore[union-attr]
    if issubclass(type(thing), HTTPServerRequest):
        return str(thing.query)  # type: ignore[union-attr]
    if issubclass(type(thing), HttpRequest):
        return str(thing.META.get("QUERY_STRING", ""))  # type: ignore[union-attr]
    return ""


def cyclic_garbage(token: str) -> list[str]:
    """Server-side objects of the requests carrying ``token`` that only the cyclic
    collector could free (objects of earlier tests' requests are not counted)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted({type(o).__qualname__ for o in gc.garbage if token in query_of(o)})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize(
    "path",
    [
        "/bridge/hello",  # DjangoHandler, default middleware
        "/bridge/whoami",  # DjangoHandler, session and user read and written
        "/bridge/stream",  # DjangoHandler, streamed through the middleware
        "/hybrid/pid",  # plain Tornado handler
        "/django/pid",  # the project's URLconf, through Django's ASGI handler
    ],
)
@pytest.mark.gen_test(timeout=30)
async def test_finished_requests_leave_no_reference_cycles(
    http_client: AsyncHTTPClient, base_url: str, path: str, cookie: str
) -> None:
    token = f"probe={uuid.uuid4().hex}"
    for headers in ({}, {"Cookie": cookie}):
        response = await fetch(http_client, f"{base_url}{path}?{token}", headers=headers)
        assert response.code == 200, response.body
    assert cyclic_garbage(token) == []
