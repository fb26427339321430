"""Process titles (hybrid.proctitle); the real ones are checked in tests/e2e/test_access_log.py."""

from __future__ import annotations

import logging
import sys

import pytest

from hybrid import Config, proctitle


def test_titles_name_the_project_and_the_ports() -> None:
    config = Config(ports=(8001, 8002, 8003, 8004), settings="mysite.settings.prod")
    assert proctitle.master_title(config) == "hybrid: master [mysite] ports 8001-8004"
    assert proctitle.worker_title(config, 8002) == "hybrid: worker [mysite] :8002"
    assert (
        proctitle.worker_title(config, 8002, 1234)
        == "hybrid: worker [mysite] :8002 (1234 requests)"
    )
    named = config.replace(name="shop", ports=(8001, 8003, 9000, 9001))
    assert proctitle.master_title(named) == "hybrid: master [shop] ports 8001,8003,9000-9001"


def test_format_ports() -> None:
    assert proctitle.format_ports((8001,)) == "8001"
    assert proctitle.format_ports((8001, 8002, 8004)) == "8001-8002,8004"


def test_without_setproctitle_one_debug_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "setproctitle", None)  # import fails
    monkeypatch.setattr(proctitle, "_looked_up", False)
    monkeypatch.setattr(proctitle, "_setter", None)
    with caplog.at_level(logging.DEBUG, logger="hybrid.general"):
        proctitle.set_title("hybrid: master [x] ports 1")
        proctitle.set_title("hybrid: master [x] ports 2")
    assert [r.getMessage() for r in caplog.records] == [
        "setproctitle is not installed: process titles stay the command line "
        "(pip install 'hybrid[proctitle]')"
    ]


def test_with_setproctitle_the_title_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    titles: list[str] = []
    monkeypatch.setattr(proctitle, "_looked_up", True)
    monkeypatch.setattr(proctitle, "_setter", titles.append)
    proctitle.set_title("hybrid: worker [x] :8001")
    assert titles == ["hybrid: worker [x] :8001"]
