"""The App that ``acidic worker --app bench.workerapp:app`` serves in the latency and
memory sections: the ride job, and ``bench.Ping``, whose only step records when it
started (wall clock, to compare with the enqueuer's)."""

from __future__ import annotations

import os
import time

from sqlalchemy import Connection, text

import acidic

from .common import DATABASES, pg_url
from .systems.acidic_pg import make_app

app, Ride = make_app(
    os.environ.get("BENCH_ACIDIC_URL", pg_url(DATABASES["acidic"], "postgresql+psycopg"))
)


@app.job(name="bench.Ping")
class Ping(acidic.Job):
    n: int

    @acidic.step
    def started(self, tx: Connection) -> None:
        tx.execute(
            text("INSERT INTO bench_latency (n, started) VALUES (:n, :t)"),
            {"n": self.n, "t": time.time()},
        )
