"""What the command-runner tests check around every test: process groups, zombies, and
that no test leaves a global behind (a SIGCHLD handler, a running command, a changed
command limit). ``no_global_surprises`` is autouse where a test module imports it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid.process import DEFAULT_MAX_CONCURRENT, get_max_concurrent, running_commands


def _proc_stats() -> list[tuple[int, str, int, int]]:
    """(pid, state, ppid, pgrp) of every process /proc shows."""
    stats = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        stats.append((int(entry), fields[0].decode(), int(fields[1]), int(fields[2])))
    return stats


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    return [pid for pid, state, _, pgrp in _proc_stats() if pgrp == pgid and state != "Z"]


def my_zombies() -> list[int]:
    """Children of this test process that exited and were never reaped."""
    me = os.getpid()
    return [pid for pid, state, ppid, _ in _proc_stats() if ppid == me and state == "Z"]


def alive(pid: int) -> bool:
    return any(p == pid and state != "Z" for p, state, _, _ in _proc_stats())


@pytest.fixture(autouse=True)
def no_global_surprises() -> Iterator[None]:
    """Around every test: SIGCHLD untouched, no command left running, and the limit a test
    set stayed with its own loop's gate."""
    before = signal.getsignal(signal.SIGCHLD)
    yield
    assert get_max_concurrent() == DEFAULT_MAX_CONCURRENT
    assert signal.getsignal(signal.SIGCHLD) == before
    assert running_commands() == []
