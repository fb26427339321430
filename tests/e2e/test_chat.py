"""examples/chat end to end: real Redis, real nginx, 4 real workers, two real Chromiums.

Two users in one room, their sockets on two different workers, hear each other through
Redis; a later page load gets the history; the messages are in the database. The tests
without a browser speak the socket's protocol directly, on SQLite and on MariaDB.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_DIR, HybridProcess, hybrid_env
from test_admin import chromium, start_chromium  # noqa: F401  (headless Chromium)
from test_opsconsole import login_cookie
from waiting import wait_until

CHAT = REPO_DIR / "examples" / "chat"

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]
Frame = dict[str, Any]


@dataclass
class Site:
    base: str
    server: HybridProcess
    database: Path


def chat_env(**extra: str) -> dict[str, str]:
    """The environment of the example's commands and workers: its own settings, users'
    password ``secret``."""
    env = hybrid_env(CHAT_PASSWORD="secret", **extra)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def manage(env: dict[str, str], *argv: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=CHAT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


def serve_chat(hybrid_serve: Serve, env: dict[str, str], ports: list[int], *args: str) -> Any:
    """Migrate, create alice and bob, and ``hybrid serve`` the example on ``ports``."""
    manage(env, "migrate", "-v0")
    manage(env, "createuser", "alice", "bob")
    return hybrid_serve(
        "--pythonpath", str(CHAT), *args, ports=ports, settings="chatsite.settings", env=env
    )


@pytest.fixture
def chat_site(
    hybrid_serve: Serve,
    free_ports: Ports,
    tmp_path: Path,
    redis: Any,
    request: pytest.FixtureRequest,
) -> Site:
    """The chat as its README serves it: Redis, nginx, 4 workers, static files by nginx."""
    # nginx's workers run as nobody when the suite runs as root: pytest's tmp_path (0700)
    # is not readable for them, so the collected static files go to a directory that is.
    static = Path(tempfile.mkdtemp(prefix="hybrid-chat-static-"))
    static.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(static, ignore_errors=True))
    database = tmp_path / "chat.sqlite3"
    env = chat_env(CHAT_DB=str(database), CHAT_STATIC=str(static))
    manage(env, "collectstatic", "--noinput", "-v0")
    *ports, nginx_port = free_ports(5)
    server = serve_chat(
        hybrid_serve,
        env,
        ports,
        "--nginx",
        str(nginx_port),
        "--groups",
        redis.url,
        "--static",
        f"/static/={static}",
    )
    wait_until(
        lambda: f"serving http://127.0.0.1:{nginx_port}" in server.stderr,
        20,
        interval=0.1,
        message=lambda: server.stderr,
    )
    return Site(f"http://127.0.0.1:{nginx_port}", server, database)


def stored(database: Path) -> list[tuple[str, str, str]]:
    """(user, room, text) of every stored message, oldest first."""
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT u.username, m.room, m.text FROM chat_message m"
            " JOIN auth_user u ON u.id = m.user_id ORDER BY m.id"
        ).fetchall()
    return [tuple(row) for row in rows]


# -- in two browsers ------------------------------------------------------------------------


def log_in(driver: Any, base: str, user: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")  # login_required: redirected to the login form
    assert "/accounts/login/" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys("secret")
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "room-name"))


def worker_pid(driver: Any) -> int:
    """The pid of the worker the page's socket is on, once the socket said hello."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pid = WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.ID, "worker").get_attribute("data-pid")
    )
    return int(pid)


def say(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "text").send_keys(text)
    driver.find_element(By.ID, "send-button").click()


def lines(driver: Any) -> list[tuple[str, str]]:
    """(user, text) of each message on the page."""
    from selenium.webdriver.common.by import By

    return [
        (
            li.find_element(By.CLASS_NAME, "user").text,
            li.find_element(By.CLASS_NAME, "text").text,
        )
        for li in driver.find_elements(By.CSS_SELECTOR, "#log li.message")
    ]


