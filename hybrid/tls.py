"""TLS from ``--certfile``/``--keyfile``: the checks the master makes before anything starts,
and the ``SSLContext`` of workers that serve TLS themselves (``hybrid serve`` without
``--nginx``; with ``--nginx``, nginx terminates TLS and the workers stay plain HTTP).

Modern protocols only, in both places: TLS 1.2 and 1.3.
"""

from __future__ import annotations

import re
import ssl

from hybrid.config import Config
from hybrid.errors import ConfigError

__all__ = ["MINIMUM_VERSION", "check", "check_options", "server_context", "worker_context"]

#: The oldest protocol accepted, by nginx (``ssl_protocols TLSv1.2 TLSv1.3``) and by the
#: workers' own ``SSLContext``.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def _where(config: Config, name: str) -> str:
    return config.sources.get(name, "--" + name.replace("_", "-"))


def check_options(config: Config) -> None:
    """The options that go together, without touching a file: ``--certfile`` and
    ``--keyfile`` both or neither, and ``--redirect-port`` only with them. Raises
    :class:`ConfigError`."""
    if bool(config.certfile) != bool(config.keyfile):
        given, missing = ("certfile", "keyfile") if config.certfile else ("keyfile", "certfile")
        raise ConfigError(
            f"{_where(config, given)} is given without --{missing}: give both (the "
            "certificate and its private key) or neither",
            option=_where(config, given),
            value=getattr(config, given),
        )
    if config.redirect_port is not None and not config.certfile:
        where = _where(config, "redirect_port")
        raise ConfigError(
            f"{where} {config.redirect_port} needs --certfile and --keyfile: it redirects "
            "plain HTTP to https",
            option=where,
            value=config.redirect_port,
        )


def check(config: Config) -> None:
    """:func:`check_options`, then that both files can be read and make a certificate with
    its key (one line naming the file and the fix). Raises :class:`ConfigError`."""
    check_options(config)
    if config.certfile and config.keyfile:
        server_context(config)


def server_context(config: Config) -> ssl.SSLContext:
    """A server ``SSLContext`` for ``config``'s certificate and key: TLS 1.2 and 1.3,
    HTTP/1.1 over ALPN (the workers speak no HTTP/2). Raises :class:`ConfigError` when
    a file cannot be read or the two do not make a certificate and its key."""
    certfile, keyfile = config.certfile, config.keyfile
    if not certfile or not keyfile:
        raise ConfigError("TLS needs --certfile and --keyfile", option="--certfile")
    for name, path in (("certfile", certfile), ("keyfile", keyfile)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            where = _where(config, name)
            raise ConfigError(
                f"{where} {path} cannot be read: {exc.strerror or exc}",
                option=where,
                value=path,
            ) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    try:
        # The password callback keeps an encrypted key from prompting on the terminal.
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except (ssl.SSLError, ValueError) as exc:
        reason = _openssl_reason(exc)
        raise ConfigError(
            f"--certfile {certfile} and --keyfile {keyfile} are not a PEM certificate and "
            f"its unencrypted private key ({reason}): check the files and that the key "
            "belongs to the certificate",
            option=_where(config, "certfile"),
            value=certfile,
        ) from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def _openssl_reason(exc: Exception) -> str:
    """OpenSSL's reason in a few words: ``key values mismatch``, ``PEM lib``."""
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).replace("_", " ").lower()
    text = str(exc.args[-1] if exc.args else exc)
    return re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", text) or type(exc).__name__


def _no_password() -> str:
    raise ValueError("the key is encrypted")


def worker_context(config: Config) -> ssl.SSLContext | None:
    """What a worker hands Tornado's ``HTTPServer`` as ``ssl_options``: the context when
    it serves TLS itself (``--certfile`` without ``--nginx``), else ``None``."""
    if config.certfile and config.nginx is None:
        return server_context(config)
    return None
