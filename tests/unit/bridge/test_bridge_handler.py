"""DjangoHandler: Tornado handlers inside the project's Django middleware chain."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest
from django.test import override_settings
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from hybrid import Config, make_app
from hybrid.web import HybridApplication

ROUTES = "testproject.bridge_routes.routes"


@pytest.fixture
def app(http_port: int) -> Iterator[HybridApplication]:
    with override_settings(HYBRID_ROUTES=ROUTES):
        yield make_app(Config(db_threads=4), http_port)


def cookies_of(response: HTTPResponse) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        jar.load(header)
    return {key: morsel.value for key, morsel in jar.items()}


def session_for(*, superuser: bool) -> str:
    """A session cookie value of a fresh user logged in through Django's test client."""
    from django.contrib.auth.models import User
    from django.test import Client

    name = f"u{uuid.uuid4().hex[:10]}"
    if superuser:
        user = User.objects.create_superuser(name, password="pw")
    else:
        user = User.objects.create_user(name, password="pw")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


@pytest.fixture
def user_cookie() -> str:
    return session_for(superuser=False)


@pytest.fixture
def superuser_cookie() -> str:
    return session_for(superuser=True)


async def fetch(client: AsyncHTTPClient, url: str, **kwargs: object) -> HTTPResponse:
    kwargs.setdefault("raise_error", False)
    kwargs.setdefault("follow_redirects", False)
    return await client.fetch(url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.gen_test
async def test_session_survives_between_requests(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    first = await fetch(http_client, base_url + "/bridge/whoami?q=1")
    assert first.code == 200
    assert json.loads(first.body) == {"user": None, "visits": 1, "path": "/bridge/whoami", "q": "1"}
    session = cookies_of(first)["sessionid"]
    second = await fetch(
        http_client, base_url + "/bridge/whoami", headers={"Cookie": f"sessionid={session}"}
    )
    assert json.loads(second.body)["visits"] == 2


@pytest.mark.gen_test
async def test_logged_in_user_is_seen_through_auser(
    http_client: AsyncHTTPClient, base_url: str, user_cookie: str
) -> None:
    cookie = user_cookie
    response = await fetch(http_client, base_url + "/bridge/whoami", headers={"Cookie": cookie})
    assert json.loads(response.body)["user"].startswith("u")


@pytest.mark.gen_test
async def test_csrf_is_enforced_for_unsafe_methods(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    refused = await fetch(http_client, base_url + "/bridge/whoami", method="POST", body="x=1")
    assert refused.code == 403
    assert b"CSRF" in refused.body  # Django's CSRF failure page: the handler did not run

    token = cookies_of(await fetch(http_client, base_url + "/admin/login/"))["csrftoken"]
    accepted = await fetch(
        http_client,
        base_url + "/bridge/whoami",
        method="POST",
        body="x=1",
        headers={
            "Cookie": f"csrftoken={token}",
            "X-CSRFToken": token,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert accepted.code == 200
    assert json.loads(accepted.body) == {"posted": "1"}


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/bridge/exempt", "/bridge/items"])
async def test_exempt_handlers_accept_posts_without_a_token(
    http_client: AsyncHTTPClient, base_url: str, path: str
) -> None:
    body = "name=exempt" if path.endswith("items") else ""
    response = await fetch(http_client, base_url + path, method="POST", body=body)
    assert response.code in (200, 201)


@pytest.mark.gen_test
async def test_login_required_redirects_anonymous_users(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response = await fetch(http_client, base_url + "/bridge/private")
    assert response.code == 302
    assert response.headers["Location"] == "/accounts/login/?next=/bridge/private"


@pytest.mark.gen_test
async def test_login_required_lets_users_in(
    http_client: AsyncHTTPClient, base_url: str, user_cookie: str
) -> None:
    cookie = user_cookie
    response = await fetch(http_client, base_url + "/bridge/private", headers={"Cookie": cookie})
    assert response.code == 200
    assert json.loads(response.body)["user"].startswith("u")


@pytest.mark.gen_test
async def test_permission_required_refuses_and_admits(
    http_client: AsyncHTTPClient, base_url: str, user_cookie: str, superuser_cookie: str
) -> None:
    plain, boss = user_cookie, superuser_cookie
    refused = await fetch(http_client, base_url + "/bridge/staff", headers={"Cookie": plain})
    assert refused.code == 403
    admitted = await fetch(http_client, base_url + "/bridge/staff", headers={"Cookie": boss})
    assert admitted.code == 200
    assert json.loads(admitted.body) == {"allowed": True}


@pytest.mark.gen_test
async def test_handler_output_and_middleware_headers_reach_the_client(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response = await fetch(http_client, base_url + "/bridge/output")
    assert response.code == 202
    assert response.body == b"plain text"
    assert response.headers["X-Handler"] == "yes"
    assert cookies_of(response) == {"mine": "1", "other": "2"}
    assert len(response.headers.get_list("Set-Cookie")) == 2
    # SecurityMiddleware, XFrameOptionsMiddleware, and the project's own sync and async ones
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Async-Middleware"] == "yes"
    assert response.headers["X-Sync-Middleware"].startswith("hybrid-db-")
    assert response.headers["Content-Length"] == str(len(b"plain text"))
    assert "Etag" not in response.headers


@pytest.mark.gen_test
async def test_a_cleared_content_type_stays_cleared_and_repeated_headers_are_joined(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response = await fetch(http_client, base_url + "/bridge/bare")
    assert response.code == 200
    assert response.body == b"raw"
    assert "Content-Type" not in response.headers
    assert response.headers.get_list("X-Twice") == ["a, b"]
    assert response.headers["X-Frame-Options"] == "DENY"  # through the middleware


@pytest.mark.gen_test
async def test_redirect_from_a_handler_passes_through_middleware(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    token = "a" * 32
    response = await fetch(
        http_client,
        base_url + "/bridge/output",
        method="DELETE",
        headers={"Cookie": f"csrftoken={token}", "X-CSRFToken": token},
    )
    assert response.code == 302
    assert response.headers["Location"] == "/elsewhere"
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.gen_test
async def test_errors_keep_tornado_and_django_meanings(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    teapot = await fetch(http_client, base_url + "/bridge/errors/tornado")
    assert teapot.code == 418
    assert teapot.headers["X-Frame-Options"] == "DENY"  # the error page went through Django
    missing = await fetch(http_client, base_url + "/bridge/errors/django404")
    assert missing.code == 404
    with caplog.at_level(logging.ERROR, logger="django.request"):
        broken = await fetch(http_client, base_url + "/bridge/errors/boom")
    assert broken.code == 500
    assert b"boom" not in broken.body  # DEBUG is off: no traceback for the client
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.gen_test(timeout=10)
async def test_flushed_output_streams_through_middleware(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    arrivals: list[tuple[float, bytes]] = []
    response = await http_client.fetch(
        base_url + "/bridge/stream",
        streaming_callback=lambda chunk: arrivals.append((time.monotonic(), chunk)),
    )
    assert b"".join(c for _, c in arrivals) == b"part 0\npart 1\npart 2\n"
    assert arrivals[-1][0] - arrivals[0][0] > 0.4  # the first part did not wait for the last
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Async-Middleware"] == "yes"


@pytest.mark.gen_test
async def test_asyncio_timeout_and_task_groups_work_in_handler_methods(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response = await fetch(http_client, base_url + "/bridge/deadline")
    assert response.code == 200, response.body
    assert json.loads(response.body) == {"timed_out": True, "child": "child"}


@pytest.mark.parametrize(("force", "prefix"), [(None, "/"), ("/app", "/app/")])
@pytest.mark.gen_test
async def test_script_prefix_follows_force_script_name_as_in_django(
    http_client: AsyncHTTPClient, base_url: str, force: str | None, prefix: str
) -> None:
    with override_settings(FORCE_SCRIPT_NAME=force):
        response = await fetch(http_client, base_url + "/bridge/prefix")
    assert response.code == 200, response.body
    # reverse() prefixes FORCE_SCRIPT_NAME; request.path is the scope's path (as in Django)
    assert json.loads(response.body) == {"prefix": prefix, "path": "/bridge/prefix"}
