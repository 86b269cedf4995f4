"""Runs arriving one by one while the workers run, as web requests enqueue them.

``python -m bench.one SYSTEM arrival-PxC N 0`` (or ``drain-PxC``): P worker processes
of C executors each start first and idle (untimed); the clock then runs from the
first enqueue until every run succeeded.

* ``arrival``: this process enqueues the N runs one at a time, each in its own
  transaction (acidic: ``app.enqueue``; the raw floor: one ``INSERT`` and its
  ``pg_notify`` in autocommit; Procrastinate: ``task.defer``), as fast as it can;
* ``drain``: the N runs are inserted by one statement and announced at once (the
  queue is full when the workers start on it).

Systems: ``raw`` (the queue floor: per process one LISTEN connection that wakes one
idle executor thread per notification; each executor claims one row with
``UPDATE … SKIP LOCKED`` and runs the ride's three transactions, as
:func:`bench.systems.raw_pg.claim_and_run`), ``acidic`` (``acidic worker`` processes),
``procrastinate`` (its worker, ``concurrency`` = C, one task doing the three writes).

Beside the time, each measurement records the CPU the worker processes used per run
(``/proc``), and the CPU of the database server's backends connected to the bench
database at the end (the workers' connections), per run.

``python -m bench.arrival raw-worker C`` and ``procrastinate-worker C`` are the worker
processes of the raw floor and of Procrastinate.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from .common import (
    DATABASES,
    Measurement,
    Poller,
    check_rides,
    ensure_database,
    pg_url,
    pg_xact_stats,
    reset_ride_tables,
    ride_args,
    wait_until,
)

RAW_CHANNEL = "bench_runs"
#: ``$BENCH_PYSPY=DIR``: py-spy samples each worker process while the clock runs (its
#: CPU then counts in the figures too), written as DIR/worker-<i>.txt (collapsed stacks).
PYSPY = os.environ.get("BENCH_PYSPY", "")
#: Samples only where Python holds the GIL: CPU in Python, not waiting on the server.
SPY = [str(Path(sys.executable).parent / "py-spy"), "record", "--gil", "-f", "raw", "-r", "200"]
#: Threads enqueueing at once (web requests do so in parallel): one alone, each enqueue a
#: commit of its own, would be the bottleneck of the measurement instead of the workers.
FEEDERS = int(os.environ.get("BENCH_FEEDERS", "4"))


def _in_threads(enqueue: Any, n: int) -> None:
    """``enqueue(i)`` for i in range(n), by FEEDERS threads, each taking the next i."""
    counter = iter(range(n))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def feeder() -> None:
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                enqueue(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=feeder) for _ in range(FEEDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


_TICK = os.sysconf("SC_CLK_TCK")


def parse_mode(mode: str) -> tuple[str, int, int]:
    """``arrival-4x1`` -> ("arrival", 4 processes, 1 executor each)."""
    how, shape = mode.split("-", 1)
    procs, execs = shape.split("x")
    return how, int(procs), int(execs)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and its reaped children: none here)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _backend_pids(database: str) -> list[int]:
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def _hot_updates(database: str) -> int:
    """Heap-only (HOT) row updates of the database so far: they write no index entry."""
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT coalesce(sum(n_tup_hot_upd), 0) FROM pg_stat_user_tables"
        ).fetchone()
    return int(row[0]) if row else 0


def _listening(database: str) -> int:
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query LIKE 'LISTEN%%'",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def _vacuum(database: str) -> None:
    # Autovacuum is off on this machine: dead rows of earlier rounds would tax every queue.
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    from .latency import _pythonpath  # noqa: PLC0415

    return subprocess.Popen(args, env={**os.environ, "PYTHONPATH": _pythonpath()})


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def measure(system: str, mode: str, n: int) -> Measurement:
    how, procs, execs = parse_mode(mode)
    database = DATABASES[_DATABASE_OF.get(system, system)]
    feed, workers, done = _SYSTEMS[system](database, how, procs, execs, n)
    poller = Poller(database, *done)
    try:
        wait_until(lambda: _listening(database) >= procs, timeout=120, interval=0.05)
        time.sleep(0.3)  # the listeners' first (empty) claims are not timed
        backends = _backend_pids(database)
        xact0 = pg_xact_stats(database)
        hot0 = _hot_updates(database)
        cpu0 = [_cpu_seconds(p.pid) for p in workers]
        pg0 = {pid: _cpu_seconds(pid) for pid in backends}
        spies = [
            subprocess.Popen(
                [*SPY, "-o", f"{PYSPY}/worker-{i}.txt", "--pid", str(p.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i, p in enumerate(workers)
            if PYSPY
        ]
        start = time.perf_counter()
        feed()
        fed = time.perf_counter() - start
        wait_until(lambda: poller.count() >= n, timeout=3600, interval=0.01)
        seconds = time.perf_counter() - start
        cpu = sum(_cpu_seconds(p.pid) for p in workers) - sum(cpu0)
        pg = sum(_cpu_seconds(pid) - c for pid, c in pg0.items())
        # Backends flush their counters at most once a second (at a transaction's end):
        # the workers' idle polls meanwhile add a few commits in all.
        time.sleep(2.5)
        xact1 = pg_xact_stats(database)
        hot1 = _hot_updates(database)
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # writes its output
            spy.wait(timeout=60)
    finally:
        poller.close()
        _stop_all(workers)
    check_rides(database, n)
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        table = done[0]
        row = conn.execute("SELECT pg_indexes_size(%s::regclass)", (table,)).fetchone()
    extra = {
        "processes": procs,
        "executors": execs,
        "feed_seconds": fed,
        "worker_cpu_ms_per_run": 1000 * cpu / n,
        "pg_backend_cpu_ms_per_run": 1000 * pg / n,
        "loadavg": os.getloadavg()[0],
        # Transactions per run, the poller's (read-only) polls and the stats reads removed.
        "commits_per_run": (xact1["commits"] - xact0["commits"] - poller.polls - 2) / n,
        "rows_updated_per_run": (xact1["updated"] - xact0["updated"]) / n,
        "hot_updates_per_run": (hot1 - hot0) / n,
        # Index bytes the queue table grew by (it starts empty): what non-HOT updates cost.
        "queue_index_bytes_per_run": (int(row[0]) if row else 0) / n,
    }
    return Measurement(system, mode, n, procs * execs, seconds, extra)


# -- the raw queue floor --------------------------------------------------------------

RAW_INSERT = (
    "WITH new AS (INSERT INTO bench_progress (key, args, status) VALUES (%s, %s, 'pending')"
    " RETURNING id) SELECT pg_notify('" + RAW_CHANNEL + "', '') FROM new"
)


def _raw(
    database: str, how: str, procs: int, execs: int, n: int, role: str = "raw-worker"
) -> tuple[Any, Any, Any]:
    reset_ride_tables(database)
    _vacuum(database)
    workers = [
        _spawn([sys.executable, "-m", "bench.arrival", role, str(execs)]) for _ in range(procs)
    ]
    conn = psycopg.connect(pg_url(database), autocommit=True)
    conns = [psycopg.connect(pg_url(database), autocommit=True) for _ in range(FEEDERS)]
    local = threading.local()

    def enqueue(i: int) -> None:
        c = getattr(local, "conn", None)
        if c is None:
            c = local.conn = conns.pop()
        c.execute(RAW_INSERT, (f"ride-{i}", json.dumps(ride_args(i))))

    def feed() -> None:
        if how == "arrival":
            _in_threads(enqueue, n)
        else:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO bench_progress (key, args, status) VALUES (%s, %s, 'pending')",
                    [(f"ride-{i}", json.dumps(ride_args(i))) for i in range(n)],
                )
            # One wake-up per executor (distinct payloads: PostgreSQL folds equal ones).
            for i in range(procs * execs):
                conn.execute(f"NOTIFY {RAW_CHANNEL}, '{i}'")
        conn.close()
        for c in conns:
            c.close()

    return feed, workers, ("bench_progress", "status = 'succeeded'")


def _raw_sa(database: str, how: str, procs: int, execs: int, n: int) -> tuple[Any, Any, Any]:
    return _raw(database, how, procs, execs, n, role="raw-sa-worker")


def raw_worker(execs: int, *, through_sqlalchemy: bool = False) -> None:
    """A process of the raw floor: ``execs`` executor threads; one LISTEN connection
    wakes one idle executor per notification. ``through_sqlalchemy``: each transaction on
    a connection of a SQLAlchemy Engine's pool, its statements ``text()`` (what an
    application's steps written with SQLAlchemy Core pay, with or without acidic)."""
    from .systems.raw_pg import claim_and_run, claim_and_run_sa  # noqa: PLC0415

    database = DATABASES["raw"]
    wake = threading.Condition()

    def executor() -> None:
        if through_sqlalchemy:
            import sqlalchemy as sa  # noqa: PLC0415

            engine = sa.create_engine(pg_url(database, "postgresql+psycopg"), pool_size=1)
            run_next = functools.partial(claim_and_run_sa, engine)
        else:
            run_next = functools.partial(claim_and_run, psycopg.connect(pg_url(database)))
        while True:
            while run_next():
                pass
            with wake:
                wake.wait(1.0)

    for _ in range(execs):
        threading.Thread(target=executor, daemon=True).start()
    with psycopg.connect(pg_url(database), autocommit=True) as listener:
        listener.execute(f"LISTEN {RAW_CHANNEL}")
        for _note in listener.notifies():
            with wake:
                wake.notify(1)


