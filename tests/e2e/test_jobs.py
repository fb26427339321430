"""examples/jobs end to end: real Redis, real nginx, real workers, a real Celery worker and
beat started by ``hybrid serve --celery ... --celery-beat``, and a real Chromium.

A user uploads a CSV file with good and bad rows; the import runs in the Celery worker;
the job page's WebSocket shows its progress as it goes and the final counts, with the
reasons for each rejected row; the contacts are in the database. The tests without a
browser use the JSON API (upload and wait for the result), the socket's protocol, the 503
when the broker is down, and beat's periodic task. Each test has its own Redis database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_DIR, HybridProcess, RedisServer, hybrid_env
from test_admin import chromium, start_chromium  # noqa: F401  (headless Chromium)
from test_opsconsole import login_cookie
from waiting import wait_until

JOBS = REPO_DIR / "examples" / "jobs"
#: The Celery worker as the README runs it (2 processes), quieter.
WORKER = "worker --concurrency 2 --loglevel warning"

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]
Frame = dict[str, Any]

_databases = itertools.count(1)


@dataclass
class Site:
    base: str
    server: HybridProcess
    database: Path
    uploads: Path


def jobs_env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of the example's commands, workers and Celery processes: its own
    settings, database, uploads and beat file under ``tmp_path``, users' password
    ``secret``, and an import slow enough (0.05 s a row) for its progress to be seen."""
    env = hybrid_env(
        JOBS_PASSWORD="secret",
        JOBS_REDIS=redis_url,
        JOBS_DB=str(tmp_path / "jobs.sqlite3"),
        JOBS_UPLOADS=str(tmp_path / "uploads"),
        JOBS_BEAT_FILE=str(tmp_path / "celerybeat-schedule"),
        JOBS_ROW_DELAY="0.05",
        JOBS_PROGRESS_EVERY="5",
        **extra,
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def own_database(redis: RedisServer) -> str:
    """The session Redis's URL with a database number of this test's own (queue, results
    and group channels stay apart from other tests')."""
    base, _, _ = redis.url.rpartition("/")
    return f"{base}/{next(_databases)}"


def manage(env: dict[str, str], *argv: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=JOBS,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


def serve_jobs(
    hybrid_serve: Serve, env: dict[str, str], ports: list[int], *args: str
) -> HybridProcess:
    """Migrate, create alice and bob, and ``hybrid serve`` the example on ``ports`` with a
    Celery worker and beat."""
    manage(env, "migrate", "-v0")
    manage(env, "createuser", "alice", "bob")
    return hybrid_serve(
        "--pythonpath", str(JOBS), "--celery", WORKER, "--celery-beat", *args,
        ports=ports, settings="jobsite.settings", env=env,
    )  # fmt: skip


def site_for(server: HybridProcess, env: dict[str, str], base: str) -> Site:
    return Site(base, server, Path(env["JOBS_DB"]), Path(env["JOBS_UPLOADS"]))


# -- the files ------------------------------------------------------------------------------


def contacts_csv(good: int) -> tuple[str, list[str], list[tuple[int, str]]]:
    """A CSV file of ``good`` good rows and 5 bad ones among them: (its text, the emails
    that get imported, (line, reason) of each rejected row)."""
    lines = ["Name,Email,Company"]  # column names in any case, as spreadsheets write them
    emails, rejected = [], []
    bad = {
        3: ("Nobody,,Acme", "the email is empty"),
        7: (",anon@example.com,Acme", "the name is empty"),
        11: ("Eve,eve-at-example.com,Evil", "'eve-at-example.com' is not an email address"),
        16: ("Dup,Person1@Example.com,Acme", "person1@example.com is on line 2 already"),
        20: ("Short,short@example.com,Acme,extra", "4 fields where the header has 3"),
    }
    person = itertools.count(1)
    while len(emails) < good or len(rejected) < len(bad):
        line = len(lines) + 1
        if line in bad:
            text, reason = bad[line]
            lines.append(text)
            rejected.append((line, reason))
        else:
            n = next(person)
            lines.append(f"Person {n},person{n}@example.com,Company {n % 3}")
            emails.append(f"person{n}@example.com")
    return "\n".join(lines) + "\n", emails, rejected


def stored_contacts(database: Path, user: str) -> list[str]:
    """The emails of ``user``'s contacts, in the order they were imported."""
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT c.email FROM jobs_contact c JOIN auth_user u ON u.id = c.owner_id"
            " WHERE u.username = ? ORDER BY c.id",
            (user,),
        ).fetchall()
    return [row[0] for row in rows]


def count(database: Path, table: str) -> int:
    with closing(sqlite3.connect(database)) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# -- in Chromium, through nginx -------------------------------------------------------------


@pytest.fixture
def jobs_site(
    hybrid_serve: Serve,
    free_ports: Ports,
    tmp_path: Path,
    redis: RedisServer,
    request: pytest.FixtureRequest,
) -> Site:
    """The example as its README serves it: nginx (static files too), web workers, a
    Celery worker and beat, one Redis."""
    # nginx's workers run as nobody when the suite runs as root: pytest's tmp_path (0700)
    # is not readable for them, so the collected static files go to a directory that is.
    static = Path(tempfile.mkdtemp(prefix="hybrid-jobs-static-"))
    static.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(static, ignore_errors=True))
    url = own_database(redis)
    env = jobs_env(tmp_path, url, JOBS_STATIC=str(static))
    manage(env, "collectstatic", "--noinput", "-v0")
    *ports, nginx_port = free_ports(3)
    server = serve_jobs(
        hybrid_serve, env, ports,
        "--nginx", str(nginx_port), "--groups", url, "--static", f"/static/={static}",
    )  # fmt: skip
    wait_until(
        lambda: f"serving http://127.0.0.1:{nginx_port}" in server.stderr,
        20,
        interval=0.1,
        message=lambda: server.stderr,
    )
    return site_for(server, env, f"http://127.0.0.1:{nginx_port}")


