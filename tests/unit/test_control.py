"""hybrid.control: the pidfile and status file a master keeps, read by the commands."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hybrid.control import (
    format_status,
    metrics_urls,
    read_status,
    remove_pidfile,
    signal_master,
    status_path,
    write_pidfile,
    write_status,
)
from hybrid.errors import ControlError, HybridError


def status(**changes: object) -> dict[str, object]:
    worker = {
        "port": 8001,
        "pid": 42,
        "state": "serving",
        "started": 100.0,
        "requests": 7,
        "rss_mb": 30.4,
        "restarts": 1,
        "metrics": None,
        "loop": "uvloop 0.23.0",
    }
    base: dict[str, object] = {
        "master": os.getpid(),
        "started": 0.0,
        "host": "127.0.0.1",
        "reload": {"count": 0, "abandoned": None},
        "nginx": None,
        "workers": [worker],
    }
    return {**base, **changes}


def test_status_round_trip_and_removal(tmp_path: Path) -> None:
    pidfile = str(tmp_path / "hybrid.pid")
    write_pidfile(pidfile, os.getpid())
    write_status(pidfile, os.getpid(), status())
    assert status_path(pidfile) == pidfile + ".json"
    assert read_status(pidfile) == status()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hybrid.pid", "hybrid.pid.json"]
    remove_pidfile(pidfile, os.getpid() + 1)  # another master's: kept
    assert Path(pidfile).exists()
    remove_pidfile(pidfile, os.getpid())
    assert list(tmp_path.iterdir()) == []


def test_read_status_errors_are_one_line(tmp_path: Path) -> None:
    pidfile = str(tmp_path / "hybrid.pid")
    with pytest.raises(ControlError, match="no status file .* is `hybrid serve --pidfile"):
        read_status(pidfile)
    Path(status_path(pidfile)).write_text("{not json")
    with pytest.raises(ControlError, match="cannot read"):
        read_status(pidfile)
    write_status(pidfile, 1, status(master=2**22 + 12345))
    with pytest.raises(ControlError, match=r"master \d+ is not running \(stale") as info:
        read_status(pidfile)
    assert isinstance(info.value, HybridError) and info.value.pidfile == pidfile


def test_signal_master_refuses_bad_pidfiles(tmp_path: Path) -> None:
    pidfile = tmp_path / "hybrid.pid"
    with pytest.raises(ControlError, match="cannot read pidfile"):
        signal_master(str(pidfile), signal.SIGHUP)
    pidfile.write_text("abc\n")
    with pytest.raises(ControlError, match="does not hold a pid"):
        signal_master(str(pidfile), signal.SIGHUP)
    pidfile.write_text(f"{2**22 + 12345}\n")
    with pytest.raises(ControlError, match="stale pidfile"):
        signal_master(str(pidfile), signal.SIGHUP)


def test_format_status_and_metrics_urls() -> None:
    text = format_status(status(nginx={"pid": 9, "port": 8000}), now=160.0)
    lines = text.splitlines()
    assert lines[0] == f"master {os.getpid()}, up 2m40s, nginx 9 on port 8000"
    assert lines[1].split() == "PORT PID STATE UPTIME REQUESTS RSS MB RESTARTS LOOP".split()
    assert lines[2].split() == "8001 42 serving 1m00s 7 30 1 uvloop 0.23.0".split()
    booting = {**status()["workers"][0], "loop": None}  # type: ignore[index]
    assert format_status(status(workers=[booting]), now=160.0).splitlines()[2].endswith(" -")
    with pytest.raises(ControlError, match="--metrics-port"):
        metrics_urls(status())
    url = "http://127.0.0.1:9001/metrics"
    worker = {**status()["workers"][0], "metrics": url}  # type: ignore[index]
    assert metrics_urls(status(workers=[worker])) == {8001: url}
