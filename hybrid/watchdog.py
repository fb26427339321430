"""What blocks a worker's IOLoop: a watchdog thread that looks, so the master can say.

A loop that stops sending heartbeats is killed by the master after ``--timeout``; the
operator then wants to know which request did it. Recording the request each time one
starts would cost every request something; instead a thread of the worker wakes once per
heartbeat interval, and when the loop has missed two heartbeats it reads the loop
thread's stack (``sys._current_frames()``), finds the request being served there and
sends it to the master once (:class:`hybrid.protocol.Blocked`): method, path, how long it
has run, and the innermost line of the project's own code. The master logs it when it
kills the worker (:mod:`hybrid.arbiter`). Nothing runs per request.

The thread needs the GIL to look: a loop blocked in ``time.sleep()``, a socket, a lock or
a database driver's call (all of which release it), or in a Python loop (which yields it
every few milliseconds), is seen; one blocked inside C code that holds the GIL is not, and
the master's line then says only that the worker sent no heartbeat.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from tornado.httputil import HTTPServerRequest
from tornado.web import RequestHandler

from hybrid.protocol import Blocked

__all__ = ["Watchdog", "blocking_request"]

#: Heartbeats the loop may miss before the watchdog reports what it runs.
MISSED_BEATS = 2

_HYBRID_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths}
    return tuple(os.path.join(os.path.abspath(d), "") for d in dirs) + (_HYBRID_DIR,)


_LIBRARY_DIRS = _library_dirs()


class Watchdog:
    """Call :meth:`beat` from the loop with every heartbeat; :meth:`start` the thread in
    the loop's thread (it watches the thread that started it); :meth:`stop` it before the
    heartbeats stop (a draining worker sends none)."""

    def __init__(self, interval: float, notify: Callable[[Blocked], None]) -> None:
        self.interval = interval
        self._notify = notify
        self._last_beat = time.monotonic()
        self._reported = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread = threading.get_ident()

    def beat(self) -> None:
        self._last_beat = time.monotonic()
        self._reported = False

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="hybrid-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, 2 * self.interval))
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            silent = time.monotonic() - self._last_beat
            if self._reported or silent < MISSED_BEATS * self.interval:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                return  # the loop's thread is gone
            try:
                report = blocking_request(frame)
            except Exception:  # never let a look at the stack hurt the worker
                report = Blocked()
            finally:
                del frame
            if not self._stopping.is_set() and time.monotonic() - self._last_beat >= silent:
                self._reported = True
                self._notify(report)


def blocking_request(frame: FrameType | None) -> Blocked:
    """The request that ``frame`` (the top of the loop thread's stack) is serving.

    Walking out from the innermost frame: the first frame whose ``self`` is a Tornado
    ``RequestHandler`` gives its request (method, path, age); failing that, a frame with
    a local ``request`` that has a method and a path (a Django view's). ``where`` is the
    innermost line outside the standard library, installed packages and hybrid (the
    project's own code), else the innermost line.
    """
    innermost = ours = ""
    method = path = ""
    age: float | None = None
    while frame is not None:
        code = frame.f_code
        line = f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
        innermost = innermost or line
        if not ours and not code.co_filename.startswith(_LIBRARY_DIRS + ("<",)):
            ours = line
        if not method and ("self" in code.co_varnames or "request" in code.co_varnames):
            method, path, age = _request_of(frame.f_locals)
        if method and ours:
            break
        frame = frame.f_back
    return Blocked(method, path, age, ours or innermost)


def _request_of(local: Any) -> tuple[str, str, float | None]:
    handler = local.get("self")
    request = handler.request if isinstance(handler, RequestHandler) else local.get("request")
    method = getattr(request, "method", None)
    path = getattr(request, "path", None)
    if not isinstance(method, str) or not isinstance(path, str) or not method:
        return "", "", None
    age = request.request_time() if isinstance(request, HTTPServerRequest) else None
    return method, path, age