def test_two_users_on_two_workers_hear_each_other(
    chat_site: Site,
    chromium: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = chat_site.base
    room = base + "/room/general/"
    with start_chromium() as second:
        alice, bob = chromium, second
        log_in(alice, base, "alice")
        alice.find_element(By.ID, "room-name").send_keys("general")
        alice.find_element(By.ID, "enter-room").click()  # the lobby's form
        WebDriverWait(alice, 20).until(lambda d: d.current_url == room)
        alice_pid = worker_pid(alice)

        log_in(bob, base, "bob")
        bob.get(room)
        bob_pid = worker_pid(bob)
        for _ in range(30):  # nginx balances: reload until bob's socket is elsewhere
            if bob_pid != alice_pid:
                break
            bob.refresh()
            bob_pid = worker_pid(bob)
        assert bob_pid != alice_pid, "every reload put bob's socket on alice's worker"

        say(alice, "hello from alice")
        WebDriverWait(bob, 20).until(lambda d: ("alice", "hello from alice") in lines(d))
        say(bob, "hi alice, bob here")
        expected = [("alice", "hello from alice"), ("bob", "hi alice, bob here")]
        WebDriverWait(alice, 20).until(lambda d: lines(d) == expected)
        WebDriverWait(bob, 20).until(lambda d: lines(d) == expected)
        assert alice.find_elements(By.CSS_SELECTOR, "#log li.mine .text")[0].text == (
            "hello from alice"
        )

        bob.get(room)  # a third page: the history comes with the join
        WebDriverWait(bob, 20).until(lambda d: lines(d) == expected)
        bob.get(base + "/")
        rooms = bob.find_elements(By.CSS_SELECTOR, "#rooms li.room")
        assert [r.get_attribute("data-room") for r in rooms] == ["general"]
        assert "2 messages" in rooms[0].text

    assert stored(chat_site.database) == [
        ("alice", "general", "hello from alice"),
        ("bob", "general", "hi alice, bob here"),
    ]
    assert "Traceback" not in chat_site.server.stderr


# -- the socket's protocol, without a browser ---------------------------------------------


class Client:
    """One WebSocket to /ws/chat/ROOM, read frame by frame."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def join(cls, base: str, room: str, cookie: str) -> Client:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = base.replace("http://", "ws://") + f"/ws/chat/{room}"
        request = HTTPRequest(url, headers={"Cookie": cookie, "Origin": base})
        return cls(await websocket_connect(request))

    async def read(self) -> Frame:
        text = await asyncio.wait_for(self.ws.read_message(), timeout=10)
        assert text is not None, "the server closed the socket"
        frame: Frame = json.loads(text)
        return frame

    async def hello(self) -> tuple[Frame, list[Frame]]:
        """The first two frames: hello, and the history's messages."""
        hello, history = await self.read(), await self.read()
        assert hello["type"] == "hello" and history["type"] == "history"
        return hello, history["messages"]

    def say(self, text: Any) -> None:
        self.ws.write_message(json.dumps({"text": text}))

    async def close(self) -> None:
        self.ws.close()
        # Wait for the server's close frame, so the socket is closed before the loop is.
        while await asyncio.wait_for(self.ws.read_message(), timeout=10) is not None:
            pass


async def two_users_talk(alice_base: str, bob_base: str, room: str) -> tuple[int, int]:
    """alice (through ``alice_base``) and bob (``bob_base``) join ``room`` and talk; a third
    socket gets the history. Returns the pids of alice's and bob's workers."""
    alice = await Client.join(alice_base, room, login_cookie(alice_base, "alice", "secret"))
    bob_cookie = login_cookie(bob_base, "bob", "secret")
    bob = await Client.join(bob_base, room, bob_cookie)
    alice_hello, history = await alice.hello()
    assert alice_hello["user"] == "alice" and alice_hello["room"] == room and history == []
    bob_hello, _ = await bob.hello()

    alice.say("  hi bob  ")
    to_alice, to_bob = await alice.read(), await bob.read()
    assert to_alice == to_bob
    assert to_bob["type"] == "message" and to_bob["room"] == room
    assert (to_bob["user"], to_bob["text"], to_bob["pid"]) == (
        "alice",
        "hi bob",
        alice_hello["pid"],
    )
    bob.say("hi alice")
    assert (await alice.read())["text"] == (await bob.read())["text"] == "hi alice"

    later = await Client.join(bob_base, room, bob_cookie)
    _, history = await later.hello()
    assert [(m["user"], m["text"]) for m in history] == [("alice", "hi bob"), ("bob", "hi alice")]
    assert history[0]["id"] == to_bob["id"] and history[0]["created"] == to_bob["created"]
    for client in (alice, bob, later):
        await client.close()
    return alice_hello["pid"], bob_hello["pid"]


@pytest.fixture
def chat_workers(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path, redis: Any
) -> tuple[list[str], Site]:
    """The chat on 2 workers with Redis groups, no nginx: the base URL of each worker."""
    database = tmp_path / "chat.sqlite3"
    ports = free_ports(2)
    server = serve_chat(hybrid_serve, chat_env(CHAT_DB=str(database)), ports, "--groups", redis.url)
    return [f"http://127.0.0.1:{port}" for port in ports], Site("", server, database)


def test_sockets_on_two_workers_share_a_room_through_redis(
    chat_workers: tuple[list[str], Site],
) -> None:
    (first, second), site = chat_workers
    alice_pid, bob_pid = asyncio.run(two_users_talk(first, second, "r-1"))
    assert alice_pid != bob_pid
    assert stored(site.database) == [("alice", "r-1", "hi bob"), ("bob", "r-1", "hi alice")]

    async def other_room_and_bad_frames() -> None:
        cookie = login_cookie(first, "alice", "secret")
        elsewhere = await Client.join(second, "r-2", cookie)
        _, history = await elsewhere.hello()
        assert history == []  # r-1's messages stay in r-1
        elsewhere.ws.write_message("not json")
        assert (await elsewhere.read())["type"] == "error"
        elsewhere.say(42)
        assert (await elsewhere.read())["type"] == "error"
        elsewhere.say("x" * 2001)
        assert "2000 characters" in (await elsewhere.read())["message"]
        elsewhere.say("   ")  # nothing to say: ignored
        elsewhere.say("fine")
        assert (await elsewhere.read())["text"] == "fine"
        await elsewhere.close()

    asyncio.run(other_room_and_bad_frames())
    assert stored(site.database)[-1] == ("alice", "r-2", "fine")
    assert "Traceback" not in site.server.stderr


def test_anonymous_and_cross_site_sockets_are_refused(
    chat_workers: tuple[list[str], Site],
) -> None:
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    (base, _), _ = chat_workers
    url = base.replace("http://", "ws://") + "/ws/chat/r-1"
    cookie = login_cookie(base, "alice", "secret")

    async def refused(headers: dict[str, str]) -> int:
        with pytest.raises(HTTPClientError) as info:
            await websocket_connect(HTTPRequest(url, headers=headers))
        return info.value.code

    assert asyncio.run(refused({"Origin": base})) == 403
    assert asyncio.run(refused({"Origin": "http://evil.example", "Cookie": cookie})) == 403


def test_runs_on_mariadb_with_one_setting(
    hybrid_serve: Serve, free_ports: Ports, mariadb: Any
) -> None:
    from urllib.parse import quote

    db = mariadb.env
    mariadb.query("DROP DATABASE IF EXISTS chat_test")
    mariadb.query("CREATE DATABASE chat_test CHARACTER SET utf8mb4")
    url = (
        f"mysql://{quote(db['MARIADB_USER'])}:{quote(db['MARIADB_PASSWORD'])}@"
        f"{db['MARIADB_HOST']}:{db['MARIADB_PORT']}/chat_test"
    )
    port = free_ports(1)[0]
    server = serve_chat(hybrid_serve, chat_env(CHAT_DB=url), [port])  # groups in-process
    base = f"http://127.0.0.1:{port}"
    alice_pid, bob_pid = asyncio.run(two_users_talk(base, base, "maria"))
    assert alice_pid == bob_pid  # one worker
    rows = mariadb.query(
        "SELECT u.username, m.room, m.text FROM chat_test.chat_message m"
        " JOIN chat_test.auth_user u ON u.id = m.user_id ORDER BY m.id"
    )
    assert rows == [("alice", "maria", "hi bob"), ("bob", "maria", "hi alice")]
    assert "Traceback" not in server.stderr


def test_a_message_is_kept_while_redis_is_down(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path, private_redis: Any
) -> None:
    """Redis named by ``CHAT_REDIS`` (the settings' ``HYBRID["groups"]``) this time."""
    database = tmp_path / "chat.sqlite3"
    port = free_ports(1)[0]
    env = chat_env(CHAT_DB=str(database), CHAT_REDIS=private_redis.url)
    server = serve_chat(hybrid_serve, env, [port])
    base = f"http://127.0.0.1:{port}"

    async def talk() -> None:
        alice = await Client.join(base, "down", login_cookie(base, "alice", "secret"))
        await alice.hello()
        alice.say("before")
        assert (await alice.read())["text"] == "before"  # through Redis
        private_redis.kill()
        alice.say("anyone?")
        error = await alice.read()
        assert error["type"] == "error" and "live delivery is down" in error["message"]
        private_redis.restart()
        loop = asyncio.get_running_loop()
        deadline, attempt, heard = loop.time() + 20, 0, None
        while heard is None and loop.time() < deadline:  # until the worker reconnected
            attempt += 1
            alice.say(f"back {attempt}")
            try:
                while heard is None:
                    frame = await asyncio.wait_for(alice.ws.read_message(), timeout=1)
                    assert frame is not None
                    if json.loads(frame)["type"] == "message":
                        heard = json.loads(frame)["text"]
            except TimeoutError:
                pass
        assert heard is not None and heard.startswith("back "), server.stderr
        await alice.close()

    asyncio.run(talk())
    texts = [text for _, _, text in stored(database)]
    assert texts[:3] == ["before", "anyone?", "back 1"]
    assert "Traceback" not in server.stderr
