"""Bad input to a real ``hybrid serve`` worker: a 4xx, never a 500, and the worker lives on.

Every request is written as raw bytes over a socket (so nothing on the client side fixes
it up), to a DjangoHandler route and to the Django fallback. After each, the same worker
(same pid) answers a normal request with 200.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_DIR, HybridProcess, free_port, hybrid_env, session_pids

MULTIPART = b"multipart/form-data; boundary=xyz"
FORM = b"application/x-www-form-urlencoded"
JSON = b"application/json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HybridProcess]:
    """One worker for the module (booting one per case would cost a second each)."""
    port = free_port()
    stderr_path = tmp_path_factory.mktemp("bad-input") / "hybrid.stderr"
    argv = [sys.executable, "-m", "hybrid", "serve", "--ports", str(port)]
    argv += ["--settings", "testproject.settings_bridge", "--max-header-size", "16384"]
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            argv,
            env=hybrid_env(),
            cwd=REPO_DIR,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
    hybrid = HybridProcess(proc, [port], Path(stderr_path))
    try:
        hybrid.wait_ready()
        yield hybrid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for pid in session_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def raw_request(port: int, data: bytes) -> bytes:
    """Send ``data`` as is; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def request(path: bytes, headers: bytes = b"", method: bytes = b"GET", body: bytes = b"") -> bytes:
    head = method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + headers + b"\r\n" + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def worker_pid(port: int) -> int:
    response = raw_request(port, request(b"/hybrid/pid"))
    assert status_of(response) == 200, response[:200]
    return int(json.loads(response.split(b"\r\n\r\n", 1)[1])["pid"])


def assert_refused_then_served(server: HybridProcess, data: bytes, *, expect: int) -> bytes:
    port = server.ports[0]
    before = worker_pid(port)
    response = raw_request(port, data)
    assert status_of(response) == expect, response[:300]
    assert b"Traceback" not in response
    after = raw_request(port, request(b"/parity/text"))
    assert status_of(after) == 200
    assert worker_pid(port) == before, "the worker was replaced"
    assert "Internal Server Error" not in server.stderr
    return response


@pytest.mark.parametrize("path", [b"/bridge/whoami", b"/parity/text"])
def test_malformed_cookies_are_ignored_or_refused(server: HybridProcess, path: bytes) -> None:
    # Unbalanced quotes, empty names, '=' in values, a bad session key: Django's lenient
    # parse_cookie ignores what it cannot read (and an unknown session is a new one) -> 200.
    broken = b'Cookie: sessionid="abc; ==; a=b=c; ;; csrftoken; sessionid=\xff\xfe\r\n'
    assert_refused_then_served(server, request(path, broken), expect=200)
    # Control characters in the header are refused by Tornado's parser -> 400.
    control = b"Cookie: csrftoken=\x00\x01\r\n"
    assert_refused_then_served(server, request(path, control), expect=400)


def test_oversized_headers_are_refused(server: HybridProcess) -> None:
    big = b"X-Big: " + b"a" * 20000 + b"\r\n"  # --max-header-size 16384
    response = assert_refused_then_served(server, request(b"/bridge/whoami", big), expect=431)
    assert b"Request header fields too large" in response
    many = b"".join(b"X-H%d: v\r\n" % n for n in range(2000))
    assert_refused_then_served(server, request(b"/parity/text", many), expect=431)
    # Past 4x the limit Tornado stops reading and can only drop the connection (no 500,
    # the worker lives on; nginx in front answers 400 itself long before that).
    port = server.ports[0]
    before = worker_pid(port)
    huge = b"X-Huge: " + b"a" * 70000 + b"\r\n"
    assert raw_request(port, request(b"/parity/text", huge)) == b""
    assert worker_pid(port) == before


@pytest.mark.parametrize(
    "path",
    [
        b"/parity/text%FF",  # percent-encoded, not UTF-8 (a 404, not a 500)
        b"/parity/\xff\xfe",  # raw bytes in the request line
        b"/bridge/errors/%FF%FE",
        b"/bridge/whoami\xc3",  # a truncated UTF-8 sequence
    ],
)
def test_non_utf8_paths_are_not_found(server: HybridProcess, path: bytes) -> None:
    assert_refused_then_served(server, request(path), expect=404)


@pytest.mark.parametrize("path", [b"/bridge/whoami", b"/parity/query"])
@pytest.mark.parametrize("query", [b"q=%FF%FE", b"q=\xff\xfe", b"q=\xc3&r=%C3"])
def test_non_utf8_query_strings_are_read_with_replacement(
    server: HybridProcess, path: bytes, query: bytes
) -> None:
    response = assert_refused_then_served(server, request(path + b"?" + query), expect=200)
    data = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert "\ufffd" in (data["q"] if path == b"/bridge/whoami" else data["q"][0])


@pytest.mark.parametrize("path", [b"/bridge/items", b"/parity/form"])
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (MULTIPART, b"--xyz\r\ngarbage without headers\r\n"),  # no final boundary
        (MULTIPART, b"--xyz\r\nContent-Type: text/plain\r\n\r\nvalue\r\n--xyz--\r\n"),
        (b"multipart/form-data", b"no boundary parameter"),
        (MULTIPART, b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\n"),  # truncated
    ],
)
def test_broken_multipart_is_a_400(
    server: HybridProcess, path: bytes, content_type: bytes, body: bytes
) -> None:
    headers = b"Content-Type: " + content_type + b"\r\n"
    assert_refused_then_served(server, request(path, headers, b"POST", body), expect=400)


def test_too_many_form_fields_is_a_400(server: HybridProcess) -> None:
    body = b"&".join(b"f%d=1" % n for n in range(1200))  # DATA_UPLOAD_MAX_NUMBER_FIELDS
    headers = b"Content-Type: " + FORM + b"\r\n"
    assert_refused_then_served(server, request(b"/parity/form", headers, b"POST", body), expect=400)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"a": 1', b"\xff\xfe\x00garbage", b"[" * 100000, b"", b"[1,]"],
)
def test_bad_json_to_a_json_handler_is_a_400(server: HybridProcess, body: bytes) -> None:
    headers = b"Content-Type: " + JSON + b"\r\n"
    data = request(b"/bridge/json", headers, b"POST", body)
    assert_refused_then_served(server, data, expect=400)
    good = request(b"/bridge/json", headers, b"POST", b'{"ok": true}')
    assert status_of(raw_request(server.ports[0], good)) == 200


def test_the_worker_survived_everything(server: HybridProcess) -> None:
    time.sleep(0.1)  # a crash would show by now: an absence has nothing to wait on
    assert server.proc.poll() is None
    assert "Traceback" not in server.stderr.replace("Bad Request", "")
