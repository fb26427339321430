"""The access log: where each request's line goes (``--access-log``) and what it says
(``--access-log-format``), and each request's id (``X-Request-ID``).

``--access-log``: ``-`` (the default) logs through the ``hybrid.access`` logger (stderr,
or whatever Django's ``LOGGING`` makes of it), a FILE gets the lines appended (each worker
opens it after the fork, and again on SIGUSR1, for logrotate), ``off`` logs nothing.

``--access-log-format`` takes gunicorn's atoms, ``%(NAME)s``, where they make sense for a
Tornado request (:data:`ATOMS`; ``%%`` is a percent sign). It is compiled once
(:func:`compile_format`): an unknown atom or an unbalanced ``%(`` is a one-line
:class:`ConfigError` when the options are read, never an error per request. Without it the
line is the default one, ``GET /path 200 1.2ms port=8001``.
"""

from __future__ import annotations

import logging
import os
import re
import time
import weakref
from base64 import b64decode
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from hybrid.errors import ConfigError
from hybrid.log import access_log, gen_log

if TYPE_CHECKING:
    from tornado.httputil import HTTPHeaders, HTTPServerRequest
    from tornado.web import RequestHandler

__all__ = [
    "ATOMS",
    "REQUEST_ID_HEADER",
    "AccessLog",
    "Formatter",
    "compile_format",
    "default_line",
    "ensure_request_id",
    "new_request_id",
]

#: The request id's header: taken from the request when sane, else made; echoed back.
REQUEST_ID_HEADER = "X-Request-ID"

#: A client's id is kept when it is 1-200 printable ASCII characters.
_SANE_ID = re.compile(r"[\x20-\x7e]{1,200}")


def ensure_request_id(headers: HTTPHeaders) -> str:
    """The request's id: its ``X-Request-ID`` when sane, else a new uuid4 hex, which then
    replaces it in ``headers`` (so Django's ``META["HTTP_X_REQUEST_ID"]`` and the access
    log's ``%({x-request-id}i)s`` see the same)."""
    given = headers.get(REQUEST_ID_HEADER)
    if given is not None and _SANE_ID.fullmatch(given):
        return given
    request_id = new_request_id()
    headers[REQUEST_ID_HEADER] = request_id
    return request_id


def new_request_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as ``uuid.uuid4().hex`` makes it in a
    quarter of the time (1 us instead of 4: it is made for every request)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


# -- the format ---------------------------------------------------------------------------

#: One atom's value for a request: (handler, request, seconds it took) -> text.
Getter = Callable[["RequestHandler", "HTTPServerRequest", float], object]


_headers_of: Callable[[RequestHandler], HTTPHeaders] | None = None


def _response_headers(handler: RequestHandler) -> HTTPHeaders:
    global _headers_of
    if _headers_of is None:  # tornado only when a line is made, not when options are read
        from hybrid._compat.tornado import response_headers

        _headers_of = response_headers
    return _headers_of(handler)


