"""``--reload``: watch the project's source files and tell the master when they changed.

For development only, like ``runserver`` and gunicorn's ``--reload``: the master polls a
:class:`Reloader` on every turn of its loop and, once a burst of saves has settled, does
its usual rolling reload (SIGHUP's), so new workers import the new code while the old ones
keep serving; a change that breaks the import leaves the old workers serving (the reload
is abandoned) until the next save.

What is watched: the ``.py``, ``.html`` and ``.txt`` files under the current directory,
``--pythonpath`` and the settings module's package, skipping hidden directories, virtual
environments, ``__pycache__``, ``node_modules`` and ``site-packages``; a directory created
later is watched once it appears. The master imports nothing of the project for this: it
only lists directories and reads file metadata.

Two backends, one interface (:meth:`Reloader.changed`, called once per turn of the loop):

- **watchfiles** (the ``hybrid[reload]`` extra), when importable: inotify and the like,
  through its public ``watch()`` generator told to yield on a millisecond's timeout; each
  call collects what its native thread has queued without waiting, so the master's
  ``select`` loop never blocks on it;
- **polling** otherwise (Django's ``StatReloader``): a scan of the files' mtimes once a
  second, done inside the loop's 0.25 s tick.

Why not a Python thread writing to the master's wake pipe: no Python thread may exist in
the master, because nothing of the master may cross a fork: a thread holding a lock at a fork
would leave that lock held for ever in the new worker. watchfiles' native thread runs no
Python code and takes no lock a worker could need; a worker never touches the watcher it
inherits. A reload a quarter of a second later than a thread could make it matters not
for a developer's save.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from hybrid.config import Config

__all__ = ["Reloader", "source_roots", "watched_files"]

#: The suffixes of the files whose change reloads the workers.
SUFFIXES = (".py", ".html", ".txt")
#: Directory names never descended into (besides hidden ones and virtual environments).
IGNORED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
#: Seconds without a new change before a burst of saves reloads (once).
DEBOUNCE = 0.4
#: Seconds between two scans of the polling backend.
POLL_INTERVAL = 1.0


class _Backend(Protocol):
    def poll(self, now: float) -> set[str]: ...

    def close(self) -> None: ...


class Reloader:
    """Watches ``roots`` (default: :func:`source_roots` of a config) for changed sources.

    ``backend``: ``"auto"`` (watchfiles when installed, else polling), ``"watchfiles"`` or
    ``"poll"``. Call :meth:`changed` often (every turn of a loop); :meth:`close` at the end.
    """

    def __init__(
        self,
        roots: Iterable[Path],
        *,
        backend: str = "auto",
        debounce: float = DEBOUNCE,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.roots = _outermost(roots)
        self.debounce = debounce
        self._pending: set[str] = set()
        self._last_change = 0.0
        self._backend: _Backend
        if backend in ("auto", "watchfiles"):
            try:
                self._backend, backend = _WatchfilesBackend(self.roots), "watchfiles"
            except ImportError:
                if backend == "watchfiles":
                    raise
                backend = "poll"  # the reload extra is not installed
        if backend == "poll":
            self._backend = _PollBackend(self.roots, poll_interval)
        elif backend != "watchfiles":
            raise ValueError(f"unknown reload backend {backend!r}; use auto, watchfiles or poll")
        self.backend = backend

    @classmethod
    def for_config(cls, config: Config) -> Reloader:
        return cls(source_roots(config))

    def changed(self, now: float | None = None) -> list[str] | None:
        """The sources that changed, sorted, once they stopped changing for ``debounce``
        seconds (a burst of saves is one answer); None until then."""
        now = time.monotonic() if now is None else now
        fresh = self._backend.poll(now)
        if fresh:
            self._pending |= fresh
            self._last_change = now
            return None
        if self._pending and now - self._last_change >= self.debounce:
            changed, self._pending = sorted(self._pending), set()
            return changed
        return None

    def close(self) -> None:
        self._backend.close()


def source_roots(config: Config) -> list[Path]:
    """The directories watched for ``config``: the current directory, ``--pythonpath`` and
    the settings module's package (wherever it lives), outermost first, none twice."""
    roots = [Path.cwd()]
    if config.pythonpath:
        roots.append(Path(config.pythonpath))
    module = config.settings_module
    if module:
        package = sys.modules.get(module.split(".")[0])  # imported by Config.load()
        for path in getattr(package, "__path__", None) or ():
            roots.append(Path(path))
    return _outermost(roots)


