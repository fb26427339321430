"""The access log's format atoms, its destinations, and the request id (hybrid.accesslog)."""

from __future__ import annotations

import base64
import logging
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from hybrid import ConfigError
from hybrid.accesslog import (
    AccessLog,
    compile_format,
    default_line,
    ensure_request_id,
    new_request_id,
)


class FakeHandler:
    """What the formatter reads of a tornado RequestHandler."""

    def __init__(
        self,
        request: HTTPServerRequest,
        status: int = 200,
        response_headers: dict[str, str] | None = None,
    ) -> None:
        self.request = request
        self._status = status
        self._headers = HTTPHeaders(response_headers or {})

    def get_status(self) -> int:
        return self._status


def make_handler(
    uri: str = "/shop/cart?item=3",
    headers: dict[str, str] | None = None,
    status: int = 200,
    response_headers: dict[str, str] | None = None,
    elapsed: float = 0.012345,
) -> FakeHandler:
    request = HTTPServerRequest(
        start_line=RequestStartLine("POST", uri, "HTTP/1.1"),
        headers=HTTPHeaders({"Host": "example.com", **(headers or {})}),
    )
    request.remote_ip = "203.0.113.7"
    request.request_time = lambda: elapsed  # type: ignore[method-assign]
    return FakeHandler(request, status, response_headers)


def line(fmt: str, handler: FakeHandler) -> str:
    return compile_format(fmt)(handler)  # type: ignore[arg-type]


def test_every_atom() -> None:
    handler = make_handler(
        headers={
            "Referer": "https://example.com/",
            "User-Agent": "curl/8",
            "X-Request-ID": "abc",
            "Authorization": "Basic " + base64.b64encode(b"alice:secret").decode(),
        },
        status=201,
        response_headers={"Content-Length": "1234", "Content-Type": "text/html"},
    )
    fmt = (
        '%(h)s %(l)s %(u)s "%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s "%(f)s" "%(a)s" '
        "%(T)s %(M)s %(D)s %(L)s %({x-request-id}i)s %({content-type}o)s"
    )
    assert line(fmt, handler) == (
        '203.0.113.7 - alice "POST /shop/cart?item=3 HTTP/1.1" POST /shop/cart item=3 HTTP/1.1 '
        '201 1234 1234 "https://example.com/" "curl/8" 0 12 12345 0.012345 abc text/html'
    )
    assert line("%(p)s", handler) == f"<{os.getpid()}>"
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", line("%(t)s", handler))


def test_missing_values_are_dashes() -> None:
    handler = make_handler(uri="/", response_headers={})
    fmt = '%(u)s "%(f)s" "%(a)s" %(b)s %(B)s %({x-none}i)s %({x-none}o)s %({HYBRID_UNSET_X}e)s'
    assert line(fmt, handler) == '- "-" "-" - 0 - - -'
    assert line("%(q)s|", handler) == "|"


def test_environment_variable_atom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_SITE", "blue")
    assert line("%({HYBRID_SITE}e)s", make_handler()) == "blue"