def _content_length(handler: RequestHandler) -> int | None:
    value = _response_headers(handler).get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _user(handler: RequestHandler, request: HTTPServerRequest, elapsed: float) -> str:
    """The user name of HTTP basic authentication, as gunicorn's ``u``; else ``-``."""
    auth = request.headers.get("Authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        return b64decode(credentials, validate=True).decode("utf-8").partition(":")[0] or "-"
    except (ValueError, UnicodeDecodeError):
        return "-"


def _date(handler: RequestHandler, request: HTTPServerRequest, elapsed: float) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")


def _request_line(handler: RequestHandler, request: HTTPServerRequest, elapsed: float) -> str:
    return f"{request.method} {request.uri} {request.version}"


def _seconds(handler: RequestHandler, request: HTTPServerRequest, elapsed: float) -> str:
    return f"{int(elapsed)}.{int((elapsed % 1) * 1_000_000):06d}"


#: Body bytes written so far for each response that has no Content-Length (streamed,
#: chunked), by request connection; counted only when the format logs a size.
_streamed: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()


def count_streamed(connection: object, size: int) -> None:
    """Add ``size`` body bytes to what ``connection``'s streamed response has sent."""
    _streamed[connection] = _streamed.get(connection, 0) + size


def _body_size(handler: RequestHandler) -> int | None:
    length = _content_length(handler)
    if length is not None:
        return length
    connection = handler.request.connection
    return _streamed.get(connection) if connection is not None else None


def _size(handler: RequestHandler, request: HTTPServerRequest, elapsed: float) -> int:
    return _body_size(handler) or 0


def _size_or_dash(handler: RequestHandler, request: HTTPServerRequest, elapsed: float) -> object:
    return _body_size(handler) or "-"


#: gunicorn's atoms that hybrid implements, with what they say (docs/deploy/operations.md).
ATOMS: dict[str, tuple[Getter, str]] = {
    "h": (lambda hd, r, e: r.remote_ip or "-", "client address (X-Real-IP from nginx)"),
    "l": (lambda hd, r, e: "-", "'-'"),
    "u": (_user, "user name of basic authentication, or '-'"),
    "t": (_date, "date of the log line, [10/Oct/2000:13:55:36 +0000]"),
    "r": (_request_line, "request line, GET /path?q=1 HTTP/1.1"),
    "m": (lambda hd, r, e: r.method, "request method"),
    "U": (lambda hd, r, e: r.path, "URL path without the query string"),
    "q": (lambda hd, r, e: r.query, "query string"),
    "H": (lambda hd, r, e: r.version, "protocol, HTTP/1.1"),
    "s": (lambda hd, r, e: hd.get_status(), "status"),
    "B": (_size, "response body length (its Content-Length, or the bytes streamed)"),
    "b": (_size_or_dash, "response body length, or '-' when 0"),
    "f": (lambda hd, r, e: r.headers.get("Referer", "-"), "referer"),
    "a": (lambda hd, r, e: r.headers.get("User-Agent", "-"), "user agent"),
    "T": (lambda hd, r, e: int(e), "request time in whole seconds"),
    "M": (lambda hd, r, e: int(e * 1000), "request time in whole milliseconds"),
    "D": (lambda hd, r, e: int(e * 1_000_000), "request time in whole microseconds"),
    "L": (_seconds, "request time in decimal seconds, 0.001234"),
    "p": (lambda hd, r, e: f"<{os.getpid()}>", "worker's process id, <1234>"),
}


def _request_header(name: str) -> Getter:
    return lambda hd, r, e: r.headers.get(name, "-")


def _response_header(name: str) -> Getter:
    return lambda hd, r, e: _response_headers(hd).get(name, "-")


def _environ(name: str) -> Getter:
    value = os.environ.get(name, "-")  # read once, when the worker starts
    return lambda hd, r, e: value


_BRACED = {"i": _request_header, "o": _response_header, "e": _environ}

#: ``%(NAME)s`` or ``%%``, from a ``%``.
_PIECE = re.compile(r"%(?:\((?P<name>[^()]*)\)s|%)")


class Formatter:
    """A compiled ``--access-log-format``: :meth:`__call__` makes one request's line."""

    __slots__ = ("counts_body", "getters", "template", "text")

    def __init__(self, text: str, template: str, getters: tuple[Getter, ...]) -> None:
        self.text = text
        #: The line with ``%s`` where each atom goes.
        self.template = template
        self.getters = getters
        #: Whether a line needs the body size of streamed responses (``count_streamed``).
        self.counts_body = any(get in (_size, _size_or_dash) for get in getters)

    def __call__(self, handler: RequestHandler) -> str:
        request = handler.request
        elapsed = request.request_time()
        return self.template % tuple([get(handler, request, elapsed) for get in self.getters])


def compile_format(text: str) -> Formatter:
    """Compile a gunicorn-style format; :class:`ConfigError` (one line) when it is bad."""
    template: list[str] = []
    getters: list[Getter] = []
    position = 0
    while True:
        percent = text.find("%", position)
        if percent < 0:
            template.append(text[position:])
            break
        template.append(text[position:percent])
        match = _PIECE.match(text, percent)
        if match is None:
            if text.startswith("%(", percent):
                raise ConfigError(
                    f"{text!r}: unbalanced %( at character {percent + 1}: "
                    "write atoms as %(h)s, %(s)s, %({header}i)s, and %% for a percent sign",
                    option="--access-log-format",
                    value=text,
                )
            raise ConfigError(
                f"{text!r}: lone % at character {percent + 1}: write %% "
                "for a percent sign, atoms as %(h)s",
                option="--access-log-format",
                value=text,
            )
        position = match.end()
        name = match.group("name")
        if name is None:
            template.append("%%")
            continue
        template.append("%s")
        getters.append(_atom(text, name))
    return Formatter(text, "".join(template), tuple(getters))


def _atom(text: str, name: str) -> Getter:
    if name in ATOMS:
        return ATOMS[name][0]
    if len(name) > 3 and name[0] == "{" and name[-2] == "}" and name[-1] in _BRACED:
        inner = name[1:-2]
        if inner.strip() and "}" not in inner:
            return _BRACED[name[-1]](inner.strip())
    known = ", ".join(ATOMS)
    raise ConfigError(
        f"{text!r}: unknown atom %({name})s; known: {known}, "
        "{header}i, {header}o, {variable}e",
        option="--access-log-format",
        value=text,
    )


def default_line(handler: RequestHandler, port: int | None) -> str:
    """The default line: ``GET /path 200 1.2ms port=8001`` (`` timeout`` when timed out)."""
    request = handler.request
    timeout = " timeout" if handler.__dict__.get("_hybrid_timed_out") else ""
    return (
        f"{request.method} {request.uri} {handler.get_status()} "
        f"{1000.0 * request.request_time():.1f}ms port={port}{timeout}"
    )


# -- where lines go -----------------------------------------------------------------------


def _level(status: int) -> int:
    if status >= 500:
        return logging.ERROR
    return logging.WARNING if status >= 400 else logging.INFO


class AccessLog:
    """One worker's access log, as ``--access-log`` and ``--access-log-format`` say.

    :attr:`plain` (``-`` with the default format) tells :class:`hybrid.web.HybridApplication`
    to keep its own cheap line. A FILE is opened by :meth:`open` (the worker, after the
    fork; else at the first line) and again by :meth:`reopen` (SIGUSR1).
    """

    def __init__(self, destination: str = "-", log_format: str | None = None) -> None:
        self.destination = destination
        self.off = destination == "off"
        self.to_file = destination not in ("-", "off")
        self.formatter = compile_format(log_format) if log_format else None
        self.plain = destination == "-" and self.formatter is None
        #: Whether streamed responses' body bytes must be counted for the lines.
        self.counts_body = (
            not self.off and self.formatter is not None and (self.formatter.counts_body)
        )
        self._file: IO[str] | None = None
        self._failed = False

    def open(self) -> None:
        """Open the FILE for appending (OSError when it cannot be)."""
        if self.to_file and self._file is None:
            self._file = open(  # noqa: SIM115  # kept open for the worker's life
                self.destination, "a", buffering=1, encoding="utf-8", errors="backslashreplace"
            )
            self._failed = False

    def reopen(self) -> None:
        """Close and open the FILE again (after logrotate moved it); errors are logged."""
        if not self.to_file:
            return
        self.close()
        try:
            self.open()
        except OSError as exc:
            gen_log.error("access log %s: cannot reopen it: %s", self.destination, exc)

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError:
                pass

    def write(self, handler: RequestHandler, port: int | None) -> None:
        """One request's line, formatted and sent where it goes."""
        if self.off:
            return
        status = handler.get_status()
        if not self.to_file and not access_log.isEnabledFor(_level(status)):
            return  # no line to make
        if self.formatter is None:
            line = default_line(handler, port)
        else:
            line = self.formatter(handler)
        self.emit(line, status)

    def emit(self, line: str, status: int) -> None:
        """Send an already made line (the refused-head one, too)."""
        if self.off:
            return
        if not self.to_file:
            access_log.log(_level(status), "%s", line)
            return
        try:
            if self._file is None:
                self.open()
            assert self._file is not None
            self._file.write(line + "\n")
        except OSError as exc:
            if not self._failed:  # once until it is reopened, not once per request
                self._failed = True
                gen_log.error("access log %s: cannot write: %s", self.destination, exc)
