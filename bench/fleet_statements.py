"""Statements per run that a worker sends (every thread but the heartbeat's): the fleet's
registry must add none to a run's path.

``python -m bench.fleet_statements [--server postgresql+psycopg://postgres@127.0.0.1]``
creates two databases of its own (``acidic_fleet_stmt_1``, ``…_21``), enqueues 1 and 21
runs of a three-step job, runs a worker in a thread until they succeeded, counts the
statements its threads send (BEGIN/COMMIT/ROLLBACK excluded, through SQLAlchemy's
``before_cursor_execute``) and prints (big - small) / 20: the statements per run. Run it
with another checkout's interpreter to compare (the same figure means no statement added).
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
from typing import Any

import psycopg
import sqlalchemy as sa

import acidic

_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK"}


class Ride(acidic.Job):
    """Three transactional steps, each one query of its own."""

    i: int

    @acidic.step
    def a(self, tx: sa.Connection) -> None:
        tx.execute(sa.text("SELECT 1"))

    @acidic.step
    def b(self, tx: sa.Connection) -> None:
        tx.execute(sa.text("SELECT 1"))

    @acidic.step
    def c(self, tx: sa.Connection) -> None:
        tx.execute(sa.text("SELECT 1"))


def _fresh(server: str, name: str) -> str:
    plain = server.replace("+psycopg", "")
    with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def measure(url: str, n: int) -> collections.Counter[str]:
    """Statements by thread kind while a worker executes ``n`` runs."""
    app = acidic.App(url)
    try:
        app.migrate()
        app.job(name="bench.Ride")(Ride)
        for i in range(n):
            app.enqueue(Ride(i=i), key=f"ride-{i}")
        counts: collections.Counter[str] = collections.Counter()

        def on(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.strip().upper() in _CONTROL:
                return
            name = threading.current_thread().name
            counts["heartbeat" if "heartbeat" in name else "run path"] += 1

        sa.event.listen(app.engine, "before_cursor_execute", on)
        worker = app.worker(poll_interval=1.0)
        thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
        thread.start()
        while worker.outcomes.get("succeeded", 0) < n:
            time.sleep(0.01)
        worker.stop()
        thread.join()
        return counts
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1")
    args = parser.parse_args()
    small = measure(_fresh(args.server, "acidic_fleet_stmt_1"), 1)
    big = measure(_fresh(args.server, "acidic_fleet_stmt_21"), 21)
    per_run = {k: (big[k] - small[k]) / 20 for k in sorted(set(big) | set(small))}
    print(f"statements per run (N=1: {dict(small)}, N=21: {dict(big)}): {per_run}")


if __name__ == "__main__":
    main()
