"""Small Linux process helpers: exit descriptions, memory, orphans, process groups.

Every read of ``/proc/PID/stat`` goes through :func:`_stat_fields`."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from collections.abc import Callable, Iterator

__all__ = [
    "become_subreaper",
    "children_of",
    "describe_exit",
    "group_alive",
    "is_running",
    "kill_quietly",
    "parent_death_signal",
    "raise_open_files_limit",
    "rss_mb",
    "started_after",
]

#: The soft limit on open files a master asks for (each client connection is one file).
OPEN_FILES_WANTED = 65536

_PR_SET_CHILD_SUBREAPER = 36


def describe_exit(status: int) -> str:
    """``'exited with status 1'`` or ``'was killed by SIGKILL'`` for a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def kill_quietly(pid: int, signum: int) -> None:
    """``os.kill`` that ignores a process that is already gone."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def become_subreaper() -> bool:
    """Make orphaned descendants (a command a dead worker started) our children, so the
    master can reap and kill them. Linux only; returns False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _stat_fields(pid: int | str) -> list[str]:
    """``/proc/PID/stat`` from its third field on (state, ppid, ...): the command name
    before it is in parentheses and may hold spaces. Raises OSError."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2 :].split()


def _live_processes() -> Iterator[tuple[int, list[str]]]:
    """``(pid, stat fields)`` of every live (non-zombie) process in /proc. Raises OSError
    when /proc cannot be listed."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except OSError:
            continue
        if fields[0] != "Z":
            yield int(entry), fields


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``pid``, read from /proc."""
    try:
        return [child for child, fields in _live_processes() if int(fields[1]) == pid]
    except OSError:
        return []


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for zombies an init that does not reap keeps around: look.
    try:
        return any(int(fields[2]) == pgid for _, fields in _live_processes())
    except OSError:
        return True


def is_running(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: the signal test, which counts a zombie as alive
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def started_after(pid: int, path: str) -> bool:
    """Whether process ``pid`` started after ``path`` was last written: then it did not
    write it (a pidfile whose pid was reused). False where it cannot be told."""
    try:
        start_ticks = int(_stat_fields(pid)[19])  # field 22, starttime
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        started = boot + start_ticks / os.sysconf("SC_CLK_TCK")
        return started > os.stat(path).st_mtime + 1.0  # btime has whole seconds
    except (OSError, ValueError, IndexError, StopIteration):
        return False


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``wanted`` (never above the hard limit, never
    lower than it is), for this process and the workers it forks; returns the new limit.

    Distributions start processes with a soft limit of 1,024 open files, so a worker would
    refuse its 1,021st keep-alive client with EMFILE. nginx does the same with
    ``worker_rlimit_nofile``. Tornado uses epoll, so descriptors above 1,024 are fine; the
    command runner's children get the limits their command asks for.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft


def parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive SIGTERM when the master dies (Linux), so a
    SIGKILLed master leaves no nginx holding its port and no Celery worker behind."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:  # runs in the child between fork and exec
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(1)

    return preexec
