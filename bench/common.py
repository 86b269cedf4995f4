"""What every system of the benchmark shares: the databases, the ride tables, the fake
foreign call and the shape of a measurement.

Each measurement runs in a fresh child process (``python -m bench.one``) so that no
system inherits another's connections, caches or threads; the parent alternates them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

#: The server every PostgreSQL system uses; one database per system (made on demand).
PG_SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
#: ``$BENCH_DATABASE_SUFFIX`` keeps concurrent benchmark runs (a shared machine) apart.
_SUFFIX = os.environ.get("BENCH_DATABASE_SUFFIX", "")
DATABASES = {
    "raw": "acidic_bench" + _SUFFIX,
    "acidic": "acidic_bench" + _SUFFIX,
    "dbos": "dbos_bench" + _SUFFIX,
    "procrastinate": "procrastinate_bench" + _SUFFIX,
}
SQLITE_DIR = Path(os.environ.get("BENCH_SQLITE_DIR", Path(tempfile.gettempdir()) / "acidic-bench"))
RESULTS = Path(__file__).parent / "results"

#: The ride workload's tables, identical for every system. ``bench_progress`` is the
#: raw floor's own progress row (what a durable step must record, at the least).
RIDE_DDL_PG = """
CREATE TABLE IF NOT EXISTS rides (
    id BIGSERIAL PRIMARY KEY, user_id INTEGER NOT NULL, origin TEXT NOT NULL,
    target TEXT NOT NULL, charge_id TEXT);
