"""Parity: plain Django views answer the same through hybrid as through Django's test Client.

The guard for the bridge. Each case is sent twice: to Django's test
``Client`` (Django's own request handling, no network) and over HTTP to hybrid's in-process
application (``hybrid.make_app``: Tornado, the Django fallback, Django's ``ASGIHandler``).
Status, headers, cookies and body must match, except for what the transport adds:

* ``Date`` and ``Server``: written by Tornado's HTTP server on every response; Django's test
  Client has no server to write them.
* ``Transfer-Encoding: chunked``: how HTTP/1.1 frames a streaming body of unknown length.
  The test Client hands over the iterator instead.
* ``Connection``: hop-by-hop (RFC 9110 7.6.1); Tornado answers ``Connection: close`` to
  a client that asked for it, a choice about the TCP connection, not the response.

Only these are ignored: a
  ``Content-Length`` that Django sets (``CommonMiddleware``) must come through unchanged,
  and hybrid must not add one that Django did not send (HEAD and 204 included).

The test project's own sync middleware stamps ``X-Sync-Middleware`` with the name of the
thread that ran it (a database lane under hybrid, a plain thread under the test Client);
its presence is compared, its value not. Cookies are compared as the exact ``Set-Cookie``
lines, in any order (Django's test Client keeps them in ``response.cookies``, not among the
headers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from hybrid import Config, make_app
from hybrid.web import HybridApplication

#: Headers only the transport adds (see the module docstring), and the request id hybrid
#: puts on every response (hybrid.accesslog).
TRANSPORT_HEADERS = {"date", "server", "transfer-encoding", "connection", "x-request-id"}
#: The test project's sync middleware stamps the name of the thread that ran it.
THREAD_STAMP = "x-sync-middleware"

FORM = "application/x-www-form-urlencoded"

CASES: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/parity/text", {}, None),
    ("GET", "/parity/json", {}, None),
    ("GET", "/parity/redirect", {}, None),
    ("GET", "/parity/missing", {}, None),
    ("GET", "/parity/no-such-page", {}, None),
    ("POST", "/parity/form", {"Content-Type": FORM}, b"a=1&a=2&b=%C3%A9&empty="),
    ("GET", "/parity/form", {}, None),
    ("GET", "/parity/cookies", {}, None),
    ("GET", "/parity/headers", {"X-Agent": "parity/1.0"}, None),
    ("GET", "/parity/template?q=%3Cb%3E", {}, None),
    ("HEAD", "/parity/text", {}, None),
    ("HEAD", "/parity/template", {}, None),
    ("GET", "/parity/query?a=1&a=2&b=%C3%A9&c=&d&e=x%2By+z", {}, None),
    ("GET", "/parity/stream", {}, None),
    ("GET", "/parity/empty", {}, None),
]


@pytest.fixture
def app(http_port: int) -> Iterator[HybridApplication]:
    yield make_app(Config(db_threads=2), http_port)


def normalise(headers: list[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """(headers but cookies, lower-cased names; sorted Set-Cookie lines), transport ignored."""
    plain: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        name = name.lower()
        if name == "set-cookie":
            cookies.append(value)
        elif name not in TRANSPORT_HEADERS:
            assert name not in plain, f"{name} sent twice"
            plain[name] = value if name != THREAD_STAMP else "(a thread)"
    return plain, sorted(cookies)


def through_django(
    host: str, method: str, path: str, headers: dict[str, str], body: bytes | None
) -> tuple[int, dict[str, str], list[str], bytes]:
    from django.test import Client

    client = Client(HTTP_HOST=host)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    content_type = extra.pop("HTTP_CONTENT_TYPE", "application/octet-stream")
    response = client.generic(method, path, body or b"", content_type=content_type, **extra)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    response.close()
    lines = [(name, value) for name, value in response.items()]
    lines += [("Set-Cookie", m.output(header="").strip()) for m in response.cookies.values()]
    plain, cookies = normalise(lines)
    return response.status_code, plain, cookies, content


def through_hybrid(response: HTTPResponse) -> tuple[int, dict[str, str], list[str], bytes]:
    plain, cookies = normalise(list(response.headers.get_all()))
    return response.code, plain, cookies, response.body


@pytest.mark.gen_test
@pytest.mark.parametrize(("method", "path", "headers", "body"), CASES)
async def test_same_response_as_djangos_test_client(
    http_client: AsyncHTTPClient,
    base_url: str,
    http_port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
) -> None:
    host = f"127.0.0.1:{http_port}"
    # The test Client is synchronous: run it off the loop, as Django's tests would.
    expected = await asyncio.to_thread(through_django, host, method, path, headers, body)
    response = await http_client.fetch(
        base_url + path,
        method=method,
        headers=headers,
        body=body,
        raise_error=False,
        follow_redirects=False,
        decompress_response=False,
    )
    actual = through_hybrid(response)
    assert actual[0] == expected[0], "status"
    assert actual[1] == expected[1], "headers"
    assert actual[2] == expected[2], "cookies"
    assert actual[3] == expected[3], "body"


def test_the_cases_cover_what_the_parity_suite_promises() -> None:
    paths = {path.split("?")[0] for _, path, _, _ in CASES}
    methods = {method for method, _, _, _ in CASES}
    assert {"GET", "POST", "HEAD"} <= methods
    for view in ("text", "json", "redirect", "missing", "form", "cookies", "headers"):
        assert f"/parity/{view}" in paths
    assert {"/parity/template", "/parity/query", "/parity/stream"} <= paths
