"""A running master, from inside and outside: its pidfile, its status file, its signals.

With ``--pidfile F`` the master (:mod:`hybrid.arbiter`) writes its pid to ``F`` and, every
second and at once when a reload progresses, its status (workers, nginx, reloads) to
``F.json``, replaced atomically; it removes both when it stops. Everything else here is
what ``hybrid status``, ``hybrid metrics``, ``hybrid reload`` and ``hybrid stop`` do with
those files: read the status, signal the master, wait until a reload or a stop is done.

Every failure is a :class:`~hybrid.errors.ControlError` whose message is one line saying
what to do; the CLI prints it after ``PROG: error:``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from hybrid.errors import ControlError
from hybrid.log import gen_log
from hybrid.procutil import is_running, started_after

__all__ = [
    "DEFAULT_WAIT",
    "format_status",
    "metrics_urls",
    "read_status",
    "remove_pidfile",
    "signal_and_wait",
    "signal_master",
    "status_path",
    "write_pidfile",
    "write_status",
]

#: How long ``reload --wait`` / ``stop --wait`` wait by default (boots and drains included).
DEFAULT_WAIT = 120.0

#: How often a waiting ``reload`` / ``stop`` looks at the master.
_POLL_INTERVAL = 0.1


def status_path(pidfile: str) -> str:
    """The status file the master keeps next to its pidfile (``hybrid status`` reads it)."""
    return pidfile + ".json"


# -- the master's side -----------------------------------------------------------------------


def write_pidfile(pidfile: str, pid: int) -> None:
    """Write ``pid`` to ``pidfile``. Raises OSError."""
    with open(pidfile, "w") as f:
        f.write(f"{pid}\n")


def write_status(pidfile: str, pid: int, status: dict[str, object]) -> None:
    """Replace the status file of ``pidfile`` atomically with ``status`` (JSON); a failure
    is logged, never raised: the master keeps serving."""
    path = status_path(pidfile)
    tmp = f"{path}.{pid}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.replace(tmp, path)
    except OSError as exc:
        gen_log.warning("cannot write status file %s: %s", path, exc.strerror)


def remove_pidfile(pidfile: str, pid: int) -> None:
    """Remove ``pidfile`` and its status file if ``pidfile`` still names ``pid`` (another
    master may have taken it over); errors are ignored."""
    try:
        with open(pidfile) as f:
            ours = f.read().strip() == str(pid)
        if ours:
            os.unlink(pidfile)
            os.unlink(status_path(pidfile))
    except OSError:
        pass


# -- the commands' side ----------------------------------------------------------------------


def read_status(pidfile: str) -> dict[str, Any]:
    """The running master's status. Raises :class:`ControlError` when there is no status
    file, it cannot be read, or the master it names is gone."""
    path = status_path(pidfile)
    try:
        with open(path) as f:
            status = json.load(f)
        os.kill(int(status["master"]), 0)
    except FileNotFoundError:
        raise ControlError(
            f"no status file {path!r}: is `hybrid serve --pidfile {pidfile}` running?",
            pidfile=pidfile,
        ) from None
    except ProcessLookupError:
        raise ControlError(
            f"master {status['master']} is not running (stale {path!r})", pidfile=pidfile
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ControlError(f"cannot read {path!r}: {exc}", pidfile=pidfile) from None
    return dict(status)


def metrics_urls(status: dict[str, Any]) -> dict[int, str]:
    """Each worker's metrics URL by port, from a status. Raises :class:`ControlError`
    when the workers serve none."""
    urls = {int(w["port"]): str(w["metrics"]) for w in status["workers"] if w.get("metrics")}
    if not urls:
        raise ControlError(
            "the workers serve no metrics: start hybrid serve with --metrics-port PORT"
        )
    return urls


def format_status(status: dict[str, Any], now: float | None = None) -> str:
    """A status as ``hybrid status`` prints it: the master's line, then a table with one
    row per worker (its event loop last), then one row per Celery process, if any."""
    now = time.time() if now is None else now
    nginx = status.get("nginx")
    lines = [
        f"master {status['master']}, up {_duration(now - status['started'])}"
        + (f", nginx {nginx['pid']} on port {nginx['port']}" if nginx else "")
    ]
    rows: list[tuple[str, ...]] = [
        ("PORT", "PID", "STATE", "UPTIME", "REQUESTS", "RSS MB", "RESTARTS", "LOOP")
    ]
    for w in status["workers"]:
        rss = "-" if w["rss_mb"] is None else f"{w['rss_mb']:.0f}"
        rows.append(
            (
                str(w["port"]),
                str(w["pid"]),
                w["state"],
                _duration(now - w["started"]),
                str(w["requests"]),
                rss,
                str(w["restarts"]),
                w.get("loop") or "-",  # none while booting (and from an older master)
            )
        )
    lines += _table(rows)
    celery = status.get("celery") or []
    if celery:
        rows = [("CELERY", "PID", "STATE", "UPTIME", "RESTARTS")]  # a second table
        for c in celery:
            running = c["pid"] is not None
            rows.append(
                (
                    c["name"],
                    str(c["pid"]) if running else "-",
                    c["state"],
                    _duration(now - c["started"]) if running else "-",
                    str(c["restarts"]),
                )
            )
        lines += _table(rows)
    return "\n".join(lines)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def signal_master(pidfile: str, signum: int) -> int:
    """Send ``signum`` to the master whose pid is in ``pidfile``; return that pid.

    Raises :class:`ControlError` when the pidfile cannot be read, is stale (its pid now
    names a process started after it was written, or none) or the master is not ours to
    signal."""
    try:
        with open(pidfile) as f:
            text = f.read().strip()
    except OSError as exc:
        raise ControlError(
            f"cannot read pidfile {pidfile!r} ({exc.strerror}): is "
            f"`hybrid serve --pidfile {pidfile}` running?",
            pidfile=pidfile,
        ) from None
    if not text.isdigit():
        raise ControlError(f"pidfile {pidfile!r} does not hold a pid", pidfile=pidfile)
    pid = int(text)
    if started_after(pid, pidfile):
        raise ControlError(
            f"process {text} started after {pidfile!r} was written, so it is not the master "
            "that wrote it (stale pidfile: was hybrid serve killed?)",
            pidfile=pidfile,
        )
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise ControlError(
            f"no process {text} (stale pidfile {pidfile!r}); is hybrid serve running?",
            pidfile=pidfile,
        ) from None
    except PermissionError:
        raise ControlError(
            f"not allowed to signal process {text}; run as its user", pidfile=pidfile
        ) from None
    return pid


def signal_and_wait(pidfile: str, signum: int, wait: float | None) -> float | None:
    """Signal the master (SIGHUP: reload, SIGTERM: stop); with ``wait`` seconds, return
    once the master has exited (stop), or once the reload is done: every port served by a
    worker started after the signal and every old worker gone (drained, so no keep-alive
    connection can reach old code). Returns the seconds it took, or None without ``wait``.

    Raises :class:`ControlError` naming what is pending when ``wait`` runs out, and at
    once when the master abandons the reload or exits during it.
    """
    if wait is None:
        signal_master(pidfile, signum)
        return None
    before = read_status(pidfile)
    master = int(before["master"])
    old = {int(w["pid"]) for w in before["workers"]}
    reloads = int((before.get("reload") or {}).get("count", 0))
    started = time.monotonic()
    signal_master(pidfile, signum)
    deadline = started + wait
    pending = "the master has not started the reload"
    while time.monotonic() < deadline:
        time.sleep(_POLL_INTERVAL)
        if not is_running(master):
            if signum == signal.SIGTERM:
                return time.monotonic() - started
            raise ControlError(f"the master {master} exited during the reload", pidfile=pidfile)
        if signum != signal.SIGHUP:
            continue
        progress = _reload_progress(pidfile, reloads, old)
        if progress is None:
            continue
        pending, abandoned = progress
        if abandoned:
            raise ControlError(
                f"reload abandoned: {abandoned}; the old workers keep serving (see the "
                "master's log)",
                pidfile=pidfile,
            )
        if not pending:
            return time.monotonic() - started
    if signum == signal.SIGTERM:
        pending = f"master {master} still running"
    raise ControlError(f"not done after {wait:g} s ({pending}); see its log", pidfile=pidfile)


def _reload_progress(pidfile: str, reloads: int, old: set[int]) -> tuple[str, str | None] | None:
    """``(what is pending, "" when done; why it was abandoned or None)`` for the reload
    after ``reloads``; None while the status file cannot be read (it is being replaced)."""
    try:
        with open(status_path(pidfile)) as f:
            status = json.load(f)
        workers = status["workers"]
        reload = status["reload"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if int(reload["count"]) <= reloads:
        return "the master has not started the reload", None
    if reload["abandoned"]:
        return "", str(reload["abandoned"])
    ports = {int(w["port"]) for w in workers}
    renewed = {int(w["port"]) for w in workers if w["state"] == "serving" and w["pid"] not in old}
    waiting = sorted(ports - renewed)
    draining = sorted(int(w["pid"]) for w in workers if w["pid"] in old)
    if waiting:
        return "ports still on old workers: " + ", ".join(map(str, waiting)), None
    if draining:
        return "old workers still draining: " + ", ".join(map(str, draining)), None
    return "", None