def watched_files(roots: Iterable[Path]) -> Iterator[Path]:
    """Every file with a watched suffix under ``roots``."""
    for directory in _directories(roots):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(SUFFIXES) and entry.is_file():
                yield Path(entry.path)


def _outermost(roots: Iterable[Path]) -> list[Path]:
    """``roots`` resolved, existing, without those inside another one."""
    resolved = sorted({r.resolve() for r in roots if r.is_dir()}, key=lambda p: (len(p.parts), p))
    kept: list[Path] = []
    for root in resolved:
        if not any(root.is_relative_to(k) for k in kept):
            kept.append(root)
    return kept


def _directories(roots: Iterable[Path]) -> Iterator[Path]:
    """``roots`` and the directories below them that may hold sources."""
    for root in roots:
        for dirpath, dirnames, _ in os.walk(root):
            dirnames[:] = sorted(
                name for name in dirnames if _is_source_dir(os.path.join(dirpath, name))
            )
            yield Path(dirpath)


def _is_source_dir(path: str) -> bool:
    """A directory that may hold sources (as :func:`_directories` would descend into)."""
    name = os.path.basename(path)
    return (
        os.path.isdir(path)
        and not name.startswith(".")
        and name not in IGNORED_DIRS
        and not os.path.exists(os.path.join(path, "pyvenv.cfg"))
    )


def _is_source(path: str) -> bool:
    parts = Path(path).parts
    return path.endswith(SUFFIXES) and not any(
        p.startswith(".") or p in IGNORED_DIRS for p in parts[:-1]
    )


class _PollBackend:
    """Compares every watched file's (mtime, size) with the last scan's, once a second."""

    def __init__(self, roots: list[Path], interval: float) -> None:
        self.roots = roots
        self.interval = interval
        self._snapshot = self._scan()
        self._next_scan = 0.0

    def _scan(self) -> dict[str, tuple[int, int]]:
        snapshot = {}
        for path in watched_files(self.roots):
            try:
                stat = path.stat()
            except OSError:
                continue  # deleted between the listing and the stat
            snapshot[str(path)] = (stat.st_mtime_ns, stat.st_size)
        return snapshot

    def poll(self, now: float) -> set[str]:
        if now < self._next_scan:
            return set()
        self._next_scan = now + self.interval
        old, self._snapshot = self._snapshot, self._scan()
        return {
            p for p in old.keys() | self._snapshot.keys() if old.get(p) != self._snapshot.get(p)
        }

    def close(self) -> None:
        self._snapshot.clear()


class _WatchfilesBackend:
    """watchfiles' native watcher on every source directory (one level each, so virtual
    environments and ``.git`` under the current directory get no watch at all). A source
    directory that appears (``startapp``, a new package) gets its watch at once, and the
    sources already written into it count as changed."""

    def __init__(self, roots: list[Path]) -> None:
        import watchfiles

        self._watch = watchfiles.watch
        self._added = watchfiles.Change.added
        self._directories = [str(d) for d in _directories(roots)]
        self._changes = self._start()

    def _start(self) -> Iterator[set[tuple[Any, str]]]:
        # watchfiles' public generator, told to come back within about a millisecond
        # (yield_on_timeout) so that the master collects changes without waiting.
        changes: Iterator[set[tuple[Any, str]]] = self._watch(
            *self._directories,
            watch_filter=None,
            debounce=1,
            step=1,
            rust_timeout=1,
            yield_on_timeout=True,
            recursive=False,
            raise_interrupt=False,
        )
        next(changes, None)  # the watch starts at the generator's first step: now
        return changes

    def poll(self, now: float) -> set[str]:
        # Returns within a few milliseconds: what the native thread queued, or nothing.
        changes = next(self._changes, set())
        found = {path for _, path in changes if _is_source(path)}
        new = [
            Path(path)
            for change, path in changes
            if change == self._added and path not in self._directories and _is_source_dir(path)
        ]
        if new:
            self.close()
            self._directories += [str(d) for d in _directories(new)]
            self._changes = self._start()
            found.update(str(path) for path in watched_files(new))
        return found

    def close(self) -> None:
        close = getattr(self._changes, "close", None)
        if close is not None:
            close()
