"""The Tornado and Python internals hybrid declares, on the versions installed here.

Every probe passes on the supported versions; taking one internal away from the real
class makes the startup check fail in one line naming the library, its version and the
name that is gone. And outside :mod:`hybrid._compat` no module reaches those names.
"""

from __future__ import annotations

import ast
import asyncio
import platform
import sys
from pathlib import Path
from typing import Any

import pytest
import tornado
import tornado.httpserver
from tornado.web import RequestHandler

import hybrid
from hybrid import errors
from hybrid._compat import asyncio as asyncio_compat
from hybrid._compat import check
from hybrid._compat import tornado as tornado_compat


def test_the_installed_versions_are_the_verified_ones() -> None:
    tornado_library = tornado_compat.library()
    python_library = asyncio_compat.library()
    assert tornado_library is not None and python_library is not None
    series = ".".join(tornado.version.split(".")[:2])
    assert series in tornado_library.verified
    assert python_library.version() == platform.python_version()
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in python_library.verified
    check()


def _error() -> errors.UnsupportedVersionError:
    with pytest.raises(hybrid.UnsupportedVersionError) as info:
        check()
    return info.value


def test_a_method_gone_from_tornado_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(tornado.httpserver._HTTPRequestContext, "_unapply_xheaders")
    error = _error()
    message = str(error)
    assert message.startswith(
        f"hybrid {hybrid.__version__} does not support tornado {tornado.version}: missing "
        "tornado.httpserver._HTTPRequestContext._apply_xheaders/_unapply_xheaders ("
    )
    assert message.endswith("Verified on tornado 6.5, 6.6: pip install 'tornado>=6.5.10,<7'")
    assert (error.library, error.version) == ("tornado", tornado.version)
    assert len(error.missing) == 1


def test_an_instance_attribute_gone_from_tornado_fails_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear = RequestHandler.clear

    def clear_without_buffer(self: RequestHandler) -> None:
        clear(self)
        del self._write_buffer

    monkeypatch.setattr(RequestHandler, "clear", clear_without_buffer)
    error = _error()
    assert error.library == "tornado"
    assert error.missing == [
        "tornado.web.RequestHandler._write_buffer "
        "(DjangoHandler makes what a handler writes the Django response's body)"
    ]
    assert "tornado.web.RequestHandler._write_buffer" in str(error)


def test_a_hook_tornado_stopped_calling_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # Still defined, but finish() no longer calls it: the override would do nothing.
    finish = RequestHandler.finish

    def finish_without_hook(self: RequestHandler, chunk: Any = None) -> Any:
        return finish(self, chunk)

    monkeypatch.setattr(RequestHandler, "finish", finish_without_hook)
    error = _error()
    # (The replacement also hides the other steps of finish() DjangoHandler relies on.)
    assert [m.split(" (")[0] for m in error.missing] == [
        "tornado.web.RequestHandler.finish/flush: _transforms, _headers_written,"
        " _status_code, _log(), _break_cycles()",
        "tornado.web.RequestHandler._clear_representation_headers",
    ]


def test_a_python_internal_gone_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(asyncio.StreamReader, "_maybe_resume_transport")
    error = _error()
    assert str(error).startswith(
        f"hybrid {hybrid.__version__} does not support Python {platform.python_version()}: "
        "missing asyncio.StreamReader._buffer/_exception/_maybe_resume_transport ("
    )
    assert error.library == "Python"
    assert asyncio_compat.reader_buffer_usable() is False


def test_the_error_is_part_of_the_public_api() -> None:
    assert hybrid.UnsupportedVersionError is errors.UnsupportedVersionError
    assert "UnsupportedVersionError" in hybrid.__all__
    assert issubclass(hybrid.UnsupportedVersionError, hybrid.HybridError)


# -- what the compat functions do ------------------------------------------------------


def test_the_bodiless_statuses_are_tornados() -> None:
    rule = getattr(RequestHandler, "_should_not_send_content", None)
    for status in range(100, 600):
        expected = status in (204, 304) or status < 200
        assert tornado_compat.should_not_send_content(status) is expected
        if rule is not None:  # tornado 6.6; 6.5 has the rule inline in finish()
            assert rule(None, status) is expected


def test_output_round_trips_through_the_handler() -> None:
    handler = tornado_compat._handler()
    handler.write(b"ab")
    handler.write("c")
    assert tornado_compat.take_output(handler) == b"abc"
    assert tornado_compat.take_output(handler) == b""
    assert tornado_compat.replace_output(handler, [b"x"]) == []
    assert tornado_compat.replace_output(handler, []) == [b"x"]
    handler.set_status(418, "Teapot")
    assert (handler.get_status(), tornado_compat.reason(handler)) == (418, "Teapot")
    assert tornado_compat.new_cookies(handler) is None
    handler.set_cookie("k", "v")
    cookies = tornado_compat.new_cookies(handler)
    assert cookies is not None and cookies["k"].value == "v"
    tornado_compat.forget_new_cookies(handler)
    tornado_compat.forget_new_cookies(handler)  # twice is fine
    assert tornado_compat.new_cookies(handler) is None
    handler.set_header("X-A", "1")
    assert tornado_compat.response_headers(handler)["X-A"] == "1"
    tornado_compat.reset_headers(handler)
    assert list(tornado_compat.response_headers(handler).get_all()) == []
    assert tornado_compat.is_finished(handler) is False
    tornado_compat.set_finished(handler, True)
    with pytest.raises(RuntimeError, match="after finish"):
        handler.write(b"late")


def test_representation_headers_stay_on_decorated_handlers_only() -> None:
    @tornado_compat.keep_representation_headers
    class Keeping(RequestHandler):
        pass

    class Subclass(Keeping):
        pass

    sample = tornado_compat._handler()
    for cls, kept in ((Keeping, True), (Subclass, True), (RequestHandler, False)):
        handler = cls(sample.application, sample.request)
        handler.set_header("Content-Type", "application/json")
        handler._clear_representation_headers()
        assert ("Content-Type" in tornado_compat.response_headers(handler)) is kept


# -- nothing outside hybrid._compat reaches these names --------------------------------

#: Private names of Tornado and Python that hybrid uses, only through hybrid._compat.
_REACHED = {
    "_apply_xheaders",
    "_buffer",
    "_clear_representation_headers",
    "_disconnect_on_finish",
    "_finished",
    "_headers",
    "_maybe_resume_transport",
    "_new_cookie",
    "_reason",
    "_should_not_send_content",
    "_status_code",
    "_threads",
    "_unapply_xheaders",
    "_write_buffer",
}


def test_only_the_compat_modules_reach_tornado_and_python_internals() -> None:
    package = Path(hybrid.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "_compat":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.FunctionDef):  # an override of a private hook
                name = node.name
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value  # getattr(obj, "_name")
            if name in _REACHED:
                offenders.append(f"{path.relative_to(package)}:{getattr(node, 'lineno', 0)} {name}")
    assert offenders == []


def test_finish_final_leaves_transformed_and_unexecuted_responses_to_finish() -> None:
    from hybrid._compat.tornado import _handler, finish_final

    handler = _handler()  # never executed: Tornado has not picked its transforms
    assert finish_final(handler, b"body") is None
    handler._transforms = [object()]  # type: ignore[list-item]  # compress_response's gzip
    assert finish_final(handler, b"body") is None
    assert not handler._headers_written and not handler._finished
