"""Django's own middleware on the loop (hybrid/bridge/middleware.py): same responses as
Django's stock chain, and no database thread unless a hook may do I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
from django.conf import settings
from django.contrib import messages
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.contrib.sessions.models import Session
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.test import AsyncRequestFactory, override_settings
from testproject.settings import DJANGO_MIDDLEWARE
from tornado.httpclient import AsyncHTTPClient

from hybrid import Config, make_app
from hybrid.bridge.lifecycle import make_handler_chain
from hybrid.bridge.middleware import LOOP_SAFE, loop_variant
from hybrid.lanes import LanePool, lane_context
from hybrid.web import HybridApplication

#: Django's startproject MIDDLEWARE (what the benchmarks and most projects run).
DEFAULT_MIDDLEWARE = DJANGO_MIDDLEWARE

STORAGE = "django.contrib.messages.storage"

View = Callable[[HttpRequest], Awaitable[HttpResponse]]


async def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


async def write_session(request: HttpRequest) -> HttpResponse:
    await request.session.aset("colour", "green")  # type: ignore[attr-defined]
    return HttpResponse("saved")


async def add_message(request: HttpRequest) -> HttpResponse:
    messages.info(request, "a note for the next page")
    return HttpResponse("noted")


async def issue_token(request: HttpRequest) -> HttpResponse:
    return HttpResponse(get_token(request))


async def post_form(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"got {request.POST.get('x')}")


def stock_chain() -> Any:
    """The same chain class with Django's own load_middleware (every hook on a thread)."""
    loop_chain_class = type(make_handler_chain())

    class StockChain(loop_chain_class):  # type: ignore[misc,valid-type]
        def load_middleware(self, is_async: bool = False) -> None:
            BaseHandler.load_middleware(self, is_async)

    return StockChain()


