"""The Celery commands the master runs (``--celery``, ``--celery-beat``, ``--celery-app``)
and how ``hybrid status`` shows them; the processes themselves are in
tests/e2e/test_celery_processes.py."""

from __future__ import annotations

import sys

import pytest

from hybrid.config import Config
from hybrid.control import format_status
from hybrid.errors import ConfigError
from hybrid.sidecars import celery_app, celery_commands, check

BASE = [sys.executable, "-m", "celery"]


def test_the_app_defaults_to_the_settings_package() -> None:
    assert celery_app(Config(settings="mysite.settings")) == "mysite"
    assert celery_app(Config(settings="mysite.settings", celery_app="other.tasks:app")) == (
        "other.tasks:app"
    )


def test_worker_commands_get_the_app_and_beat_comes_last() -> None:
    config = Config.from_sources(
        {"celery": ["worker --concurrency 4", "worker -Q mail"], "celery_beat": True},
        {"DJANGO_SETTINGS_MODULE": "mysite.settings"},
    ).replace(settings="mysite.settings")
    assert celery_commands(config) == [
        ("celery worker 1", [*BASE, "-A", "mysite", "worker", "--concurrency", "4"]),
        ("celery worker 2", [*BASE, "-A", "mysite", "worker", "-Q", "mail"]),
        ("celery beat", [*BASE, "-A", "mysite", "beat"]),
    ]


def test_an_app_in_the_command_is_kept() -> None:
    config = Config(settings="mysite.settings", celery=("worker --app=jobs.celery:app",))
    assert celery_commands(config) == [
        ("celery worker", [*BASE, "worker", "--app=jobs.celery:app"])
    ]


def test_every_source_names_commands() -> None:
    env = {"HYBRID_CELERY": "worker -c 2; worker -Q mail", "HYBRID_CELERY_BEAT": "yes"}
    config = Config.from_sources({}, env)
    assert config.celery == ("worker -c 2", "worker -Q mail")
    assert config.celery_beat is True
    assert Config.from_sources({}, {}, {"celery": "worker"}).celery == ("worker",)
    assert Config().celery == () and Config().celery_beat is False


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (Config(settings="m.settings", celery=("beat",)), "is not a Celery worker command"),
        (Config(settings="m.settings", celery=("",)), "is not a Celery worker command"),
        (Config(settings="m.settings", celery=("worker '",)), "No closing quotation"),
        (Config(celery=("worker",)), "give --settings"),
    ],
)
def test_bad_commands_are_config_errors_naming_the_fix(
    config: Config, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    with pytest.raises(ConfigError, match=message):
        check(config)


def test_celery_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'hybrid\[celery\]'"):
        check(Config(settings="m.settings", celery_beat=True))
    check(Config(settings="m.settings"))  # nothing asked for: nothing checked


def test_status_lists_the_celery_processes() -> None:
    status = {
        "master": 10,
        "started": 0.0,
        "workers": [],
        "celery": [
            {"name": "celery worker", "pid": 12, "state": "running", "started": 0.0,
             "restarts": 1},
            {"name": "celery beat", "pid": None, "state": "waiting", "started": 0.0,
             "restarts": 0},
        ],
    }  # fmt: skip
    text = format_status(status, now=65.0)
    assert "       CELERY  PID    STATE  UPTIME  RESTARTS" in text
    assert "celery worker   12  running   1m05s         1" in text
    assert "  celery beat    -  waiting       -         0" in text


def test_celery_processes_get_the_settings_path_and_groups_backend() -> None:
    from hybrid.sidecars import Sidecars

    config = Config(
        settings="mysite.settings",
        pythonpath="/srv/lib",
        celery=("worker",),
        groups="redis://127.0.0.1:6379/0",
    )
    (sidecar,) = Sidecars(config).items
    assert sidecar.env["DJANGO_SETTINGS_MODULE"] == "mysite.settings"
    assert "/srv/lib" in sidecar.env["PYTHONPATH"].split(":")
    assert sidecar.env["HYBRID_GROUPS"] == "redis://127.0.0.1:6379/0"
