"""Self-signed certificates for the TLS tests, made with the ``openssl`` command line
(Python's ``ssl`` module cannot make one, and ``cryptography`` is not a dependency).

:func:`self_signed` returns a :class:`Certificate` valid for ``localhost`` and the loopback
addresses the tests listen on; :meth:`Certificate.client_context` trusts it.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Every address a test server listens on (the two "hosts" of the cross-host tests too).
NAMES = "DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3"


@dataclass(frozen=True)
class Certificate:
    certfile: Path
    keyfile: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate alone and checks the name."""
        return ssl.create_default_context(cafile=str(self.certfile))


def self_signed(directory: Path, name: str = "server") -> Certificate:
    """An EC P-256 certificate and its unencrypted key in ``directory``, valid for two days.
    Fails the test, naming the package, when ``openssl`` is not installed."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail(
            "the openssl command is needed to make a test certificate: apt-get install openssl"
        )
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            f"subjectAltName={NAMES}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Certificate(cert, key)
