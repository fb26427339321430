"""What a worker tells its master, over a pipe: one line per message, defined once here.

=====================  ==============================================================
``ready [LOOP]``       it serves; sent once, after the project loaded, with the event
                       loop it runs on (``uvloop 0.23.0``, ``asyncio``)
``boot-error REASON``  the project cannot load (then it exits with ``BOOT_ERROR_EXIT``)
``hb SERVED``          a heartbeat from the IOLoop (silence means a blocked loop), with
                       the number of requests served so far
``recycle REASON``     it wants to be replaced (``--max-requests`` reached)
``blocked AGE M P W``  its IOLoop has sent no heartbeat for a while, and this is what it
                       runs (:mod:`hybrid.watchdog`): the request's method and path, how
                       many seconds it has run (``-`` when unknown), where in the code;
                       not a sign of life
=====================  ==============================================================

The worker (:mod:`hybrid.worker`) writes :func:`encode`'s bytes, each at most
``PIPE_BUF`` so that one write is one whole line; the master (:mod:`hybrid.arbiter`) cuts
what it reads into lines with :func:`split_lines` and reads each with :func:`parse`, which
returns None for a line it does not understand (the master still counts it as a sign of
life; every line but ``blocked`` is one).
"""

from __future__ import annotations

import select
from dataclasses import dataclass

__all__ = [
    "MAX_LINE",
    "Blocked",
    "BootError",
    "Heartbeat",
    "Message",
    "Ready",
    "Recycle",
    "encode",
    "heartbeat_interval",
    "parse",
    "split_lines",
]

#: The longest line, newline included: a pipe write up to ``PIPE_BUF`` bytes is atomic.
MAX_LINE = select.PIPE_BUF


def heartbeat_interval(timeout: float) -> float:
    """Seconds between heartbeats for a master's ``--timeout``: several per timeout, at
    most one a second (the nginx config's retry window is worked out from it too)."""
    return max(0.05, min(1.0, timeout / 5))


@dataclass(frozen=True)
class Ready:
    """The worker serves: its project loaded and its sockets accept; ``loop`` is the event
    loop it runs on, in a few words (empty when not told)."""

    loop: str = ""


@dataclass(frozen=True)
class BootError:
    """The project cannot load in the worker; ``reason`` is one line."""

    reason: str


@dataclass(frozen=True)
class Heartbeat:
    """The worker's IOLoop runs; ``served`` requests so far."""

    served: int


@dataclass(frozen=True)
class Recycle:
    """The worker asks to be replaced; ``reason`` says why (``--max-requests``)."""

    reason: str


@dataclass(frozen=True)
class Blocked:
    """The worker's IOLoop is blocked, running ``method`` ``path`` (empty when no request
    was found on its stack) for ``age`` seconds so far (None when unknown), at ``where``
    (``file:line in function``). Sent by the worker's watchdog thread, once per stall."""

    method: str = ""
    path: str = ""
    age: float | None = None
    where: str = ""


Message = Ready | BootError | Heartbeat | Recycle | Blocked


def encode(message: Message) -> bytes:
    """``message`` as one line: newline-terminated, newlines inside replaced by spaces, at
    most :data:`MAX_LINE` bytes (a long reason is cut)."""
    if isinstance(message, Ready):
        text = f"ready {message.loop}".rstrip()
    elif isinstance(message, BootError):
        text = f"boot-error {message.reason}"
    elif isinstance(message, Heartbeat):
        text = f"hb {message.served}"
    elif isinstance(message, Blocked):
        age = "-" if message.age is None else f"{max(0.0, message.age):.3f}"
        fields = (age, message.method, _no_spaces(message.path), message.where)
        text = "blocked " + " ".join(field or "-" for field in fields[:3]) + f" {fields[3]}"
    else:
        text = f"recycle {message.reason}"
    data = text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")
    return data[: MAX_LINE - 1] + b"\n"


def parse(line: bytes) -> Message | None:
    """The message in ``line`` (with or without its newline), or None when it is not one:
    an unknown kind, or a heartbeat without a count. Text after ``ready`` is the loop (a
    master that predates it ignores it); a reason may be empty."""
    kind, _, text = line.rstrip(b"\n").decode("utf-8", "replace").partition(" ")
    if kind == "ready":
        return Ready(text.strip())
    if kind == "hb":
        return Heartbeat(int(text)) if text.isascii() and text.isdigit() else None
    if kind == "boot-error":
        return BootError(text)
    if kind == "recycle":
        return Recycle(text)
    if kind == "blocked":
        return _parse_blocked(text)
    return None


def _parse_blocked(text: str) -> Blocked | None:
    parts = text.split(" ", 3)
    if len(parts) < 3:
        return None
    age_text, method, path = parts[:3]
    try:
        age = None if age_text == "-" else float(age_text)
    except ValueError:
        return None
    if age is not None and not 0 <= age < float("inf"):
        return None
    return Blocked(
        "" if method == "-" else method,
        "" if path == "-" else path,
        age,
        parts[3].strip() if len(parts) == 4 else "",
    )


def _no_spaces(path: str) -> str:
    """A path as one field: whitespace percent-encoded (Tornado's paths have none; a
    decoded Django path may)."""
    return "".join(f"%{ord(c):02X}" if c.isspace() else c for c in path)


def split_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines in ``buffer`` (without newlines) and what is left after them."""
    *lines, rest = buffer.split(b"\n")
    return lines, rest
