"""The private MariaDB (``scripts/mariadb``) and the benchmark project's table in it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from .paths import MARIADB, PROJECT


def start_mariadb(directory: str) -> dict[str, str]:
    """Start a MariaDB with its data in ``directory``: its ``MARIADB_*`` variables."""
    started = subprocess.run(
        ["bash", str(MARIADB), "start", directory],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        raise SystemExit(f"scripts/mariadb start failed ({started.returncode}):\n{started.stderr}")
    return dict(line.split("=", 1) for line in started.stdout.split() if "=" in line)


def stop_mariadb(directory: str) -> None:
    subprocess.run(["bash", str(MARIADB), "stop", directory], check=False)


def create_database(env: Mapping[str, str], name: str) -> None:
    """Drop and create the database ``name`` (utf8mb4) on the server ``MARIADB_*`` name."""
    import pymysql

    admin = pymysql.connect(
        host=env["MARIADB_HOST"],
        port=int(env["MARIADB_PORT"]),
        user=env["MARIADB_USER"],
        password=env["MARIADB_PASSWORD"],
        ssl_disabled=True,
    )
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    admin.close()


def ensure_connections(env: Mapping[str, str], needed: int) -> int:
    """Raise MariaDB's ``max_connections`` to ``needed`` when it is lower: its value after."""
    import pymysql

    admin = pymysql.connect(
        host=env["MARIADB_HOST"],
        port=int(env["MARIADB_PORT"]),
        user=env["MARIADB_USER"],
        password=env["MARIADB_PASSWORD"],
        ssl_disabled=True,
    )
    with admin.cursor() as cursor:
        cursor.execute("SELECT @@max_connections")
        current = int(cursor.fetchone()[0])
        if current < needed:
            cursor.execute(f"SET GLOBAL max_connections = {int(needed)}")
            current = needed
    admin.close()
    return current


def prepare_database(env: dict[str, str]) -> None:
    """Create ``BENCH_DATABASE``, the benchmark project's table, and its 100 rows."""
    create_database(env, env["BENCH_DATABASE"])
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v0"],
        env=env,
        cwd=PROJECT,
        check=True,
    )
    rows = (
        "import django; django.setup()\n"
        "from benchapp.models import ROWS, Row\n"
        "Row.objects.bulk_create([Row(pk=n, name=f'row {n}', value=n * 7,"
        " note='x' * (n % 50)) for n in range(1, ROWS + 1)])\n"
    )
    subprocess.run([sys.executable, "-c", rows], env=env, cwd=PROJECT, check=True)
