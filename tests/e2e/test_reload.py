"""``hybrid serve --reload``: a saved source file reaches the workers by a rolling reload.

Each test serves a small project copied under ``tmp_path`` (the server's current
directory, so what it watches is that project and nothing else of the repository).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path

from conftest import HybridProcess, hybrid_env
from waiting import wait_until

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]

VIEW = (
    "import os\n"
    "from tornado.web import RequestHandler\n"
    "class Version(RequestHandler):\n"
    "    def get(self):\n"
    "        self.write({{'pid': os.getpid(), 'version': {v}}})\n"
)
WARNING = "--reload is for development: do not use it in production"


def make_project(root: Path, name: str = "devproj") -> Path:
    """Package ``name`` under ``root``: testproject's settings, and a view in its own
    module answering ``/hybrid/pid`` with a version. Returns the view's file."""
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(
        f"from testproject.settings import *  # noqa\nHYBRID_ROUTES = '{name}.routes.routes'\n"
    )
    (package / "routes.py").write_text(
        f"from {name}.views import Version\nroutes = [(r'/hybrid/pid', Version)]\n"
    )
    (package / "views.py").write_text(VIEW.format(v=1))
    return package / "views.py"


def answer(port: int) -> dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/hybrid/pid")
        return dict(json.loads(conn.getresponse().read()))
    finally:
        conn.close()


def version_is(server: HybridProcess, version: int) -> bool:
    return all(answer(port)["version"] == version for port in server.ports)


def reloads(server: HybridProcess) -> int:
    return server.stderr.count(f"master {server.pid} reloading:")


def serve(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path, *args: str, **kw: object
) -> tuple[HybridProcess, Path]:
    view = make_project(tmp_path / "site")
    server = hybrid_serve(
        *args, ports=free_ports(2), settings="devproj.settings", cwd=tmp_path / "site", **kw
    )
    assert version_is(server, 1)
    return server, view


def test_a_saved_view_is_served_after_a_rolling_reload(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    server, view = serve(hybrid_serve, free_ports, tmp_path, "--reload")
    log = server.stderr
    assert log.count(WARNING) == 1
    assert f"watching {tmp_path / 'site'} for changes" in log
    view.write_text(VIEW.format(v=2))
    wait_until(lambda: version_is(server, 2), 30, ignore=OSError, message=lambda: server.stderr)
    log = server.stderr
    assert f"{view} changed" in log
    assert reloads(server) == 1
    assert "Traceback" not in log


def test_a_burst_of_saves_reloads_once(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    """As an editor saving several times in a row (here through ``HYBRID_RELOAD``)."""
    server, view = serve(hybrid_serve, free_ports, tmp_path, env=hybrid_env(HYBRID_RELOAD="1"))
    assert WARNING in server.stderr
    for version in range(2, 7):
        view.write_text(VIEW.format(v=version))
        time.sleep(0.1)
    wait_until(lambda: version_is(server, 6), 30, ignore=OSError, message=lambda: server.stderr)
    time.sleep(2.5)  # longer than a polling scan plus the debounce: no second reload comes
    assert reloads(server) == 1, server.stderr


def test_a_syntax_error_keeps_the_old_workers_until_the_next_good_save(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    server, view = serve(hybrid_serve, free_ports, tmp_path, "--reload")
    before = {port: answer(port)["pid"] for port in server.ports}
    view.write_text(VIEW.format(v=2) + "def broken(:\n")
    wait_until(lambda: "reload abandoned" in server.stderr, 30, message=lambda: server.stderr)
    assert "SyntaxError" in server.stderr
    assert {port: answer(port)["pid"] for port in server.ports} == before
    assert version_is(server, 1)
    assert server.proc.poll() is None
    view.write_text(VIEW.format(v=3))
    wait_until(lambda: version_is(server, 3), 30, ignore=OSError, message=lambda: server.stderr)
    assert reloads(server) == 2


def test_without_reload_a_change_does_nothing(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path
) -> None:
    server, view = serve(hybrid_serve, free_ports, tmp_path)
    view.write_text(VIEW.format(v=2))
    time.sleep(2.5)  # what --reload would take to notice it, and more
    assert version_is(server, 1)
    log = server.stderr
    assert "reloading" not in log
    assert WARNING not in log
    assert "watching" not in log
