"""TLS end to end, with a self-signed certificate made for the test (``openssl``):
``serve --nginx --certfile --keyfile`` (nginx terminates TLS; https, wss, ``is_secure()``,
Secure cookies, the ``--redirect-port`` 301) and the workers serving TLS themselves
without nginx."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import websocket  # websocket-client, a selenium dependency: a plain blocking client
from certificates import Certificate, self_signed
from conftest import REPO_DIR, HybridProcess, hybrid_env, run_hybrid
from nginx_tests import requires_nginx
from waiting import wait_until

from hybrid.nginx.binary import http2_mode

Serve = Callable[..., HybridProcess]
Ports = Callable[[int], list[int]]


@pytest.fixture
def cert(tmp_path: Path) -> Certificate:
    return self_signed(tmp_path / "tls")


def tls_args(cert: Certificate) -> list[str]:
    return ["--certfile", str(cert.certfile), "--keyfile", str(cert.keyfile)]


def https(
    cert: Certificate, port: int, path: str, context: ssl.SSLContext | None = None
) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port, timeout=10, context=context or cert.client_context()
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def answers_https(cert: Certificate, port: int) -> bool:
    try:
        return https(cert, port, "/hybrid/pid")[0] == 200
    except OSError:
        return False


def negotiated(cert: Certificate, port: int, context: ssl.SSLContext) -> tuple[str, str | None]:
    """The protocol version and ALPN protocol a handshake with ``context`` agrees on."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            return str(conn.version()), conn.selected_alpn_protocol()


def room_socket(cert: Certificate, port: int) -> dict[str, object]:
    """Open ``wss://.../hybrid/room/tls`` (a DjangoWebSocketHandler whose Origin check wants
    this site's own https origin) and return its first message."""
    ws = websocket.create_connection(
        f"wss://127.0.0.1:{port}/hybrid/room/tls",
        timeout=10,
        sslopt={"ca_certs": str(cert.certfile)},
    )
    try:
        hello = json.loads(ws.recv())
        ws.send(json.dumps({"send": "over tls"}))
        while (message := json.loads(ws.recv()))["type"] != "chat.message":
            pass
        assert message["text"] == "over tls"
        return dict(hello)
    finally:
        ws.close()


@requires_nginx
def test_nginx_terminates_tls_for_https_and_wss_and_redirects_plain_http(
    hybrid_serve: Serve, free_ports: Ports, cert: Certificate
) -> None:
    *ports, nginx_port, redirect_port = free_ports(4)
    server = hybrid_serve(
        "--nginx",
        str(nginx_port),
        "--redirect-port",
        str(redirect_port),
        *tls_args(cert),
        ports=ports,
        settings="testproject.settings_tls",
    )
    wait_until(lambda: answers_https(cert, nginx_port), 20, message=lambda: server.stderr)
    wait_until(lambda: f"listening on https://127.0.0.1:{nginx_port}" in server.stderr, 10)
    wait_until(lambda: f"serving https://127.0.0.1:{nginx_port}" in server.stderr, 10)
    assert f"serving http://127.0.0.1:{ports[0]}" in server.stderr  # the workers: plain
    # Django sees the request as secure: nginx sends X-Forwarded-Proto https to a
    # loopback worker, which hybrid honours (--xheaders); no SECURE_PROXY_SSL_HEADER.
    status, _, body = https(cert, nginx_port, "/django/secure")
    assert (status, json.loads(body)) == (200, {"is_secure": True, "scheme": "https"})
    status, response, body = https(cert, nginx_port, "/django/session?set=tls")
    assert status == 200
    cookie = response.getheader("Set-Cookie") or ""
    assert cookie.startswith("sessionid=") and "; Secure" in cookie  # SESSION_COOKIE_SECURE
    # The workers themselves stay plain HTTP, and say so without nginx's header.
    plain = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
    plain.request("GET", "/django/secure")
    assert json.loads(plain.getresponse().read()) == {"is_secure": False, "scheme": "http"}
    plain.close()
    # wss through nginx: the handshake's Origin is https://127.0.0.1:PORT, this very site.
    assert room_socket(cert, nginx_port)["type"] == "joined"
    # Modern protocols only: TLS 1.3 by default, 1.2 when the client goes no higher.
    assert negotiated(cert, nginx_port, cert.client_context())[0] == "TLSv1.3"
    tls12 = cert.client_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert negotiated(cert, nginx_port, tls12)[0] == "TLSv1.2"
    alpn = cert.client_context()
    alpn.set_alpn_protocols(["h2", "http/1.1"])
    expected = "h2" if http2_mode() else "http/1.1"
    assert negotiated(cert, nginx_port, alpn)[1] == expected
    # --redirect-port: plain HTTP answered 301 to the same host and path over https.
    conn = http.client.HTTPConnection("127.0.0.1", redirect_port, timeout=10)
    conn.request("GET", "/django/pid?x=1&y=2")
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://127.0.0.1:{nginx_port}/django/pid?x=1&y=2"
    conn.close()
    assert "Traceback" not in server.stderr


