"""The Django and aiomysql internals hybrid declares, on the versions installed here.

Every probe passes on the supported versions; taking one internal away from the real class
makes the startup check fail in one line naming the library, its version and the name that
is gone, in process and from ``hybrid serve``. The version differences between Django 5.2
and 6.0 are decided by :mod:`hybrid._compat.django`, and hybrid.db reaches Django's
private names through it only.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import django
import pytest
from conftest import REPO_DIR, hybrid_env

import hybrid
from hybrid._compat import aiomysql as aiomysql_compat
from hybrid._compat import check
from hybrid._compat import django as django_compat
from hybrid.errors import UnsupportedVersionError


def test_the_installed_versions_are_the_verified_ones() -> None:
    django_library = django_compat.library()
    aiomysql_library = aiomysql_compat.library()
    assert django_library is not None and aiomysql_library is not None
    assert ".".join(map(str, django.VERSION[:2])) in django_library.verified
    aiomysql_series = ".".join(importlib.metadata.version("aiomysql").split(".")[:2])
    assert aiomysql_series in aiomysql_library.verified
    assert django_compat.django6() is (django.VERSION >= (6, 0))
    check()


def _error() -> UnsupportedVersionError:
    with pytest.raises(UnsupportedVersionError) as info:
        check()
    return info.value


def test_a_method_gone_from_django_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db.models import QuerySet

    monkeypatch.delattr(QuerySet, "_prepare_for_bulk_create")
    error = _error()
    message = str(error)
    assert "\n" not in message
    assert message.startswith(
        f"hybrid {hybrid.__version__} does not support Django {django.__version__}: missing "
        "django.db.models.QuerySet._check_bulk_create_options/_prepare_for_bulk_create ("
    )
    assert message.endswith("Verified on Django 5.2, 6.0: pip install 'Django>=5.2.18,<6.1'")
    assert (error.library, error.version) == ("Django", django.__version__)
    assert len(error.missing) == 1


def test_a_signal_internal_gone_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.dispatch import Signal

    monkeypatch.delattr(Signal, "_live_receivers")
    assert "django.dispatch.Signal._live_receivers (" in str(_error())


def test_the_insert_returning_api_of_the_installed_django_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db.backends.mysql.operations import DatabaseOperations

    if django_compat.django6():
        from django.db.backends.base.operations import BaseDatabaseOperations

        monkeypatch.delattr(BaseDatabaseOperations, "fetch_returned_rows")
    else:
        monkeypatch.delattr(DatabaseOperations, "fetch_returned_insert_rows")
    assert "DatabaseOperations.fetch_returned_* (" in str(_error())


def test_an_aiomysql_internal_gone_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiomysql

    monkeypatch.delattr(aiomysql.Connection, "_connect")
    error = _error()
    version = importlib.metadata.version("aiomysql")
    assert str(error).startswith(
        f"hybrid {hybrid.__version__} does not support aiomysql {version}: missing "
        "aiomysql.Connection._connect ("
    )
    assert str(error).endswith("pip install 'aiomysql>=0.2,<0.4'")


def test_the_version_differences_are_decided_by_the_compat_module() -> None:
    from django.db import DatabaseError
    from django.db.models import Model

    class Thing(Model):
        class Meta:
            app_label = "compat_django_test"

    error = django_compat.not_updated(Thing(), "no row")
    assert isinstance(error, DatabaseError) and str(error) == "no row"
    assert isinstance(error, getattr(Thing, "NotUpdated", DatabaseError))
    assert (type(error).__name__ == "NotUpdated") is django_compat.django6()
    assert django_compat.bulk_create_atomic(False) is not django_compat.django6()


def test_hybrid_db_reaches_django_through_the_compat_module_only() -> None:
    """No ``obj._name`` of Django's in hybrid.db and hybrid.bridge: only hybrid's own
    (``self._x``) and Django's documented ``_meta``, ``_state``, ``_base_manager``."""
    allowed = {"_meta", "_state", "_base_manager"}
    offenders = []
    for folder in ("db", "bridge"):
        for path in sorted((Path(hybrid.__file__).parent / folder).glob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not node.attr.startswith("_hybrid")
                    and node.attr not in allowed
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                    and not (isinstance(node.value, ast.Name) and node.value.id.endswith("compat"))
                ):
                    offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert offenders == []


SETTINGS_WITHOUT_AN_INTERNAL = """\
from testproject.settings import *  # noqa: F403

from django.dispatch import Signal

del Signal._live_receivers  # as if the installed Django had dropped it
"""


def test_serve_refuses_a_django_without_an_internal_in_one_line(
    tmp_path: Path, free_ports: Callable[[int], list[int]]
) -> None:
    (tmp_path / "settings_no_internal.py").write_text(SETTINGS_WITHOUT_AN_INTERNAL)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybrid",
            "serve",
            "--ports",
            str(free_ports(1)[0]),
            "--settings",
            "settings_no_internal",
            "--pythonpath",
            str(tmp_path),
        ],
        env=hybrid_env(),
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert (
        f"does not support Django {django.__version__}: missing "
        "django.dispatch.Signal._live_receivers (" in lines[0]
    )
    assert lines[0].endswith("pip install 'Django>=5.2.18,<6.1'")
