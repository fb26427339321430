"""hybrid.reloader: which files ``--reload`` watches, and one answer per burst of saves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from waiting import wait_until

from hybrid import Config
from hybrid.reloader import Reloader, source_roots, watched_files


def tree(root: Path) -> None:
    """A project with the places a watcher must skip."""
    for name, text in {
        "manage.py": "",
        "app/__init__.py": "",
        "app/views.py": "A = 1\n",
        "app/templates/page.html": "<p>",
        "app/notes.txt": "",
        "app/data.json": "{}",
        "app/__pycache__/views.cpython-311.py": "",
        ".git/hooks/x.py": "",
        ".venv/lib/y.py": "",
        "env/pyvenv.cfg": "",
        "env/lib/z.py": "",
        "node_modules/w.py": "",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_watched_files_are_sources_outside_hidden_dirs_and_virtualenvs(tmp_path: Path) -> None:
    tree(tmp_path)
    found = sorted(str(p.relative_to(tmp_path)) for p in watched_files([tmp_path]))
    assert found == [
        "app/__init__.py",
        "app/notes.txt",
        "app/templates/page.html",
        "app/views.py",
        "manage.py",
    ]


def test_source_roots_are_the_cwd_pythonpath_and_settings_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "site" / "inner").mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    monkeypatch.chdir(tmp_path / "site")
    config = Config(pythonpath=str(tmp_path / "site" / "inner"), settings="testproject.settings")
    import testproject

    settings_package = Path(testproject.__path__[0]).resolve()
    # The inner --pythonpath is inside the current directory: watched once.
    assert sorted(source_roots(config)) == sorted([tmp_path / "site", settings_package])
    config = Config(pythonpath=str(tmp_path / "lib"), settings=None)
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    assert source_roots(config) == [tmp_path / "lib", tmp_path / "site"]


def test_polling_answers_once_per_burst_after_the_debounce(tmp_path: Path) -> None:
    tree(tmp_path)
    reloader = Reloader([tmp_path], backend="poll", poll_interval=0, debounce=0.4)
    assert reloader.backend == "poll"
    view = tmp_path / "app" / "views.py"
    assert reloader.changed(now=100.0) is None
    for i in range(3):  # a burst: changes at 100.1, 100.2, 100.3
        view.write_text(f"A = {i + 2}\n")
        os.utime(view, ns=(i, i))
        assert reloader.changed(now=100.1 + i / 10) is None
    assert reloader.changed(now=100.5) is None  # 0.2 s after the last change
    assert reloader.changed(now=100.8) == [str(view)]
    assert reloader.changed(now=105.0) is None
    (tmp_path / "app" / "data.json").write_text("[]")  # not a source
    (tmp_path / ".venv" / "lib" / "y.py").write_text("B = 1\n")
    (tmp_path / "app" / "new.py").write_text("")
    (tmp_path / "manage.py").unlink()
    assert reloader.changed(now=106.0) is None
    assert reloader.changed(now=107.0) == [
        str(tmp_path / "app/new.py"),
        str(tmp_path / "manage.py"),
    ]
    reloader.close()


def test_watchfiles_answers_once_per_burst(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    tree(tmp_path)
    reloader = Reloader([tmp_path], backend="watchfiles", debounce=0.3)
    try:
        view = tmp_path / "app" / "views.py"
        (tmp_path / ".venv" / "lib" / "y.py").write_text("B = 1\n")
        (tmp_path / "app" / "data.json").write_text("[]")
        for i in range(3):
            view.write_text(f"A = {i + 2}\n")
        changed = wait_until(reloader.changed, 10, interval=0.05)
        assert changed == [str(view)]
        assert reloader.changed() is None
    finally:
        reloader.close()


def test_watchfiles_watches_a_source_directory_made_after_it_started(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    tree(tmp_path)
    reloader = Reloader([tmp_path], backend="watchfiles", debounce=0.3)
    try:
        # startapp: a package appears, its files written at once (before any watch on it).
        models = tmp_path / "shop" / "models.py"
        models.parent.mkdir()
        (tmp_path / "shop" / "__init__.py").write_text("")
        models.write_text("A = 1\n")
        (tmp_path / ".cache").mkdir()  # hidden: never watched
        changed = wait_until(reloader.changed, 10, interval=0.05)
        assert set(changed) <= {str(models), str(tmp_path / "shop" / "__init__.py")}
        assert str(models) in changed
        # Later saves in the new package reload too, and in its new subpackage.
        (tmp_path / "shop" / "api").mkdir()
        wait_until(lambda: reloader.changed() is None, 2, interval=0.05)
        models.write_text("A = 2\n")
        assert wait_until(reloader.changed, 10, interval=0.05) == [str(models)]
        (tmp_path / "shop" / "api" / "views.py").write_text("")
        changed = wait_until(reloader.changed, 10, interval=0.05)
        assert changed == [str(tmp_path / "shop" / "api" / "views.py")]
        (tmp_path / ".cache" / "x.py").write_text("")
        (tmp_path / "shop" / "api" / "views.py").write_text("B = 1\n")
        changed = wait_until(reloader.changed, 10, interval=0.05)
        assert changed == [str(tmp_path / "shop" / "api" / "views.py")]
    finally:
        reloader.close()


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown reload backend 'inotify'"):
        Reloader([tmp_path], backend="inotify")


def test_auto_picks_watchfiles_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles")
    reloader = Reloader([tmp_path])
    assert reloader.backend == "watchfiles"
    reloader.close()


def test_auto_falls_back_to_polling_without_watchfiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import fails
    reloader = Reloader([tmp_path])
    assert reloader.backend == "poll"
    reloader.close()
    with pytest.raises(ImportError):
        Reloader([tmp_path], backend="watchfiles")
