"""acidic on the ride workload: inline (``app.run``, one job after another) and through
its worker (``acidic.Worker`` in this process, ``concurrency`` executor threads), on
PostgreSQL or SQLite."""

from __future__ import annotations

import os
import sys
import threading

import psycopg
from sqlalchemy import Connection

import acidic

from ..common import (
    DATABASES,
    INSERT_AUDIT,
    INSERT_RIDE,
    RIDE_DDL_SQLITE,
    SQLITE_DIR,
    UPDATE_RIDE,
    Measurement,
    Poller,
    Timer,
    check_rides,
    fake_charge,
    pg_url,
    reset_ride_tables,
    ride_args,
    sa_text,
    wait_until,
)

DB = DATABASES["acidic"]


_INSERT_RIDE = sa_text(INSERT_RIDE)
_UPDATE_RIDE = sa_text(UPDATE_RIDE)
_INSERT_AUDIT = sa_text(INSERT_AUDIT)


def make_app(url: str) -> tuple[acidic.App, type[acidic.Job]]:
    app = acidic.App(url)

    @app.job(name="bench.Ride")
    class Ride(acidic.Job):
        user_id: int
        origin: str
        target: str

        @acidic.step
        def create_ride(self, tx: Connection) -> None:
            self.ctx["ride_id"] = tx.execute(
                _INSERT_RIDE, {"a": self.user_id, "b": self.origin, "c": self.target}
            ).scalar_one()

        @acidic.step(transactional=False)
        def charge(self) -> None:
            self.ctx["charge_id"] = fake_charge(self.ctx["ride_id"], self.step_key)

        @acidic.step
        def finish(self, tx: Connection) -> None:
            ride_id = self.ctx["ride_id"]
            tx.execute(_UPDATE_RIDE, {"a": self.ctx["charge_id"], "b": ride_id})
            tx.execute(_INSERT_AUDIT, {"a": ride_id})

    return app, Ride


def pg_app() -> tuple[acidic.App, type[acidic.Job]]:
    return make_app(pg_url(DB, "postgresql+psycopg"))


def reset_pg(keep_runs: bool = False) -> None:
    reset_ride_tables(DB)
    app, _ = pg_app()
    app.migrate()
    app.close()
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        if keep_runs:  # the growth section's preloaded runs stay; earlier rides go
            conn.execute("DELETE FROM acidic_runs WHERE idempotency_key LIKE 'ride-%'")
        else:
            conn.execute(
                "TRUNCATE acidic_runs, acidic_history, acidic_signals RESTART IDENTITY CASCADE"
            )


def sqlite_path() -> str:
    SQLITE_DIR.mkdir(parents=True, exist_ok=True)
    return str(SQLITE_DIR / "acidic.sqlite3")


def reset_sqlite() -> None:
    import sqlite3  # noqa: PLC0415

    path = sqlite_path()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    conn = sqlite3.connect(path)
    conn.executescript(RIDE_DDL_SQLITE)
    conn.close()
    app, _ = make_app(f"sqlite:///{path}")
    app.migrate()
    app.close()


def run_inline(app: acidic.App, job: type[acidic.Job], n: int, first: int = 0) -> float:
    with Timer() as t:
        for i in range(first, first + n):
            app.run(job(**ride_args(i)), key=f"ride-{i}")
    return t.seconds


def run_worker(
    app: acidic.App, job: type[acidic.Job], n: int, concurrency: int, first: int = 0
) -> float:
    for i in range(first, first + n):  # untimed: the queue is filled first
        app.enqueue(job(**ride_args(i)), key=f"ride-{i}")
    worker = app.worker(concurrency=concurrency, poll_interval=1.0)
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    with Timer() as t:
        thread.start()
        # Until every run succeeded: a run that errored (PostgreSQL restarted under it,
        # as other engineers' tests do on a shared machine) is retried by the worker.
        wait_until(lambda: worker.outcomes.get("succeeded", 0) >= n, timeout=3600)
    worker.stop()
    thread.join()
    if worker.outcomes.get("succeeded", 0) != n:
        raise RuntimeError(f"worker outcomes: {dict(worker.outcomes)}")
    if len(worker.outcomes) > 1:
        print(f"worker outcomes: {dict(worker.outcomes)}", file=sys.stderr)
    return t.seconds


#: Worker processes of the ``processes`` mode; ``concurrency`` executors are split
#: between them (4 executors: 2 processes of 2).
PROCESSES = 2


def run_worker_processes(n: int, concurrency: int, processes: int = PROCESSES) -> float:
    """``processes`` real ``acidic worker`` processes (``concurrency // processes``
    executors each) drain N ride runs: how deployments get past one process's GIL.

    The workers start first and idle; the clock runs from one ``INSERT … SELECT`` of the
    N runs (and a NOTIFY) until all succeeded, so process start-up is not timed."""
    from ..latency import ENQUEUE_BATCH, _stop, _worker  # noqa: PLC0415

    reset_pg()
    each = max(1, concurrency // processes)
    workers = [_worker(each) for _ in range(processes)]
    poller = Poller(DB, "acidic_runs", "status = 'succeeded'")
    try:
        with psycopg.connect(pg_url(DB), autocommit=True) as conn:
            # Ready once every worker listens for notifications.
            wait_until(
                lambda: (
                    conn.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = %s AND query LIKE 'LISTEN%%'",
                        (DB,),
                    ).fetchone()
                    == (processes,)
                ),
                timeout=120,
                interval=0.05,
            )
            with Timer() as t:
                conn.execute(ENQUEUE_BATCH, (0, n - 1))
                conn.execute("SELECT pg_notify('acidic_runs', 'default')")
                wait_until(lambda: poller.count() >= n, timeout=3600, interval=0.005)
    finally:
        poller.close()
        for worker in workers:
            _stop(worker)
    return t.seconds


def run(mode: str, n: int, concurrency: int, *, sqlite: bool = False) -> Measurement:
    if sqlite:
        reset_sqlite()
        app, job = make_app(f"sqlite:///{sqlite_path()}")
    else:
        reset_pg(keep_runs=os.environ.get("BENCH_KEEP_RUNS") == "1")
        app, job = pg_app()
    try:
        if mode == "inline":
            seconds = run_inline(app, job, n)
        elif mode == "processes":
            seconds = run_worker_processes(n, concurrency)
        else:
            seconds = run_worker(app, job, n, concurrency)
    finally:
        app.close()
    if sqlite:
        from .raw_sqlite import check_sqlite  # noqa: PLC0415

        check_sqlite(sqlite_path(), n)
    else:
        check_rides(DB, n)
    system = "acidic-sqlite" if sqlite else "acidic"
    return Measurement(system, mode, n, concurrency, seconds)
