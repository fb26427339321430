"""``manage.py runhybrid --ports 8001-8004``: ``hybrid serve`` for a project that has
``"hybrid"`` in ``INSTALLED_APPS``. Same options; ``--settings`` and ``--pythonpath`` are
Django's own."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from hybrid.cli import add_serve_arguments, run_serve
from hybrid.config import OPTIONS


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    help = "Serve this project from Tornado workers, one per port (like `hybrid serve`)."
    # The workers boot the project themselves; checks here would only slow the master.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_serve_arguments(parser, django_builtins=False)

    def handle(self, *args: Any, **options: Any) -> None:
        status = run_serve({o.name: options.get(o.name) for o in OPTIONS}, "runhybrid")
        if status:
            # The reason is already on stderr as one line; a CommandError would add another.
            raise SystemExit(status)
