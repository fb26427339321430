"""The workers' event loop (``--loop``): asyncio's own, or uvloop's.

``auto`` (the default) is uvloop when it is importable, else asyncio; ``uvloop`` insists on
it and ``asyncio`` never uses it. The master only checks, before it forks, that the loop
asked for can be had (:func:`check`: a missing uvloop is a one-line :class:`ConfigError`
naming the fix); it never creates a loop. Each worker picks its loop factory itself after
the fork (:func:`choose`) and runs its IOLoop on it with ``asyncio.Runner``.

uvloop is a drop-in asyncio loop for everything a worker does (Tornado's IOLoop, signal
handlers, ``run_in_executor`` and ``call_soon_threadsafe`` for the database threads, pipes
watched with ``add_reader``, ``asyncio.create_subprocess_exec``), with two differences the
command runner (:mod:`hybrid.process.runner`) accounts for: its subprocesses are reaped by
libuv (a SIGCHLD handler of its own, for its own children only), not by asyncio's child
watcher; and it cannot start a command as another user (``user=``, ``group=``,
``extra_groups=``), which the runner then refuses in one line.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hybrid.config import LOOPS
from hybrid.errors import ConfigError, describe_exception

__all__ = ["UVLOOP_INSTALL", "EventLoop", "check", "choose", "describe", "is_uvloop"]

#: What installs uvloop at a version hybrid supports.
UVLOOP_INSTALL = "pip install 'hybrid[uvloop]'"


@dataclass(frozen=True)
class EventLoop:
    """The loop a worker runs: ``name`` (``asyncio`` or ``uvloop``) and how to make it.

    ``factory`` is None for asyncio: ``asyncio.Runner`` then makes the loop exactly as
    ``asyncio.run()`` does (the event loop policy's, set as the current loop).
    """

    name: str
    factory: Callable[[], asyncio.AbstractEventLoop] | None


def choose(loop: str, *, option: str = "--loop") -> EventLoop:
    """The loop ``--loop loop`` means here: ``auto`` resolves to uvloop when it is
    installed, else asyncio. Raises :class:`ConfigError` (``option`` names where the value
    came from) when uvloop is asked for and not installed, or installed and broken, and
    for a value that is not one of :data:`LOOPS`."""
    if loop not in LOOPS:
        raise ConfigError(
            f"{option}: unknown event loop {loop!r}: expected one of {', '.join(LOOPS)}",
            option=option,
            value=loop,
        )
    if loop == "asyncio":
        return EventLoop("asyncio", None)
    try:
        uvloop = importlib.import_module("uvloop")
    except ModuleNotFoundError as exc:
        if exc.name != "uvloop":  # uvloop itself is there, but something it imports is not
            raise _broken(option, loop, exc) from None
        if loop == "auto":
            return EventLoop("asyncio", None)
        raise ConfigError(
            f"{option}: uvloop is not installed: {UVLOOP_INSTALL} (or use --loop asyncio)",
            option=option,
            value=loop,
        ) from None
    except ImportError as exc:  # a wheel for another Python or platform, a missing symbol...
        raise _broken(option, loop, exc) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return EventLoop("uvloop", factory)


def _broken(option: str, loop: str, exc: ImportError) -> ConfigError:
    # Even with auto: falling back in silence would hide a broken deployment.
    return ConfigError(
        f"{option}: uvloop is installed but cannot be imported "
        f"({describe_exception(exc)}): reinstall it with {UVLOOP_INSTALL}, "
        "or use --loop asyncio",
        option=option,
        value=loop,
    )


def check(loop: str, sources: Mapping[str, str] | None = None) -> EventLoop:
    """:func:`choose` in the master, before any worker starts, so that a missing uvloop is
    one line on stderr rather than a worker that cannot boot. Only imports uvloop (which
    the workers then inherit); no loop is created. ``sources`` is ``Config.sources``."""
    return choose(loop, option=(sources or {}).get("loop", "--loop"))


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is uvloop's (whose subprocesses and signals libuv handles)."""
    return type(loop).__module__.partition(".")[0] == "uvloop"


def describe(loop: asyncio.AbstractEventLoop) -> str:
    """The running loop in a few words, for the startup line and ``hybrid status``:
    ``uvloop 0.23.0`` or ``asyncio``."""
    if is_uvloop(loop):
        version = getattr(importlib.import_module("uvloop"), "__version__", "")
        return f"uvloop {version}".strip()
    return "asyncio"
