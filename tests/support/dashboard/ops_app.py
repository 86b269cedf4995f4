"""The App that ``acidic runs``, ``acidic stats`` and the dashboard are tested with.

Child processes load it as ``--app tests.support.dashboard.ops_app:app``: it is built on the
database of ``$ACIDIC_DATABASE_URL``. Tests build their own with :func:`make_app`.

* :class:`Ride` redacts its ``card`` argument and its ``token`` context key;
* :class:`Flaky` fails its second step on its first attempt (``max_attempts = 1``, so
  the run ends ``failed``) and succeeds when retried;
* :class:`Parked` halts in its second step until the signal ``go`` arrives;
* :class:`Slow` sleeps two minutes in its first attempt (a worker to kill while it holds
  the run), with a short ``lock_timeout`` so that another worker takes it over soon.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

import acidic

QUEUES = ("default", "mail")


class Ride(acidic.Job):
    user_id: int
    card: str
    redact = ("card", "token")

    @acidic.step
    def book(self, tx: sa.Connection) -> None:
        self.ctx["token"] = f"tok_secret_{self.user_id}"
        self.ctx["seat"] = "12A"

    @acidic.step(transactional=False)
    def charge(self) -> None:
        self.ctx["charged"] = True

    @acidic.step
    def receipt(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response({"ride": self.user_id, "seat": self.ctx["seat"]})


class Flaky(acidic.Job):
    n: int
    max_attempts = 1

    @acidic.step
    def prepare(self, tx: sa.Connection) -> None:
        self.ctx["prepared"] = self.n

    @acidic.step
    def call_partner(self, tx: sa.Connection) -> None:
        if self.attempt == 1:
            raise ValueError(f"partner refused request {self.n} <script>alert(1)</script>")

    @acidic.step
    def finish(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response({"n": self.n, "attempt": self.attempt})


class Parked(acidic.Job):
    n: int

    @acidic.step
    def start(self, tx: sa.Connection) -> None:
        self.ctx["started"] = True

    @acidic.step
    def wait_for_go(self, tx: sa.Connection) -> acidic.Halt | None:
        return None if self.signal("go") else acidic.Halt()

    @acidic.step
    def done(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response("done")


class Slow(acidic.Job):
    n: int
    lock_timeout = 9.0

    @acidic.step(transactional=False)
    def work(self) -> None:
        if self.attempt == 1:
            time.sleep(120)

    @acidic.step
    def done(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response({"n": self.n, "attempt": self.attempt})


JOBS: dict[str, type[acidic.Job]] = {
    "Ride": Ride,
    "Flaky": Flaky,
    "Parked": Parked,
    "Slow": Slow,
}


def make_app(url: str | None = None, **options: Any) -> acidic.App:
    """An App on ``url`` (default ``$ACIDIC_DATABASE_URL``) with the jobs above."""
    app = acidic.App(url, queues=QUEUES, **options)
    for name, cls in JOBS.items():
        app.job(name=name)(cls)
    # Listed on the Scheduled page; catch_up=0: no worker of a test enqueues a past tick.
    app.schedule(
        "nightly-flaky", Flaky(n=99), cron="0 3 * * *", timezone="Europe/Paris", catch_up=0
    )
    return app


app = make_app()
