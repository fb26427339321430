"""One worker's application: hybrid routes first, the Django project behind them."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from hybrid import Config, make_app
from hybrid.errors import AppLoadError
from hybrid.web import HybridApplication, load_routes


@pytest.fixture
def app(http_port: int) -> HybridApplication:
    return make_app(Config(), http_port)


async def fetch_json(client: AsyncHTTPClient, url: str, **kwargs: object) -> dict[str, object]:
    response = await client.fetch(url, **kwargs)
    return dict(json.loads(response.body))


@pytest.mark.gen_test
async def test_hybrid_route_is_served_by_its_tornado_handler(
    http_client: AsyncHTTPClient, base_url: str, http_port: int
) -> None:
    body = await fetch_json(http_client, base_url + "/hybrid/pid")
    assert body["port"] == http_port


@pytest.mark.gen_test
async def test_unmatched_url_goes_to_the_django_urlconf(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    body = await fetch_json(http_client, base_url + "/django/pid")
    assert body["via"] == "django"


@pytest.mark.gen_test
async def test_unknown_url_is_djangos_404(http_client: AsyncHTTPClient, base_url: str) -> None:
    with pytest.raises(HTTPClientError) as info:
        await http_client.fetch(base_url + "/nowhere")
    assert info.value.code == 404
    assert info.value.response is not None
    assert b"Not Found" in info.value.response.body


@pytest.mark.gen_test
async def test_admin_login_page_comes_from_django(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response = await http_client.fetch(base_url + "/admin/login/")
    assert b"csrfmiddlewaretoken" in response.body
    assert any(c.startswith("csrftoken=") for c in response.headers.get_list("Set-Cookie"))
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Etag" not in response.headers  # Django decides about ETags, not Tornado


@pytest.mark.gen_test(timeout=10)
async def test_sync_django_view_does_not_block_hybrid_routes(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    slow = asyncio.ensure_future(http_client.fetch(base_url + "/django/slow?s=1"))
    await asyncio.sleep(0.1)  # the slow view is now sleeping in its thread
    started = time.monotonic()
    await http_client.fetch(base_url + "/hybrid/pid")
    await http_client.fetch(base_url + "/django/async")
    fast = time.monotonic() - started
    assert not slow.done()
    assert fast < 0.5, f"hybrid route waited {fast:.2f}s behind a sync Django view"
    assert json.loads((await slow).body) == {"slept": True}


@pytest.mark.gen_test(timeout=10)
async def test_streaming_response_arrives_chunk_by_chunk(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    arrivals: list[tuple[float, bytes]] = []
    await http_client.fetch(
        base_url + "/django/stream",
        streaming_callback=lambda chunk: arrivals.append((time.monotonic(), chunk)),
    )
    assert b"".join(c for _, c in arrivals) == b"chunk 0\nchunk 1\nchunk 2\n"
    assert len(arrivals) >= 3
    assert arrivals[-1][0] - arrivals[0][0] > 0.4  # the first chunk did not wait for the last


@pytest.mark.gen_test(timeout=10)
async def test_client_disconnect_stops_a_streaming_django_view(
    http_server: object, http_port: int
) -> None:
    from testproject import views

    reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
    writer.write(b"GET /django/forever HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    assert b"tick" in await asyncio.wait_for(reader.readuntil(b"tick"), timeout=5)
    writer.close()
    await asyncio.wait_for(views.forever_closed.wait(), timeout=2)


@pytest.mark.gen_test
async def test_post_body_headers_and_cookies_round_trip(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response = await http_client.fetch(
        base_url + "/django/echo",
        method="POST",
        body="a=1&b=%C3%BC",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = json.loads(response.body)
    assert body["method"] == "POST"
    assert body["post"] == {"a": "1", "b": "ü"}
    assert body["remote_addr"] == "127.0.0.1"
    assert body["scheme"] == "http"
    assert response.headers["X-Echo"] == "yes"
    cookies = response.headers.get_list("Set-Cookie")
    assert [c.split(";")[0] for c in cookies] == ["first=1", "second=2"]


@pytest.mark.gen_test
async def test_django_csrf_middleware_runs_for_fallback_views(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    with pytest.raises(HTTPClientError) as info:
        await http_client.fetch(base_url + "/django/protected", method="POST", body="x=1")
    assert info.value.code == 403


@pytest.mark.gen_test
async def test_head_request_has_headers_and_no_body(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response = await http_client.fetch(base_url + "/django/pid", method="HEAD")
    assert response.code == 200
    assert response.body == b""
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.gen_test
async def test_percent_encoded_unicode_path_and_query_reach_django(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    body = await fetch_json(http_client, base_url + "/django/%C3%BCn%C3%AFcode?q=%E2%9C%93")
    assert body == {"async": True, "path": "/django/ünïcode", "q": "✓"}


def test_load_routes_reports_an_import_error_inside_the_module() -> None:
    with pytest.raises(AppLoadError) as info:
        load_routes("testproject.broken_routes.routes")
    message = str(info.value)
    assert "HYBRID_ROUTES = 'testproject.broken_routes.routes'" in message
    assert "No module named 'hybrid_no_such_module'" in message
    assert "broken_routes.py:3" in message
    assert info.value.target == "testproject.broken_routes.routes"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "testproject.routes.no_such_list",
            "module 'testproject.routes' has no attribute "
            "'no_such_list'; define it there or fix the setting",
        ),
        ("no_such_pkg.routes.routes", "no module named 'no_such_pkg.routes'"),
        ("routes", "must be a dotted path"),
        ("testproject.settings.SECRET_KEY", "is a str, not a list of Tornado URL specs"),
    ],
)
def test_load_routes_says_what_is_wrong_with_the_setting(path: str, message: str) -> None:
    with pytest.raises(AppLoadError) as info:
        load_routes(path)
    assert message in str(info.value)


def test_load_routes_returns_the_list() -> None:
    routes = load_routes("testproject.routes.routes")
    assert "/hybrid/pid" in [r[0] for r in routes]
