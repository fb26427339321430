"""The command runner's errors, a branch of :class:`hybrid.errors.HybridError`.

The tree they form is drawn once, in :mod:`hybrid.errors`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hybrid.errors import HybridError

if TYPE_CHECKING:
    from hybrid.process.result import CommandResult

__all__ = [
    "CommandBusy",
    "CommandError",
    "CommandFailed",
    "CommandNotAllowed",
    "CommandNotFound",
    "CommandTimeout",
    "describe",
]


class CommandError(HybridError):
    """A system command could not be run as asked; ``cmd`` is its argv (a tuple of str)."""

    def __init__(self, message: str, *, cmd: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.cmd: tuple[str, ...] = tuple(cmd)


class CommandNotFound(CommandError, FileNotFoundError):
    """The executable does not exist or is not executable.

    Also a :class:`FileNotFoundError`, so code written for :func:`subprocess.run` that catches
    that keeps working.
    """


class CommandNotAllowed(CommandError):
    """An :class:`~hybrid.process.AllowList` refused a request.

    ``name`` is the command name asked for; ``argument`` the refused user argument, or None
    when the command itself is not listed. Handlers map this to a 4xx response whose body
    is ``public``: what the client did wrong, without the spec's patterns and hints that
    the message (for the server's log) carries.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str,
        argument: str | None = None,
        cmd: Sequence[str] = (),
        public: str | None = None,
    ) -> None:
        super().__init__(message, cmd=cmd)
        self.name = name
        self.argument = argument
        self.public = public if public is not None else message


class CommandBusy(CommandError):
    """Every slot of the worker's concurrency limit stayed busy for ``queue_timeout`` seconds."""

    def __init__(self, message: str, *, cmd: Sequence[str] = (), queue_timeout: float) -> None:
        super().__init__(message, cmd=cmd)
        self.queue_timeout = queue_timeout


class CommandFailed(CommandError):
    """``check=True`` and the command did not succeed; the full result rides along."""

    def __init__(self, message: str, *, result: CommandResult[Any]) -> None:
        super().__init__(message, cmd=result.args)
        self.result = result
        self.returncode: int = result.returncode
        self.stdout: Any = result.stdout
        self.stderr: Any = result.stderr


class CommandTimeout(CommandFailed, TimeoutError):
    """``check=True`` and the command was killed at its timeout (``timeout`` seconds)."""

    def __init__(self, message: str, *, result: CommandResult[Any], timeout: float) -> None:
        super().__init__(message, result=result)
        self.timeout = timeout


def describe(argv: Sequence[str]) -> str:
    """``argv`` as a shell would show it, shortened for one log line."""
    text = shlex.join(argv)
    return text if len(text) <= 200 else text[:197] + "..."