CREATE TABLE IF NOT EXISTS ride_audit (
    id BIGSERIAL PRIMARY KEY, ride_id BIGINT NOT NULL, action TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS bench_progress (
    id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL UNIQUE, args TEXT NOT NULL,
    status TEXT NOT NULL, step TEXT, ctx TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS bench_progress_pending ON bench_progress (id)
    WHERE status = 'pending';
"""
RIDE_TABLES = ("rides", "ride_audit", "bench_progress")

RIDE_DDL_SQLITE = """
CREATE TABLE IF NOT EXISTS rides (
    id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, origin TEXT NOT NULL,
    target TEXT NOT NULL, charge_id TEXT);
CREATE TABLE IF NOT EXISTS ride_audit (
    id INTEGER PRIMARY KEY, ride_id INTEGER NOT NULL, action TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS bench_progress (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, args TEXT NOT NULL,
    status TEXT NOT NULL, step TEXT, ctx TEXT NOT NULL DEFAULT '{}');
"""

#: The statements of the workload, the same text for every system (``%s`` / ``?``
#: placeholders are swapped per driver).
INSERT_RIDE = "INSERT INTO rides (user_id, origin, target) VALUES (%s, %s, %s) RETURNING id"
UPDATE_RIDE = "UPDATE rides SET charge_id = %s WHERE id = %s"
INSERT_AUDIT = "INSERT INTO ride_audit (ride_id, action) VALUES (%s, 'charged')"


#: The names :a, :b, ... that :func:`sa_text` gives a statement's %s placeholders in turn.
SA_NAMES = "abcdefgh"


def sa_text(sql: str) -> Any:
    """The workload's psycopg statement (``%s`` placeholders) as SQLAlchemy ``text()`` with
    the named parameters :a, :b, ... in their order; :func:`sa_params` names the values."""
    from sqlalchemy import text  # noqa: PLC0415 - the raw systems never import SQLAlchemy

    parts = sql.split("%s")
    return text(
        "".join(p + (f":{SA_NAMES[i]}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))
    )


def sa_params(*values: Any) -> dict[str, Any]:
    """``values`` named for a :func:`sa_text` statement."""
    return dict(zip(SA_NAMES, values, strict=False))


def ride_args(i: int) -> dict[str, Any]:
    return {"user_id": i, "origin": f"origin-{i}", "target": f"target-{i}"}


def fake_charge(ride_id: int, idempotency_key: str) -> str:
    """The foreign call: no I/O, a deterministic charge id (what a payment API returns)."""
    digest = hashlib.sha256(f"{ride_id}:{idempotency_key}".encode()).hexdigest()
    return "ch_" + digest[:24]


def pg_url(database: str, driver: str = "postgresql") -> str:
    return f"{PG_SERVER.replace('postgresql', driver, 1)}/{database}"


#: Words of the errors a PostgreSQL restart causes (other engineers' disruptive tests
#: restart the shared server): a measurement that failed so is retried.
RESTART_ERRORS = (
    "shutting down",
    "starting up",
    "connection failed",
    "terminating connection",
    "server closed the connection",
    "Connection refused",
    "consuming input failed",
    "administrator command",
)


def wait_for_pg(timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def retry_on_restart(fn: Any, *args: Any, attempts: int = 3) -> Any:
    """Call ``fn(*args)``, again (after PostgreSQL is back) if a restart broke it."""
    for attempt in range(attempts):
        wait_for_pg()
        try:
            return fn(*args)
        except (psycopg.OperationalError, RuntimeError) as exc:
            if attempt == attempts - 1 or not any(w in str(exc) for w in RESTART_ERRORS):
                raise
            if isinstance(exc, psycopg.errors.AdminShutdown) or "terminating" in str(exc):
                time.sleep(2)
    raise AssertionError("unreachable")


def ensure_database(database: str) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')


def reset_ride_tables(database: str) -> None:
    """Create the ride tables if needed and empty them (untimed, before each measurement)."""
    ensure_database(database)
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        conn.execute(RIDE_DDL_PG)
        conn.execute(f"TRUNCATE {', '.join(RIDE_TABLES)} RESTART IDENTITY")


def count_rows(database: str, table: str, where: str = "") -> int:
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} {where}").fetchone()
        assert row is not None
        return int(row[0])


def check_rides(database: str, n: int) -> None:
    """Every system must leave N charged rides and N audit rows: the work was done."""
    charged = count_rows(database, "rides", "WHERE charge_id IS NOT NULL")
    audits = count_rows(database, "ride_audit")
    if charged != n or audits != n:
        raise RuntimeError(f"expected {n} charged rides and audit rows, found {charged}/{audits}")


def pg_xact_stats(database: str) -> dict[str, int]:
    """The server's own counters for the database (commits, rollbacks, rows written)."""
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted"
            " FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    assert row is not None
    return dict(zip(("commits", "rollbacks", "inserted", "updated", "deleted"), row, strict=True))


@dataclass
class Measurement:
    """One timed execution of N jobs by one system in one mode."""

    system: str
    mode: str
    n: int
    concurrency: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def jobs_per_s(self) -> float:
        return self.n / self.seconds

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["jobs_per_s"] = self.jobs_per_s
        data["ms_per_job"] = 1000 * self.seconds / self.n
        return data


def emit(m: Measurement) -> None:
    """A child's answer to its parent: one JSON line on stdout, last."""
    sys.stdout.write("BENCH-RESULT " + json.dumps(m.to_json()) + "\n")
    sys.stdout.flush()


class Timer:
    """Wall seconds of a block (``seconds``) and this process's CPU seconds in it, user
    and system, all threads (``cpu``: steadier than the wall time on a loaded machine)."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu = time.process_time() - self.cpu_start


def time_executors(
    conns: list[psycopg.Connection],
    next_job: Callable[[psycopg.Connection], bool],
) -> float:
    """Seconds until every connection's executor (a thread each, or this thread for
    one) is done: each calls ``next_job(conn)`` until it returns False. The first error
    of an executor is raised here; the connections are closed."""
    errors: list[BaseException] = []

    def executor(conn: psycopg.Connection) -> None:
        try:
            while next_job(conn):
                pass
        except BaseException as exc:  # reported by the parent thread
            errors.append(exc)

    with Timer() as t:
        if len(conns) == 1:
            executor(conns[0])
        else:
            threads = [threading.Thread(target=executor, args=(c,)) for c in conns]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
    for c in conns:
        c.close()
    if errors:
        raise errors[0]
    return t.seconds


class Poller:
    """Counts rows while a workload runs, on one autocommit connection (no churn);
    :mod:`bench.sqlcount` recognises and ignores its queries."""

    def __init__(self, database: str, table: str, where: str) -> None:
        self.conn = psycopg.connect(pg_url(database), autocommit=True)
        self.sql = f"SELECT count(*) /* bench poll */ FROM {table} WHERE {where}"
        self.polls = 0

    def count(self) -> int:
        self.polls += 1
        row = self.conn.execute(self.sql).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.conn.close()


def wait_until(predicate: Any, timeout: float, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the workload did not finish in time")
        time.sleep(interval)