# -- acidic ---------------------------------------------------------------------------


def _acidic(database: str, how: str, procs: int, execs: int, n: int) -> tuple[Any, Any, Any]:
    from .latency import ENQUEUE_BATCH  # noqa: PLC0415
    from .systems.acidic_pg import pg_app, reset_pg  # noqa: PLC0415

    reset_pg()
    _vacuum(database)
    exe = Path(sys.executable).parent / "acidic"
    workers = [
        _spawn(
            [
                str(exe),
                "worker",
                "--app",
                "bench.workerapp:app",
                "--concurrency",
                str(execs),
                "--log-level",
                "WARNING",
            ]
        )
        for i in range(procs)
    ]
    app, ride = pg_app()
    if how == "arrival":
        app.enqueue(ride(**ride_args(-1)), key="warm")  # pools, caches: untimed
        wait_until(lambda: _count(database, "acidic_runs", "status = 'succeeded'") >= 1, 60)
        with psycopg.connect(pg_url(database), autocommit=True) as conn:
            conn.execute("DELETE FROM acidic_runs WHERE idempotency_key = 'warm'")
            conn.execute("TRUNCATE rides, ride_audit")

    def feed() -> None:
        if how == "arrival":
            _in_threads(lambda i: app.enqueue(ride(**ride_args(i)), key=f"ride-{i}"), n)
        else:
            with psycopg.connect(pg_url(database), autocommit=True) as conn:
                conn.execute(ENQUEUE_BATCH, (0, n - 1))
                conn.execute("SELECT pg_notify('acidic_runs', 'default')")
        app.close()

    return feed, workers, ("acidic_runs", "status = 'succeeded'")


