"""hybrid.watchdog: what a worker's blocked loop is running, read from its stack."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.web import Application, RequestHandler

from hybrid.protocol import Blocked
from hybrid.watchdog import Watchdog, blocking_request


class _Connection:
    def set_close_callback(self, callback: Any) -> None:
        pass


def make_handler(method: str = "GET", uri: str = "/stuck?token=secret") -> RequestHandler:
    request = HTTPServerRequest(
        headers=HTTPHeaders({"Host": "127.0.0.1"}),
        connection=_Connection(),  # type: ignore[arg-type]
        start_line=RequestStartLine(method, uri, "HTTP/1.1"),
    )
    request._start_time -= 2.5  # as if it had started 2.5 s ago
    return RequestHandler(Application(), request)


class Stuck(RequestHandler):
    def get(self) -> Blocked:
        return deep_library_call()


def deep_library_call() -> Blocked:
    return blocking_request(sys._getframe())


def test_a_handler_on_the_stack_is_the_request() -> None:
    handler = make_handler()
    handler.__class__ = Stuck
    report = Stuck.get(handler)  # type: ignore[arg-type]
    assert (report.method, report.path) == ("GET", "/stuck")  # no query string
    assert report.age is not None and 2.5 <= report.age < 10
    assert report.where.startswith(f"{__file__}:")
    assert report.where.endswith(" in deep_library_call")


def test_a_django_request_is_found_without_its_age() -> None:
    class DjangoRequest:
        method = "POST"
        path = "/django/view"

    def view(request: object) -> Blocked:
        return blocking_request(sys._getframe())

    report = view(DjangoRequest())
    assert (report.method, report.path, report.age) == ("POST", "/django/view", None)
    assert report.where.endswith(" in view")


def test_no_request_on_the_stack_still_says_where() -> None:
    report = blocking_request(sys._getframe())
    assert (report.method, report.path, report.age) == ("", "", None)
    assert f"{__file__}:" in report.where


def test_the_watchdog_reports_a_blocked_thread_once_per_stall() -> None:
    reports: list[Blocked] = []
    handler = make_handler("PUT", "/slow")
    done = threading.Event()

    def blocked_loop() -> None:
        watchdog = Watchdog(0.05, reports.append)
        watchdog.start()  # watches this thread
        try:
            serve(handler)  # blocks without beating
            watchdog.beat()
            time.sleep(0.3)  # a second stall, with no request on the stack
        finally:
            watchdog.stop()
            done.set()

    def serve(self: RequestHandler) -> None:
        time.sleep(0.4)

    thread = threading.Thread(target=blocked_loop)
    thread.start()
    thread.join(10)
    assert done.is_set()
    # One report for the 0.4 s stall (eight intervals), one for the sleep after the beat.
    assert len(reports) == 2
    first = reports[0]
    assert (first.method, first.path) == ("PUT", "/slow")
    assert first.where.endswith(" in serve")
    assert reports[1].method == "" and reports[1].where.endswith(" in blocked_loop")


def test_a_beating_loop_is_never_reported() -> None:
    reports: list[Blocked] = []
    watchdog = Watchdog(0.05, reports.append)
    watchdog.start()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        watchdog.beat()
        time.sleep(0.02)
    watchdog.stop()
    assert reports == []
