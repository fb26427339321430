"""render_config with other hosts' workers (--upstream) and with TLS (--certfile,
--keyfile, --redirect-port); nginx -t accepts every variant."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from nginx_tests import directives, requires_nginx

from hybrid.config import Config
from hybrid.errors import ConfigError, NginxError
from hybrid.nginx import check_config, find_nginx, render_config
from hybrid.nginx.binary import http2_mode
from hybrid.nginx.render import Http2, next_upstream_timeout

CERT, KEY = "/srv/tls/site.crt", "/srv/tls/site.key"


def servers_block(text: str, listen: str) -> str:
    """The ``server { ... }`` block whose first listen is ``listen``."""
    for part in text.split("    server {")[1:]:
        if part.strip().startswith(f"listen {listen}"):
            return part.split("\n    }")[0]
    raise AssertionError(f"no server listening on {listen}")


def tls(**changes: object) -> Config:
    return Config(certfile=CERT, keyfile=KEY).replace(**changes)


def test_upstream_hosts_join_this_hosts_workers_with_the_same_failover(tmp_path: Path) -> None:
    config = Config.from_sources(
        {
            "ports": "8001-8002",
            "host": "10.0.0.2",
            "upstream": ["10.0.0.3:8001-8002", "[fd00::4]:8001"],
            "timeout": "10",
        },
        environ={},
    )
    text = render_config(config, prefix=tmp_path)
    assert directives(text, "server") == [
        "10.0.0.2:8001 max_fails=0",
        "10.0.0.2:8002 max_fails=0",
        "10.0.0.3:8001 max_fails=0",
        "10.0.0.3:8002 max_fails=0",
        "[fd00::4]:8001 max_fails=0",
    ]
    assert directives(text, "proxy_next_upstream_tries") == ["5"]  # every worker once
    assert directives(text, "proxy_next_upstream") == ["error timeout"]
    assert next_upstream_timeout(config) == 8.0  # as for one host: the retry window
    assert directives(text, "proxy_next_upstream_timeout") == ["8s"]


def test_a_duplicate_worker_is_a_config_error(tmp_path: Path) -> None:
    config = Config(ports=(8001,), upstream=(("127.0.0.1", (8001,)),))
    with pytest.raises(ConfigError, match="127.0.0.1:8001 is listed twice"):
        render_config(config, prefix=tmp_path)


def test_without_tls_nothing_changes(tmp_path: Path) -> None:
    text = render_config(Config(), prefix=tmp_path)
    assert "ssl" not in "\n".join(line.split("#")[0] for line in text.splitlines())
    assert directives(text, "listen") == ["127.0.0.1:8000"]
    assert "return 301" not in text


@pytest.mark.parametrize(
    ("http2", "listen", "directive"),
    [
        ("", "127.0.0.1:8443 ssl", []),
        ("listen", "127.0.0.1:8443 ssl http2", []),
        ("on", "127.0.0.1:8443 ssl", ["on"]),
    ],
)
def test_tls_listens_with_ssl_modern_protocols_and_http2_as_nginx_has_it(
    tmp_path: Path, http2: Http2, listen: str, directive: list[str]
) -> None:
    text = render_config(tls(nginx=8443), prefix=tmp_path, http2=http2)
    assert directives(text, "listen") == [listen]
    assert directives(text, "ssl_certificate") == [CERT]
    assert directives(text, "ssl_certificate_key") == [KEY]
    assert directives(text, "ssl_protocols") == ["TLSv1.2 TLSv1.3"]
    assert directives(text, "http2") == directive
    # The workers learn the scheme from nginx ($scheme is https on an ssl listen).
    assert "X-Forwarded-Proto $scheme" in directives(text, "proxy_set_header")
    assert "X-Scheme $scheme" in directives(text, "proxy_set_header")


def test_redirect_port_answers_301_to_the_same_host_and_path(tmp_path: Path) -> None:
    text = render_config(tls(nginx=8443, redirect_port=8080), prefix=tmp_path)
    redirect = servers_block(text, "127.0.0.1:8080")
    assert directives(redirect, "return") == ["301 https://$host:8443$request_uri"]
    assert "proxy_pass" not in redirect
    text = render_config(tls(redirect_port=80), prefix=tmp_path, listen_port=443)
    redirect = servers_block(text, "127.0.0.1:80")
    assert directives(redirect, "return") == ["301 https://$host$request_uri"]  # 443: no port


def test_server_name_refuses_other_hosts_on_both_ports(tmp_path: Path) -> None:
    config = tls(nginx=8443, redirect_port=8080, server_name="example.com")
    text = render_config(config, prefix=tmp_path, http2="listen")
    refuse = servers_block(text, "127.0.0.1:8443 ssl http2 default_server")
    assert directives(refuse, "listen") == [
        "127.0.0.1:8443 ssl http2 default_server",
        "127.0.0.1:8080 default_server",
    ]
    assert directives(refuse, "return") == ["444"]
    assert directives(servers_block(text, "127.0.0.1:8080;"), "server_name") == ["example.com"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"certfile": None}, "--keyfile is given without --certfile: give both"),
        ({"keyfile": None}, "--certfile is given without --keyfile: give both"),
        (
            {"certfile": None, "keyfile": None, "redirect_port": 80},
            "needs --certfile and --keyfile",
        ),
        ({"redirect_port": 8000}, "--redirect-port 8000 is nginx's own (https) port"),
    ],
)
def test_tls_option_errors_are_one_line(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        render_config(tls(**changes), prefix=tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_an_unsafe_certificate_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NginxError, match="--certfile path '/srv/my cert.pem' cannot be written"):
        render_config(tls(certfile="/srv/my cert.pem"), prefix=tmp_path)


@requires_nginx
def test_nginx_accepts_tls_upstream_and_redirect(tmp_path: Path) -> None:
    from certificates import self_signed

    cert = self_signed(tmp_path / "tls")
    config = Config(
        certfile=str(cert.certfile),
        keyfile=str(cert.keyfile),
        redirect_port=8080,
        server_name="example.com",
        upstream=(("127.0.0.3", (8001, 8002)),),
    )
    prefix = tmp_path / "nginx"
    for http2 in ("", http2_mode()):
        check_config(render_config(config, prefix=prefix, http2=http2), prefix=prefix)


@requires_nginx
def test_http2_mode_follows_the_binary() -> None:
    mode = http2_mode()
    result = subprocess.run([find_nginx(), "-V"], capture_output=True, text=True, check=True)
    arguments = result.stdout + result.stderr
    assert (mode != "") == ("--with-http_v2_module" in arguments)
