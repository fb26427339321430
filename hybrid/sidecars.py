"""Processes the master runs next to its workers: Celery workers and Celery beat.

``hybrid serve --celery "worker --concurrency 4" --celery-beat`` starts
``python -m celery -A APP worker --concurrency 4`` and ``python -m celery -A APP beat`` as
children of the master, with the project's settings (``DJANGO_SETTINGS_MODULE``, the
Python path, the groups backend as ``HYBRID_GROUPS``) and the master's stderr, so their
logs go where the workers' go. The master:

* **restarts one that dies**, after a pause that doubles from 1 s up to 30 s while it keeps
  dying young (alive 60 s, the pause is back to 1 s). One that dies within 10 s of its
  start five times in a row stops the master with that in one line: a wrong ``-A``, an
  option Celery refuses, a project that does not import.
* **stops them with the rest**: SIGTERM, Celery's warm shutdown (no new tasks; running
  ones finish), then SIGKILL to their process group after ``--graceful-timeout`` and a
  few seconds of slack. A task cut off that way is lost unless the task is ``acks_late``
  (Celery then redelivers it to the next worker).
* **reloads them** on ``hybrid reload`` (SIGHUP): a new Celery worker starts first and the
  old one gets its warm shutdown, so tasks keep being consumed; beat is stopped first and
  then started, never two at once (two beats send every periodic task twice).

Each sidecar gets a process group of its own: a Ctrl-C in the terminal reaches the master,
which stops them in order, not the Celery processes directly; and each gets SIGTERM from
the kernel if the master dies without stopping it.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from hybrid.config import Config
from hybrid.errors import ConfigError, ServerError
from hybrid.log import gen_log
from hybrid.procutil import describe_exit, kill_quietly, parent_death_signal

__all__ = ["Sidecar", "Sidecars", "celery_commands", "check"]

#: Restart pauses: the first, the cap, and how long a run must last to reset them.
FIRST_PAUSE = 1.0
MAX_PAUSE = 30.0
HEALTHY_AFTER = 60.0
#: A sidecar that dies this young this many times in a row stops the master.
YOUNG = 10.0
MAX_YOUNG_DEATHS = 5
#: Seconds a stopping sidecar gets beyond ``graceful_timeout`` before it is killed.
STOP_SLACK = 5.0


def celery_app(config: Config) -> str:
    """``--celery-app``, else the settings module's top package (``mysite.settings`` ->
    ``mysite``), which Celery searches for ``mysite.celery:app`` as ``celery -A`` does."""
    if config.celery_app:
        return config.celery_app
    module = config.settings_module or ""
    return module.partition(".")[0]


def celery_commands(config: Config) -> list[tuple[str, list[str]]]:
    """(name, argv) of every Celery process ``config`` asks for; ConfigError when one
    cannot be parsed."""
    commands: list[tuple[str, list[str]]] = []
    where = config.sources.get("celery", "--celery")
    app = celery_app(config)
    base = [sys.executable, "-m", "celery"]
    for n, spec in enumerate(config.celery, 1):
        try:
            words = shlex.split(spec)
        except ValueError as exc:
            raise ConfigError(f"{where}: {spec!r}: {exc}", option=where, value=spec) from None
        if not words or words[0] != "worker":
            raise ConfigError(
                f"{where}: {spec!r} is not a Celery worker command: write it as "
                "'worker --concurrency 4' (beat is --celery-beat)",
                option=where,
                value=spec,
            )
        has_app = any(w in ("-A", "--app") or w.startswith("--app=") for w in words)
        argv = [*base, *words] if has_app else [*base, "-A", app, *words]
        name = "celery worker" if len(config.celery) == 1 else f"celery worker {n}"
        commands.append((name, argv))
    if config.celery_beat:
        commands.append(("celery beat", [*base, "-A", app, "beat"]))
    if commands and not app:
        raise ConfigError(
            "--celery needs the project's Celery app: give --settings (its package holds "
            "celery.py) or --celery-app mysite.celery:app",
            option="--celery-app",
        )
    return commands


def check(config: Config) -> None:
    """In the master, before anything starts: Celery asked for but not installed, or a
    command that does not parse, is one :class:`ConfigError` line."""
    if not config.celery and not config.celery_beat:
        return
    celery_commands(config)
    # Found, not imported: the master stays free of Celery; its processes import it.
    if importlib.util.find_spec("celery") is None:
        raise ConfigError("--celery needs Celery: pip install 'hybrid[celery]'", option="--celery")


@dataclass
class Sidecar:
    """One supervised process (see the module docs)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    #: beat: the old one must be gone before a new one starts.
    exclusive: bool = False
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    started_wall: float = 0.0
    restarts: int = 0
    young_deaths: int = 0
    pause: float = FIRST_PAUSE
    next_start: float = 0.0
    #: Old processes told to stop (reload, stop): pid -> when.
    stopping: dict[int, float] = field(default_factory=dict)
    #: Processes of ours still to reap (the current one and the stopping ones).
    groups: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def state(self) -> str:
        if self.process is not None:
            return "running"
        return "stopping" if self.stopping else "waiting"

    def start(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            process_group=0,  # not the terminal's: a Ctrl-C reaches the master alone
            preexec_fn=parent_death_signal(),  # a SIGKILLed master leaves no Celery behind
        )
        self.groups.add(self.process.pid)
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        shown = shlex.join(["celery", *self.argv[3:]])  # without "python -m"
        gen_log.info("%s %d started: %s", self.name, self.process.pid, shown)

    def retire(self) -> None:
        """Warm shutdown of the current process (SIGTERM); reaped later."""
        if self.process is None:
            return
        pid = self.process.pid
        self.stopping[pid] = time.monotonic()
        self.process = None
        kill_quietly(pid, signal.SIGTERM)

    def reaped(self, pid: int, status: int, *, stopping_all: bool) -> None:
        """``pid`` (the current process or one told to stop) has exited with ``status``."""
        self.groups.discard(pid)
        _kill_group(pid)  # what it left in its session: prefork children of a killed worker
        if pid in self.stopping:
            del self.stopping[pid]
            gen_log.info("%s %d stopped (%s)", self.name, pid, describe_exit(status))
            return
        if self.process is None or self.process.pid != pid:
            return
        self.process.returncode = status  # reaped by the master's waitpid, not by Popen
        self.process = None
        if stopping_all:
            return
        lived = time.monotonic() - self.started_at
        if lived >= HEALTHY_AFTER:
            self.pause = FIRST_PAUSE
        self.young_deaths = self.young_deaths + 1 if lived < YOUNG else 0
        if self.young_deaths >= MAX_YOUNG_DEATHS:
            raise ServerError(
                f"{self.name} died {self.young_deaths} times within {YOUNG:.0f} s of starting "
                f"(last one {describe_exit(status)}); its own output above says why"
            )
        self.restarts += 1
        self.next_start = time.monotonic() + self.pause
        gen_log.warning(
            "%s %d %s; starting it again in %.0f s",
            self.name,
            pid,
            describe_exit(status),
            self.pause,
        )
        self.pause = min(MAX_PAUSE, self.pause * 2)


