"""Fixtures shared by the suite. Factories, not values (docs/design.md, "Code style").

The Django project under test is ``tests/projects/testproject`` on SQLite; its database lives in a
temporary directory for the session and is migrated once. Process-level tests start the
real ``hybrid serve`` in its own session (process group) and check that nothing of it is
left afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

pytest_plugins = ["loops", "celery_workers"]

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
#: The Django projects the suite serves, importable by name (``testproject.settings``).
PROJECTS_DIR = TESTS_DIR / "projects"
#: Helper modules of the suite (``waiting``, ``dbnative``) and its ``loops`` plugin.
SUPPORT_DIR = TESTS_DIR / "support"

_db_dir = tempfile.mkdtemp(prefix="hybrid-tests-")
os.environ["TESTPROJECT_DB"] = os.path.join(_db_dir, "db.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

import django  # noqa: E402

django.setup()


@pytest.fixture(scope="session", autouse=True)
def _migrated_database() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_ports() -> Callable[[int], list[int]]:
    """``free_ports(n)``: n distinct free ports."""

    def make(count: int) -> list[int]:
        ports: set[int] = set()
        while len(ports) < count:
            ports.add(free_port())
        return sorted(ports)

    return make


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is ``sid`` (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            pids.append(int(entry.name))
    return pids


def hybrid_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECTS_DIR), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.update(extra)
    return env


@dataclass
class HybridProcess:
    """A running ``hybrid serve`` master, started in a session of its own."""

    proc: subprocess.Popen[bytes]
    ports: list[int]
    stderr_path: Path

    @property
    def stderr(self) -> str:
        """Everything the master and its workers wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, port: int, path: str) -> str:
        return f"http://127.0.0.1:{port}{path}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every port answers and the master has logged that port's worker as
        serving, failing with the master's output if it dies.

        A bound port accepts (and a worker may answer) a moment before the master reads
        the worker's ready notice, so answering alone does not mean the line is logged.
        """
        pending = set(self.ports)

        def every_port_answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"hybrid serve exited {self.proc.returncode}:\n{self.stderr}")
            pending.difference_update([port for port in pending if _answers(port)])
            if pending:
                return False
            logged = self.stderr
            pending.update(
                port
                for port in self.ports
                if not re.search(rf"worker \d+ serving https?://\S+:{port}\b", logged)
            )
            return not pending

        wait_until(
            every_port_answers, timeout, message=lambda: f"ports {sorted(pending)} not serving"
        )

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str]:
        """Signal the master, wait for it, return (exit status, stderr)."""
        self.proc.send_signal(signum)
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.stderr


def _answers(port: int) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/hybrid/pid")
        conn.getresponse().read()
        return True
    except OSError:  # refused, reset, or timed out (http.client's errors are OSErrors too)
        return False
    finally:
        conn.close()


def wait_session_empty(sid: int, timeout: float = 10.0) -> list[int]:
    """Wait until no process of session ``sid`` is left, failing with those still there;
    returns that empty list (callers ``assert wait_session_empty(pid) == []``)."""
    wait_until(
        lambda: not session_pids(sid),
        timeout,
        message=lambda: f"processes of session {sid} still running: {session_pids(sid)}",
    )
    return []


def status_when_serving(pidfile: Path, ports: list[int]) -> dict[str, Any] | None:
    """The master's status file (``F.json`` next to ``--pidfile F``, rewritten every second)
    once it lists a serving worker on every port; None until then."""
    try:
        status = json.loads(Path(f"{pidfile}.json").read_text())
    except (OSError, ValueError):  # not written yet
        return None
    serving = {w["port"] for w in status["workers"] if w["state"] == "serving"}
    return dict(status) if serving >= set(ports) else None


@pytest.fixture
def hybrid_serve(tmp_path: Path) -> Iterator[Callable[..., HybridProcess]]:
    """``hybrid_serve(*args, ports=[...], env=None, wait=True, cwd=REPO_DIR)``: start the
    real CLI.

    Every master is killed with its whole session at teardown, whatever the test did.
    """
    started: list[HybridProcess] = []

    def start(
        *args: str,
        ports: list[int],
        env: dict[str, str] | None = None,
        wait: bool = True,
        settings: str | None = "testproject.settings",
        cwd: Path = REPO_DIR,
    ) -> HybridProcess:
        argv = [sys.executable, "-m", "hybrid", "serve", "--ports", ",".join(map(str, ports))]
        if settings:
            argv += ["--settings", settings]
        stderr_path = tmp_path / f"hybrid-{len(started)}.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [*argv, *args],
                env=env or hybrid_env(),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        server = HybridProcess(proc, ports, stderr_path)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        for pid in session_pids(server.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def run_hybrid(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m hybrid ARGS`` to the end (a command that must exit by itself), with
    ``hybrid_env(**env)``, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "hybrid", *args],
        env=hybrid_env(**env),
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def missing_dependency(what: str) -> None:
    """Skip loudly when a system package is missing, but fail under CI (env ``CI``)."""
    message = f"{what} is not installed: run scripts/bootstrap (as root) to install it"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


@dataclass
class MariaDB:
    """A private MariaDB server started by ``scripts/mariadb`` for the session."""

    env: dict[str, str]

    def connect(self) -> Any:
        """A new PyMySQL connection to the test database (autocommit)."""
        import pymysql

        return pymysql.connect(
            host=self.env["MARIADB_HOST"],
            port=int(self.env["MARIADB_PORT"]),
            user=self.env["MARIADB_USER"],
            password=self.env["MARIADB_PASSWORD"],
            database=self.env["MARIADB_DATABASE"],
            autocommit=True,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            conn.close()


@contextmanager
def mariadb_server(directory: Path, *migrate: str) -> Iterator[MariaDB]:
    """``scripts/mariadb start DIR`` on a free port with a ``hybrid_test`` database, the
    test project migrated into it (``migrate``: app labels, default all); stopped after."""
    script = REPO_DIR / "scripts" / "mariadb"
    started = subprocess.run(
        ["bash", str(script), "start", str(directory)], capture_output=True, text=True
    )
    if started.returncode == 3:
        # Installed, the suite starts its own server (scripts/mariadb start DIR) by itself.
        missing_dependency(
            "MariaDB (Debian package mariadb-server; the tests then start a private server "
            "themselves with `scripts/mariadb start DIR`)"
        )
    if started.returncode != 0:
        raise AssertionError(f"scripts/mariadb start failed:\n{started.stderr}")
    env = dict(line.split("=", 1) for line in started.stdout.split())
    env["MARIADB_DATABASE"] = "hybrid_test"
    try:
        import pymysql

        admin = pymysql.connect(
            host=env["MARIADB_HOST"],
            port=int(env["MARIADB_PORT"]),
            user=env["MARIADB_USER"],
            password=env["MARIADB_PASSWORD"],
        )
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE IF NOT EXISTS hybrid_test CHARACTER SET utf8mb4")
        admin.close()
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", *migrate, "-v0"],
            env=hybrid_env(**env, DJANGO_SETTINGS_MODULE="testproject.settings_mysql"),
            cwd=REPO_DIR,
            check=True,
            capture_output=True,
        )
        yield MariaDB(env)
    finally:
        subprocess.run(["bash", str(script), "stop", str(directory)], check=False)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """The session's MariaDB (:func:`mariadb_server`), shared by every test that needs one."""
    with mariadb_server(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


@dataclass
class RedisServer:
    """A private Redis server run by ``scripts/redis`` in ``directory``."""

    directory: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return self.env["REDIS_URL"]

    @property
    def port(self) -> int:
        return int(self.env["REDIS_PORT"])

    def script(self, action: str) -> dict[str, str]:
        """Run ``scripts/redis ACTION DIR``; the env lines it printed (start, restart)."""
        done = subprocess.run(
            ["bash", str(REPO_DIR / "scripts" / "redis"), action, str(self.directory)],
            capture_output=True,
            text=True,
            env={**os.environ, "BIND": self.env.get("REDIS_HOST", "127.0.0.1")},
        )
        if done.returncode == 3:
            missing_dependency(
                "Redis (Debian package redis-server; the tests then start a private server "
                "themselves with `scripts/redis start DIR`)"
            )
        if done.returncode != 0:
            raise AssertionError(f"scripts/redis {action} failed:\n{done.stderr}")
        return dict(line.split("=", 1) for line in done.stdout.split())

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        self.script("kill")

    def restart(self) -> None:
        """Start it again on the same port."""
        self.env = self.script("restart")

    def command(self, *args: str) -> Any:
        """One command on a fresh connection (redis-py's sync client)."""
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def client_names(self) -> list[str]:
        """The names of the connected clients (``CLIENT LIST``), unnamed ones as ''."""
        listing = self.command("CLIENT", "LIST")
        if isinstance(listing, bytes):
            listing = listing.decode()
        names = []
        for line in str(listing).splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            names.append(fields.get("name", ""))
        return names


@contextmanager
def redis_server(directory: Path, bind: str = "127.0.0.1") -> Iterator[RedisServer]:
    """``scripts/redis start DIR`` on a free port of ``bind``; stopped after."""
    server = RedisServer(directory, {"REDIS_HOST": bind})
    server.env = server.script("start")
    try:
        yield server
    finally:
        server.script("stop")


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's Redis, shared by tests that do not stop it."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, for tests that kill and restart it."""
    with redis_server(tmp_path / "redis") as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers follow from where a test lives and what it uses, so nobody has to remember
    them: ``e2e`` for tests/e2e (real ``hybrid serve``, nginx, browsers), ``mysql`` for
    tests on the private MariaDB, ``browser`` for tests that drive headless Chromium.
    ``-m "not e2e"`` is the quick loop; ``-m "not browser"`` is what .ci/run's second
    stack runs."""
    e2e_dir = TESTS_DIR / "e2e"
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.path.is_relative_to(e2e_dir):
            item.add_marker(pytest.mark.e2e)
        if "mariadb" in fixtures:
            item.add_marker(pytest.mark.mysql)
        if "redis" in fixtures or "private_redis" in fixtures:
            item.add_marker(pytest.mark.redis)
        if "chromium" in fixtures:
            item.add_marker(pytest.mark.browser)
