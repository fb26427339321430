"""--request-timeout: a request past its deadline is cancelled and answered 504."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.web import RequestHandler
from waiting import until

from hybrid import Config, DjangoHandler, run_command, run_sync
from hybrid.bridge.fallback import DjangoFallbackHandler, make_asgi_handler
from hybrid.lanes import lane_pool
from hybrid.timeouts import route_timeout
from hybrid.web import HybridApplication

TIMEOUT = 0.5
DB_THREADS = 2
#: A command line no other process has: the test looks for it in /proc.
SLEEP = "31.4159"


class Sleep(RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s")))
        self.write("slept")


class Quick(Sleep):
    request_timeout = 0.2


class Unbounded(Sleep):
    request_timeout = None


class Stream(RequestHandler):
    async def get(self) -> None:
        self.write("started\n")
        await self.flush()
        await asyncio.sleep(30)


class Command(RequestHandler):
    async def get(self) -> None:
        await run_command(["sleep", SLEEP], timeout=60)


class DjangoSleep(DjangoHandler):
    async def get(self) -> None:
        await run_sync(time.sleep, 0.01)  # holds a database thread from here
        await asyncio.sleep(30)


class DjangoStream(DjangoHandler):
    async def get(self) -> None:
        self.write("started\n")
        await self.flush()
        await asyncio.sleep(30)


@pytest.fixture
def app(http_port: int) -> HybridApplication:
    routes = [
        (r"/sleep", Sleep),
        (r"/quick", Quick),
        (r"/unbounded", Unbounded),
        (r"/stream", Stream),
        (r"/command", Command),
        (r"/django-sleep", DjangoSleep),
        (r"/django-stream", DjangoStream),
        (r".*", DjangoFallbackHandler, {"asgi_app": make_asgi_handler(DB_THREADS)}),
    ]
    config = Config(request_timeout=TIMEOUT, db_threads=DB_THREADS)
    return HybridApplication(routes, config=config, port=http_port)


async def timed_fetch(client: AsyncHTTPClient, url: str) -> tuple[HTTPResponse, float]:
    started = time.monotonic()
    response = await client.fetch(url, raise_error=False, request_timeout=10)
    return response, time.monotonic() - started


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hybrid.access"]


@pytest.mark.gen_test(timeout=10)
async def test_plain_handler_past_the_deadline_gets_504_and_a_timeout_log_line(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hybrid.access"):
        response, took = await timed_fetch(http_client, base_url + "/sleep?s=5")
        fast, _ = await timed_fetch(http_client, base_url + "/sleep?s=0.01")
    assert response.code == 504
    assert TIMEOUT <= took < TIMEOUT + 0.4
    assert fast.code == 200
    [line, fast_line] = access_lines(caplog)
    assert line.startswith("GET /sleep?s=5 504 ") and line.endswith(" timeout")
    assert not fast_line.endswith(" timeout")


@pytest.mark.gen_test(timeout=10)
async def test_handler_class_overrides_the_timeout(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    quick, took = await timed_fetch(http_client, base_url + "/quick?s=5")
    assert quick.code == 504
    assert took < TIMEOUT
    unbounded, took = await timed_fetch(http_client, base_url + "/unbounded?s=0.8")
    assert unbounded.code == 200
    assert took >= 0.8


@pytest.mark.gen_test(timeout=10)
async def test_streaming_response_that_started_is_cut_off(
    http_port: int, http_server: object, caplog: pytest.LogCaptureFixture
) -> None:
    from testproject import views

    marks = {"/stream": b"started", "/django-stream": b"started", "/django/forever": b"tick"}
    for path, mark in marks.items():
        reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        with caplog.at_level(logging.INFO, logger="hybrid.access"):
            received = await asyncio.wait_for(reader.read(), timeout=5)  # until closed
        writer.close()
        assert received.startswith(b"HTTP/1.1 200 "), path
        assert mark in received
        assert not received.endswith(b"0\r\n\r\n"), "the response must not look complete"
    lines = access_lines(caplog)
    assert len(lines) == 3
    assert all(" 200 " in line and line.endswith(" timeout") for line in lines)
    await asyncio.wait_for(views.forever_closed.wait(), timeout=3)  # Django's view stopped


def sleeping_commands() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if cmdline.read() == b"sleep\0" + SLEEP.encode() + b"\0":
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.gen_test(timeout=10)
async def test_commands_of_a_cancelled_request_are_killed(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response, _ = await timed_fetch(http_client, base_url + "/command")
    assert response.code == 504
    await until(lambda: not sleeping_commands(), timeout=5)


@pytest.mark.gen_test(timeout=10)
async def test_django_handler_is_cancelled_and_its_database_thread_released(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    response, took = await timed_fetch(http_client, base_url + "/django-sleep")
    assert response.code == 504
    assert took < TIMEOUT + 0.4
    await until(lambda: lane_pool(DB_THREADS).busy == 0, timeout=2)


@pytest.mark.gen_test(timeout=10)
async def test_django_fallback_view_past_the_deadline_gets_504(
    http_client: AsyncHTTPClient, base_url: str
) -> None:
    slow, took = await timed_fetch(http_client, base_url + "/django/slow?s=1")
    assert slow.code == 504
    assert took < 1.0  # answered at the deadline, while the sync view still sleeps


def test_route_timeout_reads_the_class_then_the_option() -> None:
    assert route_timeout(Sleep, 0) is None
    assert route_timeout(Sleep, 2.5) == 2.5
    assert route_timeout(Quick, 0) == 0.2
    assert route_timeout(Unbounded, 30) is None

    class Bad(RequestHandler):
        request_timeout = "5"

    with pytest.raises(TypeError, match="request_timeout = '5': use a number of seconds"):
        route_timeout(Bad, 0)


def test_no_timeout_serves_the_class_itself() -> None:
    app = HybridApplication([(r"/sleep", Sleep)], config=Config())
    from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

    request = HTTPServerRequest(
        start_line=RequestStartLine("GET", "/sleep", "HTTP/1.1"),
        headers=HTTPHeaders({"Host": "127.0.0.1"}),
    )
    delegate = app.get_handler_delegate(request, Sleep)
    assert delegate.handler_class is Sleep
