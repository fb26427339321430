"""The documentation: generated tables are current, and relative links lead somewhere.

``scripts/docs_tables.py`` regenerates the ``hybrid serve`` option table
(docs/deploy/serve.md) and the private-API inventory (docs/design.md) from the code;
``--check`` fails when a committed table differs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_DIR

from hybrid.config import OPTIONS

SCRIPT = REPO_DIR / "scripts" / "docs_tables.py"
MARKDOWN = [REPO_DIR / "README.md", *sorted((REPO_DIR / "docs").rglob("*.md"))]
#: [text](target) and ![alt](target); the target up to whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def run_tables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def copy_docs(root: Path) -> Path:
    """A copy of the files the script rewrites, laid out as in the repository."""
    shutil.copytree(REPO_DIR / "docs", root / "docs")
    return root


def test_generated_tables_are_current() -> None:
    result = run_tables("--check")
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_stale_table_and_the_script_fixes_it(tmp_path: Path) -> None:
    root = copy_docs(tmp_path)
    serve = root / "docs" / "deploy" / "serve.md"
    text = serve.read_text()
    assert "| `--ports PORTS` |" in text
    serve.write_text(text.replace("| `--ports PORTS` |", "| `--ports-of-old PORTS` |"))

    stale = run_tables("--check", "--root", str(root))
    assert stale.returncode == 1
    message = stale.stderr.strip()
    assert "\n" not in message
    assert "docs/deploy/serve.md" in message
    assert "python scripts/docs_tables.py" in message

    assert run_tables("--root", str(root)).returncode == 0
    assert serve.read_text() == text
    assert run_tables("--check", "--root", str(root)).returncode == 0


def test_serve_table_has_one_row_per_option() -> None:
    text = (REPO_DIR / "docs" / "deploy" / "serve.md").read_text()
    table = text.split("<!-- BEGIN generated: serve-options -->", 1)[1].split("<!-- END", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `--")]
    assert len(rows) == len(OPTIONS)
    for row, option in zip(rows, OPTIONS, strict=True):
        assert row.startswith(f"| `{option.flag}"), row
        assert f"`{option.env}`" in row, row


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(REPO_DIR)))
def test_relative_links_point_at_existing_files(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, mailto:, or an anchor in the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO_DIR)}: links to missing files: {broken}"