class Leases:
    """Counts the lanes requests lease (each is a thread hop's worth of work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        take = LanePool.try_take

        def counting(pool: LanePool) -> Any:
            self.count += 1
            return take(pool)

        monkeypatch.setattr(LanePool, "try_take", counting)


@pytest.fixture
def leases(monkeypatch: pytest.MonkeyPatch) -> Leases:
    return Leases(monkeypatch)


async def serve(chain: Any, request: Any, view: View) -> tuple[HttpResponse, bool]:
    """Run ``request`` through ``chain`` with ``view``; also says if a lane was leased."""
    request._hybrid_view = (view, (), {})
    async with lane_context(LanePool(1)) as lane:
        response = await chain.get_response_async(request)
        response.close()
        return response, lane.lane is not None


def shape(response: HttpResponse) -> dict[str, Any]:
    """Everything of a response but the random parts (session keys, CSRF tokens)."""
    cookies = {
        name: {key: value for key, value in morsel.items() if value and key != "expires"}
        for name, morsel in response.cookies.items()
    }
    headers = {name: value for name, value in response.items() if name != "Set-Cookie"}
    body = response.content if response.status_code != 200 or b"got" in response.content else b""
    return {"status": response.status_code, "headers": headers, "cookies": cookies, "body": body}


@pytest.fixture
def default_stack() -> Iterator[None]:
    with override_settings(MIDDLEWARE=DEFAULT_MIDDLEWARE, ALLOWED_HOSTS=["testserver"]):
        yield


def test_only_djangos_own_classes_are_replaced() -> None:
    assert issubclass(loop_variant(SessionMiddleware), SessionMiddleware)
    assert loop_variant(SessionMiddleware) is not SessionMiddleware
    assert loop_variant(SessionMiddleware) is loop_variant(SessionMiddleware)
    assert loop_variant(SessionMiddleware).__qualname__ == "SessionMiddleware"

    class ProjectSession(SessionMiddleware):  # may override a hook with I/O of its own
        pass

    assert loop_variant(ProjectSession) is ProjectSession
    assert loop_variant(dict) is dict
    # Every class named in the table exists in this Django.
    from django.utils.module_loading import import_string

    for path in LOOP_SAFE:
        assert loop_variant(import_string(path)) is not import_string(path)


@pytest.mark.gen_test
@pytest.mark.usefixtures("default_stack")
@pytest.mark.parametrize(
    ("view", "method", "on_thread"),
    [
        (hello, "get", False),  # headers only: no thread at all
        (issue_token, "get", False),  # a new CSRF cookie: still no I/O
        (write_session, "post", True),  # the session is saved: on the thread, as Django does
        (add_message, "post", True),  # storing messages may write the session
    ],
    ids=["hello", "csrf-cookie", "session-save", "messages"],
)
async def test_responses_match_djangos_and_threads_only_for_io(
    view: View, method: str, on_thread: bool
) -> None:
    factory = AsyncRequestFactory()
    loop_chain, stock = make_handler_chain(), stock_chain()
    results = []
    for chain in (loop_chain, stock):
        make = factory.get if method == "get" else factory.post
        request = make("/page", {"x": "1"})
        request._dont_enforce_csrf_checks = True
        results.append(await serve(chain, request, view))
    (loop_response, loop_leased), (stock_response, stock_leased) = results
    assert loop_response.status_code == 200
    assert shape(loop_response) == shape(stock_response)
    assert stock_leased  # Django's own chain hops for every hook
    assert loop_leased is on_thread


async def read_messages(request: HttpRequest) -> HttpResponse:
    return HttpResponse("|".join(str(m) for m in messages.get_messages(request)))


@pytest.mark.gen_test
@pytest.mark.usefixtures("default_stack")
async def test_the_message_storage_is_made_only_when_used_and_messages_still_arrive() -> None:
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.utils.functional import SimpleLazyObject, empty

    factory = AsyncRequestFactory()
    request = factory.get("/page")
    response, _ = await serve(make_handler_chain(), request, hello)
    storage = request._messages  # type: ignore[attr-defined]
    assert type(storage) is SimpleLazyObject and storage._wrapped is empty  # never made
    assert "messages" not in response.cookies

    request = factory.post("/page")
    request._dont_enforce_csrf_checks = True
    response, _ = await serve(make_handler_chain(), request, add_message)
    assert isinstance(request._messages._wrapped, FallbackStorage)  # type: ignore[attr-defined]
    cookie = response.cookies["messages"].value
    factory.cookies["messages"] = cookie  # the next request reads it back
    shown, _ = await serve(make_handler_chain(), factory.get("/next"), read_messages)
    assert shown.content == b"a note for the next page"
    assert shown.cookies["messages"].value == ""  # read: Django deletes the cookie


@pytest.mark.gen_test
@pytest.mark.usefixtures("default_stack")
async def test_a_saved_session_lands_in_the_database() -> None:
    request = AsyncRequestFactory().post("/page")
    request._dont_enforce_csrf_checks = True
    response, leased = await serve(make_handler_chain(), request, write_session)
    key = response.cookies[settings.SESSION_COOKIE_NAME].value
    session = await Session.objects.aget(session_key=key)
    assert session.get_decoded() == {"colour": "green"}
    assert leased


@pytest.mark.gen_test
@pytest.mark.usefixtures("default_stack")
async def test_csrf_is_enforced_on_the_loop_as_by_django() -> None:
    factory = AsyncRequestFactory()
    for chain in (make_handler_chain(), stock_chain()):
        refused, leased = await serve(chain, factory.post("/page", {"x": "1"}), post_form)
        assert refused.status_code == 403
        token = "a" * 32
        factory.cookies[settings.CSRF_COOKIE_NAME] = token
        request = factory.post("/page", {"x": "1"}, headers={"X-CSRFToken": token})
        accepted, _ = await serve(chain, request, post_form)
        del factory.cookies[settings.CSRF_COOKIE_NAME]
        assert accepted.status_code == 200 and accepted.content == b"got 1"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("overrides", "view"),
    [
        ({"CSRF_USE_SESSIONS": True}, issue_token),
        ({"SESSION_SAVE_EVERY_REQUEST": True}, issue_token),
        ({"MESSAGE_STORAGE": f"{STORAGE}.session.SessionStorage"}, add_message),
    ],
    ids=["csrf-in-session", "save-every-request", "session-messages"],
)
async def test_settings_that_add_io_send_hooks_to_the_thread(
    overrides: dict[str, Any], view: View
) -> None:
    with override_settings(
        MIDDLEWARE=DEFAULT_MIDDLEWARE, ALLOWED_HOSTS=["testserver"], **overrides
    ):
        factory = AsyncRequestFactory()
        request = factory.get("/page")
        response, leased = await serve(make_handler_chain(), request, view)
        assert response.status_code == 200
        assert leased  # the session (database) is written, so a thread did it
        stock_response, _ = await serve(stock_chain(), factory.get("/page"), view)
        assert shape(response) == shape(stock_response)


def test_a_project_subclass_keeps_djangos_behaviour() -> None:
    class Mine(MessageMiddleware):
        pass

    assert loop_variant(Mine) is Mine


# -- end to end: a DjangoHandler in a worker's application ------------------------------


@pytest.fixture
def app(http_port: int) -> Iterator[HybridApplication]:
    with override_settings(
        HYBRID_ROUTES="testproject.bridge_routes.routes", MIDDLEWARE=DEFAULT_MIDDLEWARE
    ):
        yield make_app(Config(db_threads=2), http_port)


@pytest.mark.gen_test
async def test_handler_without_database_work_never_takes_a_thread(
    http_client: AsyncHTTPClient, base_url: str, leases: Leases
) -> None:
    responses = await asyncio.gather(
        *(http_client.fetch(base_url + "/bridge/hello") for _ in range(20))
    )
    assert {response.body for response in responses} == {b"hello"}
    assert responses[0].headers["X-Frame-Options"] == "DENY"  # the middleware did run
    assert leases.count == 0


@pytest.mark.gen_test
async def test_cookies_set_by_middleware_on_the_loop_reach_the_client(
    http_client: AsyncHTTPClient, base_url: str, leases: Leases
) -> None:
    response = await http_client.fetch(base_url + "/bridge/whoami")  # reads+writes the session
    cookies = SimpleCookie(response.headers["Set-Cookie"])
    assert settings.SESSION_COOKIE_NAME in cookies
    assert leases.count == 1  # one lane for the whole request, leased at its first query
