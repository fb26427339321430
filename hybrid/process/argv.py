"""A command checked before anything is spawned: argv, executable, environment, limits.

:func:`prepare` turns a call's arguments into a :class:`Prepared` command synchronously
(argv only, a shell only when ``shell=True`` names it, the executable resolved on the
scrubbed PATH, limits wrapped), so that mistakes raise where the call is written.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hybrid.process.errors import CommandError, CommandNotFound
from hybrid.process.limits import Limits, safe_environ, wrap_argv

__all__ = [
    "DEFAULT_KILL_GRACE",
    "DEFAULT_MAX_OUTPUT",
    "Command",
    "Prepared",
    "normalize_argv",
    "prepare",
    "resolve_executable",
]

#: Bytes kept per stream (stdout, stderr) unless ``max_output=`` says otherwise.
DEFAULT_MAX_OUTPUT = 1 << 20
#: Seconds between SIGTERM and SIGKILL.
DEFAULT_KILL_GRACE = 2.0

Command = Sequence["str | os.PathLike[str]"] | str


@dataclass
class Prepared:
    """A validated, spawn-ready command (made by :func:`prepare`)."""

    argv: tuple[str, ...]
    spawn_argv: list[str]
    executable: str | None
    env: dict[str, str]
    cwd: str | None
    input: bytes | None
    timeout: float | None
    kill_grace: float
    max_output: int | None
    encoding: str | None
    errors: str
    queue_timeout: float | None
    user: str | int | None = None
    group: str | int | None = None
    extra_groups: Sequence[str | int] | None = None


def normalize_argv(args: Command, shell: bool) -> list[str]:
    """Turn ``args`` into an argv; a shell appears only when ``shell=True`` names it."""
    if shell:
        if not isinstance(args, str):
            raise TypeError(
                "shell=True takes one command line string, e.g. 'ls -l | wc -l'; "
                "to run a list of arguments, drop shell=True"
            )
        return ["/bin/sh", "-c", args]
    if isinstance(args, (str, bytes)):
        raise TypeError(
            f"args must be a list like ['ls', '-l'], not the string {args!r}: hybrid never "
            "splits a string into words; pass shell=True only if you need a shell"
        )
    argv: list[str] = []
    for arg in args:
        value = os.fspath(arg)
        if not isinstance(value, str):
            raise TypeError(f"arguments must be str or str paths, not {value!r}; decode it")
        if "\0" in value:
            raise ValueError(f"argument {value!r} contains a NUL byte, which exec cannot pass")
        argv.append(value)
    if not argv:
        raise ValueError("args is empty; pass the command and its arguments, e.g. ['uptime']")
    return argv


def resolve_executable(program: str, path: str, cwd: str | None, argv: Sequence[str]) -> str:
    """The absolute path ``program`` will exec, or :class:`CommandNotFound`.

    Resolved here, before anything is spawned, so a missing executable raises at the call
    (the callback API's contract too) and the PATH searched is the child's scrubbed one.
    """
    if os.sep in program:
        candidate = program if os.path.isabs(program) or cwd is None else os.path.join(cwd, program)
        found = candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    else:
        found = shutil.which(program, path=path)
    if found is None:
        raise CommandNotFound(
            f"command not found: {program!r} (searched PATH={path!r}); install it, pass its "
            "full path, or add its directory to PATH with env={'PATH': ...}",
            cmd=argv,
        )
    return os.path.abspath(found)


def prepare(
    args: Command,
    *,
    timeout: float | None,
    input: bytes | str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    text: bool = False,
    encoding: str | None = None,
    errors: str = "replace",
    shell: bool = False,
    max_output: int | None = DEFAULT_MAX_OUTPUT,
    limits: Limits | None = None,
    kill_grace: float = DEFAULT_KILL_GRACE,
    queue_timeout: float | None = None,
    user: str | int | None = None,
    group: str | int | None = None,
    extra_groups: Sequence[str | int] | None = None,
) -> Prepared:
    """Validate everything that can be validated without spawning (see :func:`run_command`)."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, or None for no limit, not {timeout!r}")
    if max_output is not None and max_output < 0:
        raise ValueError(f"max_output must be >= 0 bytes, or None, not {max_output!r}")
    if kill_grace < 0:
        raise ValueError(f"kill_grace must be >= 0 seconds, not {kill_grace!r}")
    argv = normalize_argv(args, shell)
    child_env = safe_environ(env)
    cwd_str = os.fspath(cwd) if cwd is not None else None
    if cwd_str is not None and not os.path.isdir(cwd_str):
        raise CommandError(f"cwd {cwd_str!r} is not a directory; create it or fix cwd=", cmd=argv)
    executable = resolve_executable(argv[0], child_env["PATH"], cwd_str, argv)
    if text and encoding is None:
        encoding = "utf-8"
    if isinstance(input, str):
        if encoding is None:
            raise TypeError(
                "input= is a str but the command runs in bytes mode; pass "
                "text=True (or encoding=), or encode the input yourself"
            )
        data: bytes | None = input.encode(encoding)
    else:
        data = input
    if limits is not None:
        spawn_argv, spawn_exe = wrap_argv(limits, executable, argv), None
    else:
        spawn_argv, spawn_exe = argv, executable
    return Prepared(
        argv=tuple(argv),
        spawn_argv=spawn_argv,
        executable=spawn_exe,
        env=child_env,
        cwd=cwd_str,
        input=data,
        timeout=timeout,
        kill_grace=kill_grace,
        max_output=max_output,
        encoding=encoding,
        errors=errors,
        queue_timeout=queue_timeout,
        user=user,
        group=group,
        extra_groups=extra_groups,
    )