def served_certificate(port: int) -> bytes:
    """The DER certificate the server on ``port`` presents (not verified: it may change)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(cert: Certificate) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.certfile.read_text())


@requires_nginx
def test_reload_makes_nginx_read_a_renewed_certificate_and_keeps_it_on_a_bad_one(
    hybrid_serve: Serve, free_ports: Ports, cert: Certificate, tmp_path: Path
) -> None:
    *ports, nginx_port = free_ports(2)
    # nginx is given copies, renewed in place the way certbot renews its live/ files.
    live = Certificate(tmp_path / "live.crt", tmp_path / "live.key")
    live.certfile.write_bytes(cert.certfile.read_bytes())
    live.keyfile.write_bytes(cert.keyfile.read_bytes())
    server = hybrid_serve(
        "--nginx",
        str(nginx_port),
        *tls_args(live),
        ports=ports,
        settings="testproject.settings_tls",
    )
    wait_until(lambda: answers_https(cert, nginx_port), 20, message=lambda: server.stderr)
    assert served_certificate(nginx_port) == der(cert)
    wait_until(lambda: " serving https://" in server.stderr, 10, message=lambda: server.stderr)
    nginx_pid = int(server.stderr.split(" serving https://")[0].rsplit("nginx ", 1)[1])
    renewed = self_signed(tmp_path / "renewed")
    live.certfile.write_bytes(renewed.certfile.read_bytes())
    live.keyfile.write_bytes(renewed.keyfile.read_bytes())
    server.proc.send_signal(signal.SIGHUP)  # hybrid reload
    wait_until(
        lambda: served_certificate(nginx_port) == der(renewed), 20, message=lambda: server.stderr
    )
    wait_until(
        lambda: f"nginx {nginx_pid} re-reading its config and certificates" in server.stderr, 10
    )
    assert answers_https(renewed, nginx_port)
    # A renewal gone wrong (a key of another certificate): nginx -t refuses it, so the
    # running certificate keeps serving, and the log says why in one line.
    live.keyfile.write_bytes(cert.keyfile.read_bytes())
    server.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: f"nginx {nginx_pid} keeps its running config and certificates: " in server.stderr,
        20,
        message=lambda: server.stderr,
    )
    assert served_certificate(nginx_port) == der(renewed)
    assert answers_https(renewed, nginx_port)
    assert f"nginx {nginx_pid} serving https://" in server.stderr  # never restarted
    assert server.stderr.count(" serving https://") == 1
    assert "Traceback" not in server.stderr


def test_without_nginx_the_workers_serve_tls_themselves(
    hybrid_serve: Serve, free_ports: Ports, cert: Certificate
) -> None:
    ports = free_ports(2)
    server = hybrid_serve(
        *tls_args(cert), ports=ports, settings="testproject.settings_tls", wait=False
    )
    for port in ports:
        wait_until(
            lambda p=port: answers_https(cert, p),  # type: ignore[misc]
            30,
            message=lambda: server.stderr,
        )
    wait_until(lambda: f"serving https://127.0.0.1:{ports[0]}" in server.stderr, 10)
    status, _, body = https(cert, ports[0], "/django/secure")
    assert (status, json.loads(body)) == (200, {"is_secure": True, "scheme": "https"})
    status, response, _ = https(cert, ports[1], "/django/session?set=direct")
    assert "; Secure" in (response.getheader("Set-Cookie") or "")
    assert room_socket(cert, ports[1])["port"] == ports[1]
    assert negotiated(cert, ports[0], cert.client_context())[0] == "TLSv1.3"
    tls12 = cert.client_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    tls12.set_alpn_protocols(["h2", "http/1.1"])
    assert negotiated(cert, ports[0], tls12) == ("TLSv1.2", "http/1.1")  # no HTTP/2 here
    # Plain HTTP on a TLS port gets no answer.
    plain = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=5)
    with pytest.raises((OSError, http.client.HTTPException)):
        plain.request("GET", "/hybrid/pid")
        plain.getresponse().read()
    plain.close()
    assert "Traceback" not in server.stderr


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cert only", "--certfile is given without --keyfile: give both"),
        ("unreadable key", "cannot be read: Is a directory"),
        ("mismatch", "(key values mismatch)"),
        ("redirect without tls", "--redirect-port 8080 needs --certfile and --keyfile"),
        ("redirect without nginx", "--redirect-port needs --nginx PORT"),
        ("redirect on a worker port", "port 8001 is also one of --ports"),
    ],
)
def test_bad_tls_options_are_one_line_and_exit_2(
    cert: Certificate, tmp_path: Path, case: str, message: str
) -> None:
    other = self_signed(tmp_path / "other")
    args = {
        "cert only": ["--certfile", str(cert.certfile)],
        "unreadable key": ["--certfile", str(cert.certfile), "--keyfile", str(tmp_path)],
        "mismatch": ["--certfile", str(cert.certfile), "--keyfile", str(other.keyfile)],
        "redirect without tls": ["--nginx", "8000", "--redirect-port", "8080"],
        "redirect without nginx": [*tls_args(cert), "--redirect-port", "8080"],
        "redirect on a worker port": [
            *tls_args(cert),
            "--nginx",
            "8000",
            "--redirect-port",
            "8001",
        ],
    }[case]
    result = run_hybrid("serve", "--settings", "testproject.settings", "--ports", "8001", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_a_config_built_by_hand_with_a_missing_certificate_is_a_boot_error(
    free_ports: Ports, tmp_path: Path
) -> None:
    """``hybrid.serve()`` skips the CLI's checks: the worker reports the bad file in one
    line and the master raises WorkerBootError, not a traceback from the worker."""
    (port,) = free_ports(1)
    missing = tmp_path / "nowhere.pem"
    code = (
        "import hybrid\n"
        f"config = hybrid.Config(ports=({port},), settings='testproject.settings',"
        f" certfile={str(missing)!r}, keyfile={str(missing)!r})\n"
        "try:\n"
        "    hybrid.serve(config)\n"
        "except hybrid.WorkerBootError as exc:\n"
        "    print('BOOT:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=hybrid_env(),
        cwd=REPO_DIR,
        timeout=60,
    )
    assert f"BOOT: worker for port {port} failed to boot: " in done.stdout, done.stderr
    assert "cannot be read" in done.stdout
    assert "Traceback" not in done.stderr
