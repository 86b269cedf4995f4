"""Transactions per run when runs arrive one at a time to an idle worker:
``python -m bench.idle [N]`` (the acidic on ``PYTHONPATH`` first, for an A/B of trees).

One ``acidic worker --concurrency 1`` process; this process enqueues a ride, waits until
it succeeded, pauses 20 ms, and so on N times. Transactions per run are the server's
commit count over the N runs (every statement in autocommit counts as one), minus this
process's own polls: the enqueue, the claim, the step writes, and the worker's claims and
reads that found nothing.
"""

from __future__ import annotations

import os
import sys
import time

import psycopg

from .arrival import _listening, _vacuum
from .common import DATABASES, pg_url, pg_xact_stats, ride_args
from .latency import _stop, _worker
from .systems.acidic_pg import pg_app, reset_pg


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    database = DATABASES["acidic"]
    reset_pg()
    _vacuum(database)
    worker = _worker(1)
    app, ride = pg_app()
    conn = psycopg.connect(pg_url(database), autocommit=True)
    polls = 0

    def done(key: str) -> bool:
        nonlocal polls
        polls += 1
        row = conn.execute(
            "SELECT status FROM acidic_runs WHERE idempotency_key = %s", (key,)
        ).fetchone()
        return row == ("succeeded",)

    try:
        while _listening(database) < 1:
            time.sleep(0.05)
        app.enqueue(ride(**ride_args(-1)), key="warm")
        while not done("warm"):
            time.sleep(0.01)
        time.sleep(2.5)  # backends flush their counters at most once a second
        before, polls = pg_xact_stats(database), 0
        for i in range(n):
            app.enqueue(ride(**ride_args(i)), key=f"ride-{i}")
            while not done(f"ride-{i}"):
                time.sleep(0.005)
            time.sleep(0.02)  # the worker goes idle between arrivals
        time.sleep(2.5)
        after = pg_xact_stats(database)
    finally:
        _stop(worker)
        app.close()
        conn.close()
    per_run = (after["commits"] - before["commits"] - polls - 1) / n
    updated = (after["updated"] - before["updated"]) / n
    print(
        f"{os.environ.get('PYTHONPATH', 'this tree')}: transactions/run {per_run:.2f},"
        f" row updates/run {updated:.2f}, load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
