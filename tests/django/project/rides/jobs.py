"""The test project's jobs (imported at start-up by acidic.django's discovery)."""

from __future__ import annotations

import os
import signal

import sqlalchemy as sa
from django.db import connection, transaction

import acidic
from acidic.django import app, step

from .models import Ride


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@app.job(name="rides.book")
class BookRide(acidic.Job):
    """Three steps writing through the ORM (and one through ``tx``).

    ``$ACIDIC_TEST_CRASH`` kills the process on the first attempt: ``before`` inside
    the first step, before its commit; ``after`` right after it (an on_commit hook)."""

    rider: str
    lock_timeout = 2.0

    @step
    def reserve(self) -> None:
        Ride.objects.create(rider=self.rider, stage="reserved")
        Ride.objects.bulk_create([Ride(rider=self.rider, stage=f"seat{i}") for i in (1, 2)])
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO rides_ride (rider, stage, charged) VALUES (%s, %s, %s)",
                [self.rider, "raw", False],
            )
        crash = os.environ.get("ACIDIC_TEST_CRASH")
        if crash == "before" and self.attempt == 1:
            _die()
        if crash == "after" and self.attempt == 1:
            transaction.on_commit(_die)
        self.ctx["reserved"] = True

    @acidic.step
    def charge(self, tx: sa.Connection) -> None:
        Ride.objects.filter(rider=self.rider).update(charged=True)
        # tx is a SQLAlchemy Connection on Django's connection, in the same transaction.
        seen = tx.execute(
            sa.text("SELECT COUNT(*) FROM rides_ride WHERE rider = :r AND charged = :c"),
            {"r": self.rider, "c": True},
        ).scalar_one()
        self.ctx["charged"] = int(seen)

    @step
    def finish(self) -> acidic.Response:
        ride = Ride.objects.create(rider=self.rider, stage="done")
        on_commit_marker = os.environ.get("ACIDIC_TEST_ON_COMMIT")
        if on_commit_marker:

            def record() -> None:
                # Runs after the step's commit: the row is visible from a fresh connection.
                with open(on_commit_marker, "w") as f:
                    f.write(str(ride.pk))

            transaction.on_commit(record)
        return acidic.Response({"rides": Ride.objects.filter(rider=self.rider).count(), **self.ctx})


@app.job(name="rides.pay")
class Pay(acidic.Job):
    """Fails at its only step; its card is redacted where operators look."""

    card: str
    amount: int
    redact = ("card",)

    @step
    def charge(self) -> None:
        self.ctx["tried"] = self.amount
        raise RuntimeError("card declined")


@app.job(name="rides.commits")
class Commits(acidic.Job):
    """A step that commits its own transaction: refused."""

    @acidic.step
    def go(self, tx: sa.Connection) -> None:
        Ride.objects.create(rider="commits", stage="x")
        tx.commit()
