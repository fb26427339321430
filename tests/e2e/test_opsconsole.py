"""examples/opsconsole end to end: real nginx, real workers, real commands, real Chromium.

Log in, run a command and see its output stream in, cancel a long one, find both in the
history and in the admin.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_DIR, HybridProcess, hybrid_env
from test_admin import chromium  # noqa: F401  (the headless Chromium fixture)
from waiting import wait_until

OPSCONSOLE = REPO_DIR / "examples" / "opsconsole"

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]


@pytest.fixture
def console(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[str, HybridProcess]:
    """The console behind nginx on 2 ports, with user ops/secret; returns its base URL.

    Set up as its README says: migrate, collectstatic, then ``hybrid serve --nginx`` with
    nginx serving the collected static files.
    """
    # nginx's workers run as nobody when the suite runs as root: pytest's tmp_path (0700)
    # is not readable for them, so the collected static files go to a directory that is.
    static = Path(tempfile.mkdtemp(prefix="hybrid-opsconsole-static-"))
    static.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(static, ignore_errors=True))
    env = hybrid_env(
        OPSCONSOLE_DB=str(tmp_path / "ops.sqlite3"),
        OPSCONSOLE_STATIC=str(static),
        DJANGO_SUPERUSER_PASSWORD="secret",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for argv in (
        ["migrate", "-v0"],
        ["collectstatic", "--noinput", "-v0"],
        ["createsuperuser", "--noinput", "--username", "ops", "--email", "o@x.org"],
    ):
        subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=OPSCONSOLE,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    *ports, nginx_port = free_ports(3)
    server = hybrid_serve(
        "--pythonpath",
        str(OPSCONSOLE),
        "--nginx",
        str(nginx_port),
        "--static",
        f"/static/={static}",
        ports=ports,
        settings="opsconsole.settings",
        env=env,
    )
    base = f"http://127.0.0.1:{nginx_port}"
    wait_until(
        lambda: f"serving http://127.0.0.1:{nginx_port}" in server.stderr,
        20,
        interval=0.1,
        message=lambda: server.stderr,
    )
    return base, server


def test_log_in_run_watch_cancel_and_find_the_history(
    console: tuple[str, HybridProcess],
    chromium: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, server = console
    wait = WebDriverWait(chromium, 20)
    chromium.get(base + "/")  # login_required: redirected to the login form
    assert "/accounts/login/" in chromium.current_url
    chromium.find_element(By.NAME, "username").send_keys("ops")
    chromium.find_element(By.NAME, "password").send_keys("secret")
    chromium.find_element(By.ID, "login").click()
    state = lambda: chromium.find_element(By.ID, "state").text  # noqa: E731
    output = lambda: chromium.find_element(By.ID, "output").text  # noqa: E731
    wait.until(lambda _: state() == "ready")

    chromium.find_element(By.ID, "run-uptime").click()
    wait.until(lambda _: state().startswith("succeeded"))
    assert "load average" in output()

    chromium.find_element(By.ID, "run-long").click()
    wait.until(lambda _: "step 2 of 60" in output())  # streamed while it still runs
    assert "done" not in output()
    chromium.find_element(By.ID, "cancel").click()
    wait.until(lambda _: state().startswith("cancelled"))
    assert "step 60 of 60" not in output()

    chromium.get(base + "/")
    rows = chromium.find_elements(By.CSS_SELECTOR, "tr.run-row")
    seen = [(r.get_attribute("data-command"), r.get_attribute("data-status")) for r in rows]
    assert seen[:2] == [("long", "cancelled"), ("uptime", "succeeded")]

    chromium.get(base + "/admin/console/run/")
    assert "2 runs" in chromium.page_source
    assert "Traceback" not in server.stderr


def login_cookie(base: str, user: str = "ops", password: str = "secret") -> str:
    """Log in through the real login form (CSRF and all); the Cookie header to send."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/accounts/login/") as page:
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.read())
    assert token is not None
    form = {
        "username": user,
        "password": password,
        "next": "/",
        "csrfmiddlewaretoken": token.group(1).decode(),
    }
    with opener.open(base + "/accounts/login/", urllib.parse.urlencode(form).encode()) as r:
        assert r.geturl() == base + "/"
    return "; ".join(f"{c.name}={c.value}" for c in jar)


async def converse(
    base: str, cookie: str, sends: list[dict[str, Any]], until: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Open /ws/run, send ``sends`` one by one, read until ``until(message)``."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = base.replace("http://", "ws://") + "/ws/run"
    ws = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookie, "Origin": base}))
    messages = [json.loads(str(await ws.read_message()))]
    for message in sends:
        ws.write_message(json.dumps(message))
    while not until(messages[-1]):
        messages.append(json.loads(str(await ws.read_message())))
    ws.close()
    # Wait for the server's close frame, so the socket is closed before the loop is.
    while await asyncio.wait_for(ws.read_message(), timeout=10) is not None:
        pass
    return messages


def test_websocket_refuses_anonymous_and_unknown_commands(
    console: tuple[str, HybridProcess],
) -> None:
    import asyncio

    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    base, _ = console

    async def anonymous() -> None:
        url = base.replace("http://", "ws://") + "/ws/run"
        with pytest.raises(HTTPClientError) as info:
            await websocket_connect(HTTPRequest(url, headers={"Origin": base}))
        assert info.value.code == 403

    asyncio.run(anonymous())
    sends = [{"action": "run", "command": "rm"}, {"nonsense": 1}]
    replies = asyncio.run(
        converse(
            base,
            login_cookie(base),
            sends,
            until=lambda m: m.get("message", "").startswith("send JSON"),
        )
    )
    hello, not_allowed, malformed = replies
    assert hello["user"] == "ops"
    assert [c["name"] for c in hello["commands"]] == ["disk", "uptime", "ping", "long"]
    assert not_allowed["type"] == "error" and not_allowed["message"] == "no command named 'rm'"
    assert malformed["type"] == "error"


def test_runs_on_mariadb_with_one_setting(
    hybrid_serve: Serve, free_ports: Ports, mariadb: Any
) -> None:
    import asyncio
    from urllib.parse import quote

    env_db = mariadb.env
    mariadb.query("CREATE DATABASE IF NOT EXISTS opsconsole_test CHARACTER SET utf8mb4")
    url = (
        f"mysql://{quote(env_db['MARIADB_USER'])}:{quote(env_db['MARIADB_PASSWORD'])}@"
        f"{env_db['MARIADB_HOST']}:{env_db['MARIADB_PORT']}/opsconsole_test"
    )
    env = hybrid_env(OPSCONSOLE_DB=url, DJANGO_SUPERUSER_PASSWORD="secret")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for argv in (
        ["migrate", "-v0"],
        ["createsuperuser", "--noinput", "--username", "ops", "--email", "o@x.org"],
    ):
        subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=OPSCONSOLE,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    port = free_ports(1)[0]
    hybrid_serve(
        "--pythonpath", str(OPSCONSOLE), ports=[port], settings="opsconsole.settings", env=env
    )
    base = f"http://127.0.0.1:{port}"
    messages = asyncio.run(
        converse(
            base,
            login_cookie(base),
            [{"action": "run", "command": "uptime"}],
            until=lambda m: m["type"] == "done",
        )
    )
    assert messages[-1]["status"] == "succeeded"
    rows = mariadb.query("SELECT command, status, exit_status FROM opsconsole_test.console_run")
    assert rows == [("uptime", "succeeded", 0)]