def log_in(driver: Any, base: str, user: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")  # login_required: redirected to the login form
    assert "/accounts/login/" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys("secret")
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "upload-button"))


def page_counts(driver: Any) -> dict[str, Any]:
    """What the job page shows now."""
    return dict(
        driver.execute_script(
            "const t = (id) => document.getElementById(id).textContent;"
            "return {state: document.getElementById('job').dataset.state, rows: t('rows'),"
            " imported: t('imported'), rejected: t('rejected'), updates: +t('updates'),"
            " status: t('status'), bar: document.getElementById('bar').value,"
            " reasons: [...document.querySelectorAll('#reasons tbody tr')].map("
            "   (tr) => [+tr.cells[0].textContent, tr.cells[1].textContent])};"
        )
    )


def test_upload_in_chromium_shows_live_progress_and_the_counts(
    jobs_site: Site,
    chromium: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    base = jobs_site.base
    text, emails, rejected = contacts_csv(40)  # 45 rows: about 2.5 s of import
    upload = tmp_path / "contacts.csv"
    upload.write_text(text)

    log_in(chromium, base, "alice")
    assert "Nothing yet" in chromium.find_element(By.ID, "jobs").text
    chromium.find_element(By.ID, "id_file").send_keys(str(upload))
    chromium.find_element(By.ID, "upload-button").click()
    wait_until(lambda: "/jobs/" in chromium.current_url, 20)
    job_url = chromium.current_url
    assert job_url.startswith(base + "/jobs/")

    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        seen.append(page_counts(chromium))
        return bool(seen[-1]["state"] == "done")

    wait_until(
        finished, 30, interval=0.05, message=lambda: f"{seen[-3:]}\n{jobs_site.server.stderr}"
    )
    last = seen[-1]
    total = len(emails) + len(rejected)
    assert (last["rows"], last["imported"], last["rejected"]) == (
        f"{total} of {total} rows",
        str(len(emails)),
        str(len(rejected)),
    )
    assert last["bar"] == total
    assert [tuple(r) for r in last["reasons"]] == rejected
    # Progress arrived while the import ran: counts part way, over the socket.
    midway = [s for s in seen if s["state"] == "running" and f" of {total} rows" in s["rows"]]
    partial = {s["rows"] for s in midway} - {f"0 of {total} rows", f"{total} of {total} rows"}
    assert len(partial) >= 2, seen
    assert last["updates"] >= 4  # state, progress..., done
    wait_until(lambda: page_counts(chromium)["status"] == "finished", 10)

    # A page loaded after the end is right at once, from the server and from its socket.
    chromium.get(job_url)
    wait_until(lambda: page_counts(chromium)["updates"] >= 1, 20)
    again = page_counts(chromium)
    assert again["state"] == "done" and again["imported"] == str(len(emails))
    assert [tuple(r) for r in again["reasons"]] == rejected

    chromium.get(base + "/")  # the job list
    row = chromium.find_element(By.CSS_SELECTOR, "#jobs tr.job")
    assert row.get_attribute("data-state") == "done"
    assert "contacts.csv" in row.text
    assert stored_contacts(jobs_site.database, "alice") == emails
    assert "Traceback" not in jobs_site.server.stderr


# -- without a browser: the API, the socket, the broker down, beat ---------------------------


class Client:
    """alice (or bob), logged in through the real form: the API and the job socket."""

    def __init__(self, base: str, user: str = "alice") -> None:
        self.base = base
        self.cookie = login_cookie(base, user, "secret")
        cookies = dict(part.split("=", 1) for part in self.cookie.split("; "))
        self.csrf = cookies["csrftoken"]

    def request(
        self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.base + path,
            data=body,
            headers={"Cookie": self.cookie, "X-CSRFToken": self.csrf, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()

    def upload(self, path: str, text: str, field: str = "file") -> tuple[int, bytes]:
        """POST ``text`` as the file ``contacts.csv``, multipart, as a form does."""
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="contacts.csv"\r\nContent-Type: text/csv\r\n\r\n{text}\r\n'
            f"--{boundary}--\r\n"
        ).encode()
        return self.request(
            path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )

    def api_upload(self, text: str, wait: float = 0) -> tuple[int, Frame]:
        status, body = self.upload(f"/api/jobs?wait={wait}", text)
        return status, json.loads(body)

    def job(self, pk: int) -> Frame:
        status, body = self.request(f"/api/jobs/{pk}")
        assert status == 200, body
        return dict(json.loads(body))

    async def socket(self, pk: int) -> Any:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = self.base.replace("http://", "ws://") + f"/ws/jobs/{pk}"
        request = HTTPRequest(url, headers={"Cookie": self.cookie, "Origin": self.base})
        return await websocket_connect(request)


async def close(ws: Any) -> None:
    """Close, and wait for the server's close frame, so the socket is closed before the
    loop is."""
    ws.close()
    while await asyncio.wait_for(ws.read_message(), timeout=10) is not None:
        pass


async def frames_until_done(ws: Any) -> list[Frame]:
    frames: list[Frame] = []
    while not frames or frames[-1]["type"] not in ("done", "failed"):
        text = await asyncio.wait_for(ws.read_message(), timeout=20)
        assert text is not None, f"the server closed the socket after {frames}"
        frames.append(json.loads(text))
    await close(ws)
    return frames


@pytest.fixture
def jobs_worker(hybrid_serve: Serve, free_ports: Ports, tmp_path: Path, redis: RedisServer) -> Site:
    """The example on one web worker (no nginx), with the Celery worker and beat."""
    env = jobs_env(tmp_path, own_database(redis))
    port = free_ports(1)[0]
    server = serve_jobs(hybrid_serve, env, [port])
    return site_for(server, env, f"http://127.0.0.1:{port}")


def test_the_api_uploads_and_waits_and_the_socket_follows_the_import(jobs_worker: Site) -> None:
    alice = Client(jobs_worker.base)
    text, emails, rejected = contacts_csv(20)
    total = len(emails) + len(rejected)

    status, queued = alice.api_upload(text)  # no wait: 202 and where to look
    assert status == 202, queued
    assert queued["state"] in ("queued", "running") and queued["url"] == f"/jobs/{queued['job']}/"

    async def follow() -> list[Frame]:
        return await frames_until_done(await alice.socket(queued["job"]))

    frames = asyncio.run(follow())
    first, *progress, done = frames
    assert first["type"] == "state" and first["job"] == queued["job"]
    assert progress and all(f["type"] == "progress" for f in progress)
    currents = [f["current"] for f in progress]
    assert currents == sorted(currents) and currents[-1] == total
    assert progress[-1]["task_id"] == queued["task_id"]
    # Each rejected row is reported as it happens (those before the socket joined came
    # with the first frame).
    reported = {(r["line"], r["reason"]) for f in (first, *progress) for r in f["reasons"]}
    assert sorted(reported) == rejected
    assert done["type"] == "done" and done["state"] == "done"
    assert (done["total"], done["imported"], done["rejected"]) == (total, 20, 5)
    assert [(r["line"], r["reason"]) for r in done["reasons"]] == rejected
    assert alice.job(queued["job"])["state"] == "done"
    assert stored_contacts(jobs_worker.database, "alice") == emails

    # ?wait=: the final state in the answer (hybrid.tasks.wait). The same people again are
    # all rejected as imported before; one new row is imported.
    status, result = alice.api_upload(text + "Zed,zed@example.com,\n", wait=30)
    assert status == 200, result
    assert (result["state"], result["imported"], result["rejected"]) == ("done", 1, 25)
    assert result["reasons"][0] == {"line": 2, "reason": "person1@example.com was imported before"}
    assert stored_contacts(jobs_worker.database, "alice")[-1] == "zed@example.com"

    # A socket opened after the end gets the final state at once.
    async def late() -> Frame:
        ws = await alice.socket(result["job"])
        frame = json.loads(await asyncio.wait_for(ws.read_message(), timeout=10))
        await close(ws)
        return dict(frame)

    state = asyncio.run(late())
    assert (state["type"], state["state"], state["imported"]) == ("state", "done", 1)
    assert "Traceback" not in jobs_worker.server.stderr


def test_bad_files_and_other_peoples_jobs_are_refused(jobs_worker: Site) -> None:
    alice, bob = Client(jobs_worker.base), Client(jobs_worker.base, "bob")
    status, answer = alice.api_upload("first,last\nA,B\n")
    assert status == 400
    assert "name and email missing" in answer["errors"]["file"][0]["message"]
    status, page = alice.upload("/upload/", "naam,e-mail\n")  # the form: 400, the page again
    assert status == 400 and b"Not importable" in page
    assert count(jobs_worker.database, "jobs_job") == 0  # nothing queued for either

    status, answer = alice.api_upload("name,email\nAl,al@example.com\n", wait=30)
    assert status == 200 and answer["imported"] == 1
    status, _ = bob.request(f"/api/jobs/{answer['job']}")
    assert status == 404  # not bob's

    handshake = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Origin": jobs_worker.base,
    }
    anonymous = urllib.request.Request(
        f"{jobs_worker.base}/ws/jobs/{answer['job']}", headers=handshake
    )
    with pytest.raises(urllib.error.HTTPError) as info:  # 403, no upgrade
        urllib.request.urlopen(anonymous, timeout=10)
    info.value.close()
    assert info.value.code == 403

    async def bobs_socket() -> Any:  # to alice's job: closed at once
        ws = await bob.socket(answer["job"])
        assert await asyncio.wait_for(ws.read_message(), timeout=10) is None
        ws.close()
        return ws.close_code

    assert asyncio.run(bobs_socket()) == 4404
    assert stored_contacts(jobs_worker.database, "bob") == []


def test_with_the_broker_down_an_upload_is_a_503_and_nothing_is_kept(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path, private_redis: RedisServer
) -> None:
    env = jobs_env(tmp_path, private_redis.url)
    port = free_ports(1)[0]
    server = serve_jobs(hybrid_serve, env, [port])
    site = site_for(server, env, f"http://127.0.0.1:{port}")
    alice = Client(site.base)
    status, result = alice.api_upload("name,email\nAl,al@example.com\n", wait=30)
    assert status == 200 and result["imported"] == 1

    private_redis.kill()
    started = time.monotonic()
    status, answer = alice.api_upload("name,email\nBo,bo@example.com\n", wait=30)
    assert status == 503, answer
    assert time.monotonic() - started < 10  # hybrid.tasks.delay gives up within seconds
    assert "job queue is unavailable" in answer["error"] and "Nothing was queued" in answer["error"]
    status, page = alice.upload("/upload/", "name,email\nBo,bo@example.com\n")  # the form
    assert status == 503 and b'id="unavailable"' in page and b"try again in a minute" in page
    assert count(site.database, "jobs_job") == 1  # neither attempt left a job behind
    assert len(list(site.uploads.rglob("*.csv"))) == 1  # nor its file
    # The web worker kept serving meanwhile.
    assert alice.request("/")[0] == 200

    private_redis.restart()  # the Celery worker and the web worker reconnect
    deadline, answer = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        status, answer = alice.api_upload("name,email\nBo,bo@example.com\n", wait=10)
        if status == 200:
            break
        time.sleep(1)
    assert answer.get("imported") == 1, server.stderr
    assert stored_contacts(site.database, "alice") == ["al@example.com", "bo@example.com"]


def test_beat_runs_the_housekeeping_task(
    hybrid_serve: Serve, free_ports: Ports, tmp_path: Path, redis: RedisServer
) -> None:
    """``CELERY_BEAT_SCHEDULE`` in the settings: beat sends housekeeping every half
    second here, the Celery worker runs it: it deletes finished jobs' files (kept 0 s
    here) and leaves a heartbeat the job list shows."""
    env = jobs_env(
        tmp_path, own_database(redis), JOBS_HOUSEKEEPING_EVERY="0.5", JOBS_KEEP_UPLOADS="0"
    )
    port = free_ports(1)[0]
    server = serve_jobs(hybrid_serve, env, [port])
    site = site_for(server, env, f"http://127.0.0.1:{port}")
    alice = Client(site.base)
    status, result = alice.api_upload("name,email\nAl,al@example.com\n", wait=30)
    assert status == 200 and result["state"] == "done"

    def heartbeat() -> tuple[int, int]:
        with closing(sqlite3.connect(site.database)) as db:
            row = db.execute(
                "SELECT runs, purged FROM jobs_heartbeat WHERE name = 'housekeeping'"
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    wait_until(lambda: heartbeat()[0] >= 3, 30, message=lambda: server.stderr)
    wait_until(lambda: not alice.job(result["job"])["file_kept"], 10)
    assert heartbeat()[1] == 1
    assert list(site.uploads.rglob("*.csv")) == []
    status, page = alice.request("/")
    assert status == 200 and b"Celery beat: housekeeping last ran at" in page
    assert "Traceback" not in server.stderr
