"""``ride RIDER``: run the BookRide job inline under the key ``ride:RIDER`` and print
its result as JSON (the crash tests run it in child processes)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from acidic.django import app

from ...jobs import BookRide


class Command(BaseCommand):
    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("rider")

    def handle(self, *args: Any, **options: Any) -> None:
        result = app.run(BookRide(rider=options["rider"]), key=f"ride:{options['rider']}")
        self.stdout.write(json.dumps(result))
