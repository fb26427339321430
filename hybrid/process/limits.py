"""Resource limits and the scrubbed environment that every command starts with.

Limits are applied by a tiny exec wrapper, not by ``preexec_fn``::

    python -I -S -c <WRAPPER> cpu=2 as=268435456 -- /usr/bin/convert convert in.png out.png

Why a wrapper: ``preexec_fn`` runs Python between ``fork()`` and ``exec()`` in the child of a
worker that has threads (Django's thread pool, the database threads); a lock held by
another thread at fork time (malloc, the import lock, logging) deadlocks the child. It also
stops CPython from using ``vfork()``, so every spawn copies the worker's page tables on the
event loop. ``resource.prlimit(pid, ...)`` after spawn is racy: the command runs unlimited
until the call lands. The wrapper costs one short interpreter start (``-I -S``: no site, no
user paths, ~15 ms) and is used only when limits are asked for; it then ``execv``'s the real
command, so the pid, the process group and the exit status are the command's own.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields

__all__ = ["SAFE_ENV_NAMES", "Limits", "safe_environ", "wrap_argv"]

#: Variables copied from the worker's environment when ``env=`` adds nothing else. Secrets
#: (SECRET_KEY, DATABASE_URL, *PASSWORD*, DJANGO_*, HYBRID_*, AWS_*...) are absent by
#: construction: an allow-list cannot leak a variable nobody thought of.
SAFE_ENV_NAMES = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME"})


def safe_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a command gets: the safe part of ``os.environ``, then ``extra``.

    ``extra`` is the caller's explicit ``env=``; it is the only way a secret reaches a child,
    and it wins over the inherited values. PATH falls back to ``os.defpath`` so that
    commands resolve even in a worker started with an empty environment.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name in SAFE_ENV_NAMES or name.startswith("LC_")
    }
    env.setdefault("PATH", os.defpath)
    if extra:
        for name, value in extra.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(
                    f"env= must map str to str; got {name!r}: {value!r} "
                    "(convert numbers with str())"
                )
            env[name] = value
    return env


@dataclass(frozen=True)
class Limits:
    """Kernel resource limits for one command; None leaves a limit as the worker has it.

    ``cpu_seconds``: CPU time (the kernel sends SIGXCPU, then SIGKILL one second later).
    ``address_space``: bytes of virtual memory (a malloc bomb gets ENOMEM / MemoryError).
    ``open_files``: file descriptors (an fd bomb gets EMFILE).
    ``file_size``: bytes any single written file may reach (SIGXFSZ past it).
    ``processes``: processes of the *user* (RLIMIT_NPROC counts all of the uid's processes,
    so it is only meaningful together with a dedicated ``user=``; root ignores it).
    ``core``: core file size; 0 by default so a crashing command never dumps the worker's
    environment to disk.
    """

    cpu_seconds: int | None = None
    address_space: int | None = None
    open_files: int | None = None
    file_size: int | None = None
    processes: int | None = None
    core: int | None = 0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(
                    f"Limits.{field.name} must be a non-negative int or None, not {value!r}"
                )

    def rlimits(self) -> list[tuple[int, int]]:
        """``(RLIMIT_*, value)`` pairs for the limits that are set."""
        table = {
            "cpu_seconds": resource.RLIMIT_CPU,
            "address_space": resource.RLIMIT_AS,
            "open_files": resource.RLIMIT_NOFILE,
            "file_size": resource.RLIMIT_FSIZE,
            "processes": resource.RLIMIT_NPROC,
            "core": resource.RLIMIT_CORE,
        }
        return [
            (table[field.name], getattr(self, field.name))
            for field in fields(self)
            if getattr(self, field.name) is not None
        ]


# Runs in the child. Lowers each soft and hard limit (never above the inherited hard limit,
# which would fail for non-root), then replaces itself with the command. The CPU hard limit
# is one second above the soft one so the kernel's SIGXCPU comes first, then SIGKILL.
_WRAPPER = """\
import os, resource, sys
i = sys.argv.index("--")
for spec in sys.argv[1:i]:
    k, v = (int(x) for x in spec.split("="))
    hard = resource.getrlimit(k)[1]
    soft = v if hard == resource.RLIM_INFINITY else min(v, hard)
    top = soft + 1 if k == resource.RLIMIT_CPU else soft
    top = top if hard == resource.RLIM_INFINITY else min(top, hard)
    resource.setrlimit(k, (soft, top))
try:
    os.execv(sys.argv[i + 1], sys.argv[i + 2:])
except OSError as e:
    sys.stderr.write("hybrid: cannot exec %s: %s\\n" % (sys.argv[i + 1], e.strerror))
    os._exit(126 if isinstance(e, PermissionError) else 127)
"""


def wrap_argv(limits: Limits, executable: str, argv: list[str]) -> list[str]:
    """The argv that applies ``limits`` and then execs ``executable`` with ``argv``."""
    if not sys.executable:
        raise RuntimeError(
            "limits= needs sys.executable to start its wrapper, and this interpreter has "
            "none; run the worker with a regular python binary or drop limits="
        )
    specs = [f"{kind}={value}" for kind, value in limits.rlimits()]
    return [sys.executable, "-I", "-S", "-c", _WRAPPER, *specs, "--", executable, *argv]
