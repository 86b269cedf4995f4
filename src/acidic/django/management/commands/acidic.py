"""``manage.py acidic ...``: acidic's command line configured from the settings."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..._cli import run


class Command(BaseCommand):
    help = (
        "acidic's command line (worker, runs, stats, prune, dashboard, migrate, ...) on "
        "the project's App; `manage.py acidic --help` lists its commands"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("arguments", nargs="*", help="the acidic command and its options")

    def run_from_argv(self, argv: list[str]) -> None:
        # The command line goes to click untouched (its options, help and exit codes),
        # not through Django's argument parser.
        from django.db import connections  # noqa: PLC0415

        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        code = run(argv[2:], prog)
        connections.close_all()
        sys.exit(code)

    def handle(self, *args: Any, **options: Any) -> None:
        # call_command("acidic", "runs", "list"): the same, raising on failure.
        code = run([*args, *options.get("arguments", [])], "manage.py acidic")
        if code:
            raise CommandError(f"acidic exited with {code}", returncode=code)
