"""The App of the limits tests' worker processes (``tests.support.limits_app:app``,
built from ``$ACIDIC_TEST_URL``): a job limited to one run per user at a time, and
queues with a concurrency and a rate limit. Each run's step holds its transaction for
``pause`` seconds and records (``worker_effects``) when it started and ended."""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import sqlalchemy as sa

import acidic
from tests.support import worker_app

QUEUES = {
    "default": acidic.Queue(),
    "narrow": acidic.Queue(concurrency=3),
    "metered": acidic.Queue(rate=acidic.Rate(20, per=dt.timedelta(seconds=1))),
}


class PerUser(acidic.Job):
    """At most one run per user holds a lock at once."""

    user: int
    n: int
    pause: float = 0.02
    concurrency = acidic.Limit("user:{user}", 1)

    @acidic.step
    def work(self, tx: sa.Connection) -> None:
        started = worker_app.now_us()
        time.sleep(self.pause)
        worker_app._effect(tx, f"user:{self.user}", "work", self.attempt, started)


class Plain(acidic.Job):
    """No limit of its own: limited by its queue only."""

    n: int
    pause: float = 0.02

    @acidic.step
    def work(self, tx: sa.Connection) -> None:
        started = worker_app.now_us()
        time.sleep(self.pause)
        worker_app._effect(tx, self.key, "work", self.attempt, started)


def make_app(url: str) -> acidic.App:
    application = acidic.App(url, queues=QUEUES)
    application.job(name="PerUser")(PerUser)
    application.job(name="Plain")(Plain)
    return application


def spans(application: acidic.App) -> dict[str, list[tuple[int, int, int]]]:
    """(start, end, pid) of every committed execution, by the effect's key."""
    found: dict[str, list[tuple[int, int, int]]] = {}
    for row in worker_app.effects(application):
        found.setdefault(row["run_key"], []).append(
            (row["started_us"], row["ended_us"], row["pid"])
        )
    return found


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    application = make_app(os.environ[worker_app.URL_ENV])
    globals()["app"] = application
    return application
