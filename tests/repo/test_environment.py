"""The test environment is the pinned one: what ``scripts/bootstrap`` installs is exactly
``scripts/constraints.txt``, and setup.cfg keeps upper bounds where hybrid uses private API.

These fail when someone installs a tool by hand, moves a pin without the venv, or drops a
bound, which is how a suite ends up green on one machine and broken on a fresh one.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import sys
import sysconfig
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "scripts" / "constraints.txt"


def pins() -> dict[str, str]:
    """``{canonical name: version}`` for the lines of the constraints file that apply here."""
    result: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = spec.strip().partition("==")
        assert version, f"constraints.txt: {raw!r} is not pinned with =="
        result[canonicalize_name(name)] = version.strip()
    return result


def test_every_installed_distribution_is_pinned_at_its_installed_version() -> None:
    wanted = pins()
    # Only the venv's own site-packages: setuptools' pkg_resources puts its vendored
    # packages on sys.path, and those are not installed distributions.
    site_packages = sysconfig.get_paths()["purelib"]
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions(path=[site_packages])
    }
    installed.pop("hybrid", None)  # the project itself, editable
    assert sys.prefix != sys.base_prefix, "the suite runs in scripts/bootstrap's virtualenv"
    unpinned = sorted(set(installed) - set(wanted))
    assert not unpinned, f"installed but not in scripts/constraints.txt: {unpinned}"
    drift = {
        name: (installed[name], version)
        for name, version in wanted.items()
        if name in installed and installed[name] != version
    }
    assert not drift, f"installed vs pinned: {drift} (run scripts/bootstrap)"


def test_django_follows_the_python_version() -> None:
    import django

    expected = "5.2" if sys.version_info < (3, 12) else "6.0"
    assert django.get_version().startswith(expected + ".")


def test_the_libraries_hybrid_patches_have_upper_bounds() -> None:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = parser["options"]["install_requires"].splitlines()
    lines += parser["options.extras_require"]["mysql"].splitlines()
    lines += parser["options.extras_require"]["uvloop"].splitlines()
    lines += parser["options.extras_require"]["proctitle"].splitlines()
    lines += parser["options.extras_require"]["redis"].splitlines()
    lines += parser["options.extras_require"]["celery"].splitlines()
    lines += parser["options.extras_require"]["reload"].splitlines()
    requirements = [Requirement(x) for x in lines if x.strip() and not x.startswith("#")]
    by_name: dict[str, list[Requirement]] = {}
    for requirement in requirements:
        by_name.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    # A release series the suite has never run is refused; the ones it runs are allowed.
    never_run = {
        "tornado": "7.0",
        "django": "6.1",
        "aiomysql": "0.4",
        "asgiref": "4.0",
        "uvloop": "0.24",
        "setproctitle": "1.4",
        "redis": "9.0",
        "hiredis": "4.0",
        "celery": "5.8",
        "watchfiles": "1.4",
    }
    supported = {
        "tornado": "6.6.1",
        "django": "5.2.19",
        "aiomysql": "0.3.2",
        "asgiref": "3.13.0",
        "uvloop": "0.23.0",
        "setproctitle": "1.3.8",
        "redis": "8.1.0",
        "hiredis": "3.5.0",
        "celery": "5.7.0",
        "watchfiles": "1.3.0",
    }
    for name, version in never_run.items():
        assert name in by_name, f"setup.cfg does not list {name}"
        for requirement in by_name[name]:
            assert not requirement.specifier.contains(version), f"setup.cfg: {requirement}"
            assert requirement.specifier.contains(supported[name]), f"setup.cfg: {requirement}"
