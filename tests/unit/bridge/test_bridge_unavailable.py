"""A database that cannot be reached: 503 with Retry-After, the outage logged once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from conftest import free_port
from django.db.backends.signals import connection_created
from tornado.httpclient import AsyncHTTPClient

from hybrid import Config, DjangoHandler, run_sync
from hybrid.bridge.fallback import DjangoFallbackHandler, make_asgi_handler
from hybrid.db import outage
from hybrid.web import HybridApplication

#: A MySQL database on a loopback port nothing listens on.
ALIAS = "offline"


class Lookup(DjangoHandler):
    async def get(self) -> None:
        from django.contrib.auth.models import User

        user = await User.objects.using(ALIAS).aget(pk=1)
        self.write({"user": user.pk})


class ThreadLookup(DjangoHandler):
    async def get(self) -> None:
        from django.db import connections

        def count() -> int:
            with connections[ALIAS].cursor() as cursor:
                cursor.execute("SELECT 1")
                return int(cursor.fetchone()[0])

        self.write({"one": await run_sync(count)})


class Broken(DjangoHandler):
    async def get(self) -> None:
        from django.db import OperationalError

        raise OperationalError(1045, "Access denied for user")


@pytest.fixture
def offline() -> Iterator[str]:
    import pymysql
    from django.db import connections

    pymysql.version_info = (2, 2, 7, "final", 0)
    pymysql.install_as_MySQLdb()
    conf = {
        "ENGINE": "django.db.backends.mysql",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "USER": "nobody",
        "NAME": "offline",
        "OPTIONS": {"connect_timeout": 2},
    }
    full = connections.configure_settings(
        {"default": dict(connections.settings["default"]), ALIAS: conf}
    )
    connections.settings[ALIAS] = full[ALIAS]
    try:
        yield ALIAS
    finally:
        for alias in list(outage._current):
            outage.record_reachable(alias or "")
        connections.settings.pop(ALIAS, None)


@pytest.fixture
def app(http_port: int, offline: str) -> HybridApplication:
    routes = [
        (r"/lookup", Lookup),
        (r"/thread", ThreadLookup),
        (r"/broken", Broken),
        (r".*", DjangoFallbackHandler, {"asgi_app": make_asgi_handler(2)}),
    ]
    return HybridApplication(routes, config=Config(db_threads=2), port=http_port)


@pytest.mark.gen_test(timeout=20)
async def test_unreachable_database_is_503_with_retry_after_logged_once(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        responses = [
            await http_client.fetch(base_url + path, raise_error=False)
            for path in ("/lookup", "/thread", "/lookup", "/thread", "/lookup")
        ]
        connection_created.send(sender=None, connection=SimpleNamespace(alias=ALIAS))
    assert [r.code for r in responses] == [503] * 5
    assert all(r.headers["Retry-After"] == "5" for r in responses)
    assert b"Service Unavailable" in responses[0].body
    assert b"2003" not in responses[0].body  # no detail for the client
    logged = [r for r in caplog.records if r.name in ("hybrid.application", "django.request")]
    assert [(r.name, r.levelno) for r in logged] == [
        ("hybrid.application", logging.ERROR),
        ("hybrid.application", logging.INFO),
    ]
    assert f"database {ALIAS!r} cannot be reached" in logged[0].getMessage()
    assert "(5 requests answered 503)" in logged[1].getMessage()
    assert not outage.in_outage()


@pytest.mark.gen_test(timeout=10)
async def test_other_database_errors_stay_500(
    http_client: AsyncHTTPClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = await http_client.fetch(base_url + "/broken", raise_error=False)
    assert response.code == 500
    assert "Retry-After" not in response.headers
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"] == [
        "Internal Server Error: /broken"
    ]
    assert not outage.in_outage()