class Sidecars:
    """The master's Celery processes: start, restart, reload and stop them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        env = dict(os.environ)
        if config.settings_module:
            env["DJANGO_SETTINGS_MODULE"] = config.settings_module
        path = [p for p in (os.getcwd(), config.pythonpath) if p]
        if env.get("PYTHONPATH"):
            path.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(path)
        if config.groups:
            # Tasks send group messages (hybrid.tasks.progress) to the web workers' backend,
            # however the master was told of it (--groups included).
            env["HYBRID_GROUPS"] = config.groups
        self.items = [
            Sidecar(name, argv, env, exclusive=name == "celery beat")
            for name, argv in celery_commands(config)
        ]

    def __bool__(self) -> bool:
        return bool(self.items)

    def pids(self) -> set[int]:
        """Every live process of ours (current and stopping)."""
        return {pid for sidecar in self.items for pid in sidecar.groups}

    def manage(self) -> None:
        """Start what should run: at boot, after a death's pause, after a reload."""
        now = time.monotonic()
        for sidecar in self.items:
            if sidecar.process is not None or now < sidecar.next_start:
                continue
            if sidecar.exclusive and sidecar.stopping:
                continue  # beat: the old one first
            sidecar.start()

    def reaped(self, pid: int, status: int, *, stopping_all: bool) -> bool:
        """Handle ``pid``'s exit if it is ours; False if it is not."""
        for sidecar in self.items:
            if pid in sidecar.groups:
                sidecar.reaped(pid, status, stopping_all=stopping_all)
                return True
        return False

    def reload(self) -> None:
        """New code: a new Celery worker before the old one's warm shutdown; beat after."""
        for sidecar in self.items:
            if sidecar.process is None:
                continue
            sidecar.retire()
            sidecar.next_start = 0.0
        self.manage()

    def kill_overdue(self) -> None:
        """SIGKILL old processes that outlived their warm shutdown (reload)."""
        limit = self.config.graceful_timeout + STOP_SLACK
        now = time.monotonic()
        for sidecar in self.items:
            for pid, since in sidecar.stopping.items():
                if now - since > limit:
                    gen_log.warning("%s %d did not stop in time; killing it", sidecar.name, pid)
                    _kill_group(pid, include_leader=True)

    def begin_stop(self) -> None:
        for sidecar in self.items:
            sidecar.retire()

    def status(self) -> list[dict[str, object]]:
        return [
            {
                "name": s.name,
                "pid": s.pid,
                "state": s.state,
                "started": s.started_wall,
                "restarts": s.restarts,
            }
            for s in self.items
        ]


def _kill_group(pid: int, *, include_leader: bool = False) -> None:
    """SIGKILL the process group ``pid`` led; with ``include_leader`` the
    leader too, else only what it left behind."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        if include_leader:
            kill_quietly(pid, signal.SIGKILL)