def test_percent_signs_and_plain_text() -> None:
    assert line("100%% %(s)s done", make_handler()) == "100% 200 done"
    assert line("no atoms", make_handler()) == "no atoms"


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("%(zz)s", "unknown atom %(zz)s"),
        ("%({}i)s", "unknown atom %({}i)s"),
        ("%({x}z)s", "unknown atom %({x}z)s"),
        ("%(h", "unbalanced %( at character 1"),
        ("%(h)d", "unbalanced %( at character 1"),
        ("50% off", "lone % at character 3"),
        ("%(h)s %", "lone % at character 7"),
    ],
)
def test_bad_formats_are_one_line_config_errors(fmt: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compile_format(fmt)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.option == "--access-log-format"


def test_default_line_is_the_one_hybrid_always_wrote() -> None:
    handler = make_handler(uri="/a?b=1", status=404)
    assert default_line(handler, 8001) == "POST /a?b=1 404 12.3ms port=8001"  # type: ignore[arg-type]
    handler.__dict__["_hybrid_timed_out"] = True
    assert default_line(handler, 8001).endswith("port=8001 timeout")  # type: ignore[arg-type]


def test_a_sane_request_id_is_kept() -> None:
    headers = HTTPHeaders({"X-Request-ID": "req-42 from the balancer"})
    assert ensure_request_id(headers) == "req-42 from the balancer"
    assert headers["X-Request-Id"] == "req-42 from the balancer"


@pytest.mark.parametrize("given", [None, "", "a" * 201, "tab\there", "caf\u00e9"])
def test_a_missing_or_odd_request_id_is_replaced(given: str | None) -> None:
    headers = HTTPHeaders()
    if given is not None:
        headers["X-Request-ID"] = given
    made = ensure_request_id(headers)
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert headers.get_list("X-Request-Id") == [made]


def test_a_request_id_of_200_characters_is_kept() -> None:
    assert ensure_request_id(HTTPHeaders({"X-Request-ID": "a" * 200})) == "a" * 200


def test_lines_go_to_the_logger_at_the_status_level(caplog: pytest.LogCaptureFixture) -> None:
    access = AccessLog("-", "%(s)s %(U)s")
    assert not access.plain
    with caplog.at_level(logging.INFO, logger="hybrid.access"):
        access.write(make_handler(uri="/ok"), 8001)  # type: ignore[arg-type]
        access.write(make_handler(uri="/gone", status=404), 8001)  # type: ignore[arg-type]
        access.write(make_handler(uri="/bug", status=500), 8001)  # type: ignore[arg-type]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "200 /ok"),
        ("WARNING", "404 /gone"),
        ("ERROR", "500 /bug"),
    ]


def test_off_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    access = AccessLog("off", None)
    with caplog.at_level(logging.DEBUG, logger="hybrid.access"):
        access.write(make_handler(), 8001)  # type: ignore[arg-type]
        access.emit("GET / 431 ...", 431)
    assert caplog.records == []


def test_the_default_is_plain() -> None:
    assert AccessLog().plain and AccessLog("-", None).plain
    assert not AccessLog("/tmp/x.log", None).plain


def test_a_file_gets_lines_and_is_reopened_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access = AccessLog(str(path), None)
    access.open()
    access.write(make_handler(uri="/one"), 8001)  # type: ignore[arg-type]
    path.rename(tmp_path / "access.log.1")  # what logrotate does
    access.write(make_handler(uri="/two"), 8001)  # type: ignore[arg-type]
    access.reopen()  # SIGUSR1
    access.write(make_handler(uri="/three"), 8001)  # type: ignore[arg-type]
    access.close()
    rotated = (tmp_path / "access.log.1").read_text().splitlines()
    assert rotated == ["POST /one 200 12.3ms port=8001", "POST /two 200 12.3ms port=8001"]
    assert path.read_text().splitlines() == ["POST /three 200 12.3ms port=8001"]


def test_a_file_that_cannot_be_reopened_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    access = AccessLog(str(directory / "access.log"), None)
    access.open()
    (directory / "access.log").unlink()
    directory.rmdir()
    with caplog.at_level(logging.ERROR, logger="hybrid.general"):
        access.reopen()
        for _ in range(3):
            access.write(make_handler(), 8001)  # type: ignore[arg-type]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # the reopen, then the first failed write only
    assert "cannot reopen" in messages[0] and "cannot write" in messages[1]


def test_the_default_format_costs_no_more_than_before() -> None:
    """The default line is the same one-liner as before; a compiled format is a template
    and a list of getters, not a parse per request."""
    handler = make_handler()
    fmt = compile_format('%(h)s "%(r)s" %(s)s %(b)s %(M)sms %({x-request-id}i)s')
    assert fmt.template == '%s "%s" %s %s %sms %s'
    started = time.perf_counter()
    for _ in range(10_000):
        fmt(handler)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 1.0  # about 0.03 s; a generous bound


def test_new_request_ids_are_uuid4_hex() -> None:
    made = {new_request_id() for _ in range(1000)}
    assert len(made) == 1000
    for request_id in made:
        parsed = uuid.UUID(request_id)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, request_id)
