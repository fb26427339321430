"""The command runner: system commands from async handlers, never blocking, always bounded.

::

    result = await run_command(["uptime"], timeout=2, text=True)

    async with stream_command(["ping", "-c", "3", host], timeout=10, lines=True) as s:
        async for event in s:
            ...

``Subprocess(callback, timeout=..., args=[...])`` is a GenericSubprocess-style callback API.
Safety is the default: argv only (a shell only with ``shell=True``), a scrubbed
environment, the whole process group killed at the timeout (TERM, grace, KILL) and always
reaped, capped output, optional rlimits and user/group, a per-worker concurrency limit
that queues, an :class:`AllowList` for anything a request can trigger, and no SIGCHLD
handler installed (docs/design.md, "Tornado's Subprocess installs a global SIGCHLD
handler"). On shutdown the worker calls :func:`terminate_all`.
"""

from __future__ import annotations

from hybrid.process.allow import AllowList, CommandSpec
from hybrid.process.argv import DEFAULT_KILL_GRACE, DEFAULT_MAX_OUTPUT
from hybrid.process.callback import Subprocess
from hybrid.process.commands import CommandStream, OutputEvent, run_command, stream_command
from hybrid.process.errors import (
    CommandBusy,
    CommandError,
    CommandFailed,
    CommandNotAllowed,
    CommandNotFound,
    CommandTimeout,
)
from hybrid.process.gate import DEFAULT_MAX_CONCURRENT, get_max_concurrent, set_max_concurrent
from hybrid.process.handlers import CommandStreamHandler
from hybrid.process.limits import Limits, safe_environ
from hybrid.process.result import CommandResult
from hybrid.process.runner import command_timeouts, running_commands, terminate_all

__all__ = [
    "DEFAULT_KILL_GRACE",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_OUTPUT",
    "AllowList",
    "CommandBusy",
    "CommandError",
    "CommandFailed",
    "CommandNotAllowed",
    "CommandNotFound",
    "CommandResult",
    "CommandSpec",
    "CommandStream",
    "CommandStreamHandler",
    "CommandTimeout",
    "Limits",
    "OutputEvent",
    "Subprocess",
    "command_timeouts",
    "get_max_concurrent",
    "run_command",
    "running_commands",
    "safe_environ",
    "set_max_concurrent",
    "stream_command",
    "terminate_all",
]
