"""For the tests that run or read nginx: whether nginx is installed, the marker that skips
them loudly without it (and fails them under CI, where scripts/bootstrap installed it), and
a reader of the directives in a rendered config."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hybrid.nginx import NginxError, find_nginx
from hybrid.nginx.binary import base_command

try:
    NGINX: str | None = find_nginx()
except NginxError:
    NGINX = None

# Locally without nginx these tests skip, loudly; in CI (CI=true) they must run.
requires_nginx = pytest.mark.skipif(
    NGINX is None and not os.environ.get("CI"),
    reason="nginx is not installed: run scripts/bootstrap (apt-get install nginx-light)",
)


def directives(text: str, name: str) -> list[str]:
    """The arguments of every ``name ...;`` directive in ``text``, comments ignored."""
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(rf"{re.escape(name)}(?:\s+(.*))?;", line)
        if match:
            found.append(match.group(1) or "")
    return found


@contextmanager
def nginx_running(prefix: Path, conf: Path) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground on ``conf`` (its files in ``prefix``), stopped on the way out."""
    nginx = subprocess.Popen(
        [*base_command(find_nginx(), prefix, conf), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield nginx
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
