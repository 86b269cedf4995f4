"""``python -m bench.django_ride``: the cost of acidic's durability for a job whose
steps write through the Django ORM (acidic.django), against the same three
transactions written with the ORM alone.

Each job: reserve (INSERT a row), charge (UPDATE it), finish (INSERT a second row),
each one ``transaction.atomic()``; acidic adds the run's claim and the progress of each
step, committed in the step's transaction. Inline (``app.run``), one thread.

Run with Django 6 or 5.2 installed (scripts/test-django makes .venv312)::

    .venv312/bin/python -m bench.django_ride --n 300
    .venv312/bin/python -m bench.django_ride --n 300 --url postgresql://postgres@127.0.0.1/bench

``--url`` names an empty database (a fresh SQLite file by default); the tables of the
test project (tests/django/project) are migrated into it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="jobs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--url", default=None, help="database URL (default: a new SQLite file)")
    args = parser.parse_args(argv)
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite3'}"
    os.environ["ACIDIC_TEST_DJANGO_DB"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django.project.settings"
    sys.path.insert(0, str(ROOT))

    from django.core.management import call_command  # noqa: PLC0415

    import django  # noqa: PLC0415 - configured from the environment set above

    django.setup()
    call_command("migrate", verbosity=0)
    acidic_job, orm_job = _jobs()
    results: dict[str, list[float]] = {"acidic": [], "orm": []}
    for round_no in range(args.rounds):
        for name, job in (("orm", orm_job), ("acidic", acidic_job)):
            start = time.perf_counter()
            for i in range(args.n):
                job(f"{name}-{round_no}-{i}")
            results[name].append((time.perf_counter() - start) / args.n * 1000)
    orm = statistics.median(results["orm"])
    durable = statistics.median(results["acidic"])
    print(f"database: {django.db.connection.vendor}, N={args.n} jobs x {args.rounds} rounds")
    print(f"ORM alone, 3 transactions/job:   {orm:7.3f} ms/job (median of rounds)")
    print(f"acidic.django inline, 3 steps:   {durable:7.3f} ms/job")
    print(f"ratio acidic / ORM alone:        {durable / orm:7.2f}x")


def _jobs() -> tuple[Any, Any]:
    from django.db import transaction  # noqa: PLC0415
    from tests.django.project.rides.models import Ride  # noqa: PLC0415

    import acidic  # noqa: PLC0415
    from acidic.django import app, step  # noqa: PLC0415

    @app.job(name="bench.ride")
    class BenchRide(acidic.Job):
        rider: str

        @step
        def reserve(self) -> None:
            Ride.objects.create(rider=self.rider, stage="reserved")

        @step
        def charge(self) -> None:
            Ride.objects.filter(rider=self.rider).update(charged=True)

        @step
        def finish(self) -> None:
            Ride.objects.create(rider=self.rider, stage="done")

    def durable(rider: str) -> None:
        app.run(BenchRide(rider=rider))

    def orm_alone(rider: str) -> None:
        with transaction.atomic():
            Ride.objects.create(rider=rider, stage="reserved")
        with transaction.atomic():
            Ride.objects.filter(rider=rider).update(charged=True)
        with transaction.atomic():
            Ride.objects.create(rider=rider, stage="done")

    return durable, orm_alone


if __name__ == "__main__":
    main()
