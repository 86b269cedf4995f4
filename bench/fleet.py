"""Fleet reads on a large table: ``acidic queues`` and ``acidic workers`` (and the reads
behind the dashboard's Queues and Workers pages) with N runs stored on PostgreSQL.

``python -m bench.fleet [--runs 1000000] [--repeat 7] [--no-seed]`` seeds the database with
:mod:`bench.fleet_seed` (unless ``--no-seed``), then times each read in this process,
median of ``--repeat``: "server time" is the whole call of :class:`acidic._admin.Admin`
(SQL and Python, the command's start-up excluded). It also prints each statement's plan
(EXPLAIN ANALYZE), so the indexes used are visible. Not a test: the goal is under 200 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

import acidic
from acidic._admin import Admin, RunFilter
from acidic._storage._fleet import Fleet

from .common import pg_url
from .fleet_seed import DATABASE, seed

GOAL_MS = 200.0


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm: connections, caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _plans(app: acidic.App) -> None:
    """EXPLAIN ANALYZE of the statements behind the queues and workers reads."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    sa.event.listen(app.engine, "before_cursor_execute", capture)
    admin = Admin(app)
    admin.queues()
    admin.workers()
    admin.unknown_jobs()
    sa.event.remove(app.engine, "before_cursor_execute", capture)
    with app.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for statement, parameters in captured:
            if "acidic_schema_version" in statement:
                continue
            cursor = raw.cursor()
            cursor.execute(
                "EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF, SUMMARY ON) " + statement, parameters
            )
            lines = [r[0] for r in cursor.fetchall()]
            head = " ".join(statement.split())[:110]
            print(f"\n-- {head}…")
            for line in lines:
                if "Index" in line or "Seq Scan" in line or "Execution Time" in line:
                    print("   ", line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-seed", action="store_true")
    parser.add_argument("--database", default=DATABASE, help=f"(default {DATABASE})")
    args = parser.parse_args()
    if args.no_seed:
        url = pg_url(args.database, "postgresql+psycopg")
    else:
        started = time.monotonic()
        url = seed(args.runs, args.database)
        print(f"seeded {args.runs:,} runs in {time.monotonic() - started:.1f} s")
    app = acidic.App(url, queues=["default", "emails", "reports", "bulk"])
    try:
        admin = Admin(app)
        fleet = Fleet(app.manager.store)
        now = app.manager.clock()
        reads: dict[str, Callable[[], Any]] = {
            "acidic queues (Admin.queues)": admin.queues,
            "acidic workers (Admin.workers)": admin.workers,
            "unknown jobs (Admin.unknown_jobs)": admin.unknown_jobs,
            "runs list --orphaned (first page)": lambda: admin.list_runs(RunFilter(orphaned=True)),
            "runs list --unknown-job (first page)": lambda: admin.list_runs(
                RunFilter(unknown_job=True)
            ),
            "runs list (first page, annotated)": admin.list_runs,
            "queue counts (SQL only)": lambda: fleet.queue_counts(now),
        }
        print(f"\n{args.runs:,} runs stored; median of {args.repeat} (goal < {GOAL_MS:.0f} ms)")
        print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for name, call in reads.items():
            ms = _median_ms(call, args.repeat)
            flag = "ok" if ms < GOAL_MS else "SLOW"
            print(f"  {name:<40} {ms:8.1f} ms  {flag}")
        _plans(app)
    finally:
        app.close()


if __name__ == "__main__":
    main()
