"""An unreachable database: told apart from other errors, its outage logged once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from conftest import free_port
from django.db import OperationalError, ProgrammingError
from django.db.backends.signals import connection_created

from hybrid.db import outage
from hybrid.db.connection import connect
from hybrid.db.execute import django_error


@pytest.fixture(autouse=True)
def _no_outage() -> Iterator[None]:
    import pymysql

    # Django's MySQL backend on PyMySQL, as the suite's MariaDB tests run it.
    pymysql.version_info = (2, 2, 7, "final", 0)
    pymysql.install_as_MySQLdb()
    yield
    for alias in list(outage._current):
        outage.record_reachable(alias or "")


def test_mysql_codes_tell_an_unreachable_database_from_other_errors() -> None:
    for code in (2002, 2003, 2006, 2013, 1040):
        assert outage.unreachable(OperationalError(code, "gone"))
    assert not outage.unreachable(OperationalError(1045, "Access denied"))
    assert not outage.unreachable(OperationalError(1205, "Lock wait timeout exceeded"))
    assert not outage.unreachable(ProgrammingError(1146, "no such table"))
    assert not outage.unreachable(RuntimeError(2003))


@pytest.mark.gen_test(timeout=10)
async def test_the_native_path_raises_an_unreachable_error_on_connect() -> None:
    with pytest.raises(Exception) as info:
        await connect(
            host="127.0.0.1", port=free_port(), user="nobody", password="", connect_timeout=2
        )
    error = django_error(info.value)
    assert isinstance(error, OperationalError)
    assert error.args[0] == 2003
    assert outage.unreachable(error)


def test_the_thread_path_raises_an_unreachable_error_on_connect() -> None:
    from django.db import connections

    conf = {
        "ENGINE": "django.db.backends.mysql",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "USER": "nobody",
        "NAME": "offline",
        "OPTIONS": {"connect_timeout": 2},
    }
    full = connections.configure_settings(
        {"default": dict(connections.settings["default"]), "offline": conf}
    )
    connections.settings["offline"] = full["offline"]
    try:
        with pytest.raises(OperationalError) as info:
            connections["offline"].ensure_connection()
        assert outage.unreachable(info.value)
        assert outage.failed_alias(info.value) == "offline"
    finally:
        del connections["offline"]
        connections.settings.pop("offline")


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    error = OperationalError(2003, "Can't connect to MySQL server")
    with caplog.at_level(logging.INFO, logger="hybrid.application"):
        for _ in range(5):
            outage.record_unreachable(error)
        assert outage.in_outage()
        connection_created.send(sender=None, connection=SimpleNamespace(alias="other"))
        connection_created.send(sender=None, connection=SimpleNamespace(alias="default"))
    assert not outage.in_outage()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(messages) == 2
    assert messages[0][0] == logging.ERROR
    assert "database ? cannot be reached" in messages[0][1]
    assert "Can't connect to MySQL server" in messages[0][1]
    assert messages[1][0] == logging.INFO
    assert "reachable again" in messages[1][1] and "(5 requests answered 503)" in messages[1][1]
