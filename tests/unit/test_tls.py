"""hybrid.tls: --certfile/--keyfile checked in one line before anything starts, and the
workers' own SSLContext (TLS 1.2 and 1.3, HTTP/1.1 over ALPN)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from certificates import Certificate, self_signed

from hybrid.config import Config
from hybrid.errors import ConfigError
from hybrid.tls import MINIMUM_VERSION, check, server_context, worker_context


@pytest.fixture
def cert(tmp_path: Path) -> Certificate:
    return self_signed(tmp_path / "tls")


def with_files(cert: Certificate, **changes: object) -> Config:
    return Config(certfile=str(cert.certfile), keyfile=str(cert.keyfile)).replace(**changes)


def test_the_context_is_modern_and_serves_the_certificate(cert: Certificate) -> None:
    context = server_context(with_files(cert))
    assert context.minimum_version == MINIMUM_VERSION == ssl.TLSVersion.TLSv1_2
    check(with_files(cert, redirect_port=80))


def test_the_workers_serve_tls_only_without_nginx(cert: Certificate) -> None:
    assert worker_context(Config()) is None
    assert worker_context(with_files(cert, nginx=8000)) is None  # nginx terminates TLS
    assert isinstance(worker_context(with_files(cert)), ssl.SSLContext)


def test_no_tls_options_is_fine() -> None:
    check(Config())


def _encrypted_key(cert: Certificate) -> Path:
    path = cert.keyfile.with_name("encrypted.key")
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(cert.keyfile),
            "-aes256",
            "-passout",
            "pass:x",
            "-out",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cert only", "--certfile is given without --keyfile: give both"),
        ("redirect alone", "--redirect-port 80 needs --certfile and --keyfile"),
        ("missing cert", "cannot be read: No such file or directory"),
        ("swapped", "are not a PEM certificate and its unencrypted private key (PEM lib)"),
        ("other key", "(key values mismatch): check the files and that the key belongs"),
        ("encrypted key", "(the key is encrypted)"),
    ],
)
def test_bad_files_are_one_line_config_errors(
    cert: Certificate, tmp_path: Path, case: str, message: str
) -> None:
    other = self_signed(tmp_path / "other")
    config = {
        "cert only": Config(certfile=str(cert.certfile)),
        "redirect alone": Config(redirect_port=80),
        "missing cert": with_files(cert, certfile=str(tmp_path / "nope.crt")),
        "swapped": with_files(cert, certfile=str(cert.keyfile), keyfile=str(cert.certfile)),
        "other key": with_files(cert, keyfile=str(other.keyfile)),
        "encrypted key": with_files(cert, keyfile=str(_encrypted_key(cert))),
    }[case]
    with pytest.raises(ConfigError) as info:
        check(config)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_an_unreadable_key_names_the_file(cert: Certificate, tmp_path: Path) -> None:
    config = Config.from_sources(
        {"certfile": str(cert.certfile)}, environ={"HYBRID_KEYFILE": str(tmp_path)}
    )
    with pytest.raises(ConfigError, match=rf"^HYBRID_KEYFILE {tmp_path} cannot be read: "):
        check(config)