def _count(database: str, table: str, where: str) -> int:
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()
    return int(row[0]) if row else 0


# -- Procrastinate --------------------------------------------------------------------


def _procrastinate(database: str, how: str, procs: int, execs: int, n: int) -> tuple[Any, Any, Any]:
    import procrastinate  # noqa: PLC0415

    from .systems.procrastinate_pg import _define_tasks, _reset  # noqa: PLC0415

    ensure_database(database)
    if not _reset():
        app = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(conninfo=pg_url(database))
        )
        with app.open():
            app.schema_manager.apply_schema()
    _vacuum(database)
    workers = [
        _spawn([sys.executable, "-m", "bench.arrival", "procrastinate-worker", str(execs)])
        for _ in range(procs)
    ]
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=pg_url(database)))
    ride, _ = _define_tasks(app, None)

    def feed() -> None:
        with app.open():
            if how == "arrival":
                _in_threads(lambda i: ride.defer(**ride_args(i)), n)
            else:
                for start in range(0, n, 500):
                    ride.batch_defer(*(ride_args(i) for i in range(start, min(n, start + 500))))

    return feed, workers, ("procrastinate_jobs", "status = 'succeeded'")


def procrastinate_worker(execs: int) -> None:
    import logging  # noqa: PLC0415

    import procrastinate  # noqa: PLC0415
    from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415

    from .systems.procrastinate_pg import _define_tasks  # noqa: PLC0415

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    database = DATABASES["procrastinate"]

    async def main() -> None:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=pg_url(database)))
        pool = AsyncConnectionPool(pg_url(database), min_size=execs, max_size=execs, open=False)
        _define_tasks(app, pool)
        async with app.open_async():
            await pool.open()
            await app.run_worker_async(concurrency=execs, wait=True, install_signal_handlers=False)

    asyncio.run(main())


#: The database of a system, where it is not the system's own name.
_DATABASE_OF = {"raw-sa": "raw"}
_SYSTEMS = {
    "raw": _raw,
    "raw-sa": _raw_sa,
    "acidic": _acidic,
    "procrastinate": _procrastinate,
}


if __name__ == "__main__":
    role, count = sys.argv[1], int(sys.argv[2])
    {
        "raw-worker": raw_worker,
        "raw-sa-worker": functools.partial(raw_worker, through_sqlalchemy=True),
        "procrastinate-worker": procrastinate_worker,
    }[role](count)
