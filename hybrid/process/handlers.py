"""A ready-made Tornado handler that streams an allow-listed command's output.

::

    allow = AllowList([CommandSpec("ping", ["ping", "-c", "4"], args=[r"[a-z0-9.-]+"])])
    routes = [(r"/run/(?P<name>[a-z]+)", CommandStreamHandler, {"allow": allow})]

``GET /run/ping?arg=example.org`` answers ``200 text/plain`` and sends each output line as
an HTTP chunk as soon as it is produced; with ``Accept: text/event-stream`` (or
``sse=True``) it sends Server-Sent Events instead (``event: stdout|stderr``, then one
``event: exit`` whose data is ``{"returncode": ..., "timed_out": ...}``). A client that
disconnects kills the command. Refused requests: unknown command 404, bad arguments 400,
no free command slot 503, a listed program missing on the server 500; each with a one-line
``text/plain`` body saying why (``400 Bad Request: command 'ping': argument 1 is not
accepted``) that never quotes the spec's patterns (the log line does). Once output has
started the status is 200 whatever happens; in plain-text mode a command that times out
or fails just ends the body, so ask for Server-Sent Events when the client must know
(the ``exit`` event).
"""

from __future__ import annotations

import json
from typing import Any

import tornado.web
from tornado.iostream import StreamClosedError

from hybrid._compat import tornado as tornado_compat
from hybrid.process.allow import AllowList
from hybrid.process.commands import CommandStream, OutputEvent
from hybrid.process.errors import CommandBusy, CommandNotAllowed, CommandNotFound

__all__ = ["CommandStreamHandler"]

#: Most output written before the handler flushes it as one HTTP chunk.
FLUSH_SIZE = 65536


class CommandStreamHandler(tornado.web.RequestHandler):
    """Runs ``allow``'s command named by the URL (or ``command=``) and streams its output.

    Initialize arguments (the URL spec's dict): ``allow`` (required), ``command`` (a fixed
    command name instead of a ``name`` URL group), ``sse`` (True/False to force a format;
    None decides by the Accept header), ``run_options`` (per-call overrides for the runner,
    e.g. ``{"timeout": 30}``). Override :meth:`command_request` to take the command and
    its arguments from somewhere other than ``?arg=`` query arguments.
    """

    allow: AllowList
    command: str | None
    sse: bool | None
    run_options: dict[str, Any]

    def initialize(
        self,
        allow: AllowList,
        command: str | None = None,
        sse: bool | None = None,
        run_options: dict[str, Any] | None = None,
    ) -> None:
        self.allow = allow
        self.command = command
        self.sse = sse
        self.run_options = dict(run_options or {})
        self._stream: CommandStream[Any] | None = None
        self._client_gone = False
        #: What the client is told when the request is refused (see :meth:`write_error`).
        self._public_reason: str | None = None

    def command_request(self, *args: str, **kwargs: str) -> tuple[str, list[str]]:
        """``(command name, user arguments)`` this request asks for."""
        name = self.command or kwargs.get("name") or (args[0] if args else None)
        if not name:
            raise tornado.web.HTTPError(
                500,
                "CommandStreamHandler needs command= in its URL spec, or a (?P<name>...) "
                "group in its URL pattern",
            )
        # The raw values: get_query_arguments() would strip them and turn control
        # characters into spaces, so the spec's patterns would not see what was sent.
        user_args = []
        for index, raw in enumerate(self.request.query_arguments.get("arg", []), start=1):
            try:
                user_args.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self._public_reason = f"argument {index} is not UTF-8"
                raise tornado.web.HTTPError(400, "argument %d is not UTF-8", index) from None
        return name, user_args

    def wants_sse(self) -> bool:
        if self.sse is not None:
            return self.sse
        return "text/event-stream" in self.request.headers.get("Accept", "")

    async def get(self, *args: str, **kwargs: str) -> None:
        name, user_args = self.command_request(*args, **kwargs)
        sse = self.wants_sse()
        try:
            stream = self.allow.stream(
                name, user_args, **{"lines": True, "text": True, **self.run_options}
            )
        except CommandNotAllowed as exc:
            self._public_reason = exc.public
            raise tornado.web.HTTPError(400 if name in self.allow else 404, "%s", exc) from None
        except CommandNotFound as exc:  # the server's allow-list names a missing program
            self._public_reason = f"command {name!r} is not available on this server"
            raise tornado.web.HTTPError(500, "%s", exc) from None
        self.set_header("Content-Type", "text/event-stream" if sse else "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx: pass chunks on, do not buffer
        try:
            async with stream:
                self._stream = stream
                if self._client_gone:
                    stream.cancel()
                unflushed = 0
                async for event in stream:
                    chunk = self.format_event(event, sse)
                    self.write(chunk)
                    unflushed += len(chunk)
                    # One HTTP chunk for what is already here (a line each made `yes` crawl
                    # at 400 KB/s), at most 64 KiB; at once when the command goes quiet.
                    if unflushed >= FLUSH_SIZE or not stream.ready():
                        unflushed = 0
                        await self.flush()
        except CommandBusy as exc:
            self._public_reason = "every command slot of this worker is busy; try again shortly"
            raise tornado.web.HTTPError(503, "%s", exc) from None
        except StreamClosedError:
            return  # the client went away; leaving the block killed the command
        finally:
            self._stream = None
        if sse and not self._client_gone:
            result = stream.result
            payload = {"returncode": result.returncode, "timed_out": result.timed_out}
            self.write(f"event: exit\ndata: {json.dumps(payload)}\n\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A refusal says why in one line of text; anything else is Tornado's page."""
        if self._public_reason is None:
            super().write_error(status_code, **kwargs)
            return
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if status_code == 503:
            self.set_header("Retry-After", "1")
        self.finish(f"{status_code} {tornado_compat.reason(self)}: {self._public_reason}\n")

    def format_event(self, event: OutputEvent[Any], sse: bool) -> str:
        """One event as it goes on the wire; override to change the format."""
        data = event.data if isinstance(event.data, str) else event.data.decode("utf-8", "replace")
        if not sse:
            return data
        lines = data.rstrip("\n").splitlines() or [""]
        return f"event: {event.stream}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"

    def on_connection_close(self) -> None:
        """The client disconnected: kill the command now rather than at its next write."""
        self._client_gone = True
        if self._stream is not None:
            self._stream.cancel()
        super().on_connection_close()
