"""``python -m bench.dashboard_writes``: what the dashboard's indexes (migration 0011) cost
a run's writes on PostgreSQL.

Two databases of the same schema: ``bench_dash_w11`` as migrated, and ``bench_dash_w10``
with 0011's indexes taken back to what 0010 had (the plain finished index, the status
index without INCLUDE, no "active" index, no trigram indexes). Both start with
``--base`` finished runs (default 100,000: the indexes are not empty), then each runs
``--n`` three-step jobs with ``app.run`` (claim, three steps, finish: the updates of a
run in flight), in ``--rounds`` interleaved rounds so a shared machine's drift hits
both alike. Reported per run: wall time (noisy on a shared machine) and the growth of
the table's indexes in bytes (deterministic: what the extra index entries weigh).
The statements per run do not change (indexes add no statement: ``bench.sqlcount``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import psycopg
import sqlalchemy as sa

import acidic

from .common import PG_SERVER, ensure_database, pg_url

DATABASES = {"0010": "bench_dash_w10", "0011": "bench_dash_w11"}

#: 0011 undone: the indexes as 0010 left them.
TO_0010 = """
DROP INDEX IF EXISTS acidic_runs_active_idx;
DROP INDEX IF EXISTS acidic_runs_key_trgm_idx;
DROP INDEX IF EXISTS acidic_runs_args_trgm_idx;
DROP INDEX IF EXISTS acidic_runs_error_trgm_idx;
DROP INDEX acidic_runs_finished_idx;
CREATE INDEX acidic_runs_finished_idx ON acidic_runs (finished_at);
DROP INDEX acidic_runs_status_idx;
CREATE INDEX acidic_runs_status_idx ON acidic_runs (status, id);
"""
BASE = """
INSERT INTO acidic_runs (idempotency_key, job, args, steps, status, ctx, attempts,
    created_at, last_run_at, finished_at, priority, cancel_requested)
SELECT 'old-' || g, 'bench.Old', '{"n":' || g || '}', '["a","b","c"]', 'succeeded', '{}', 1,
    now() - interval '1 day', now() - interval '1 day', now() - interval '1 day', 0, false
FROM generate_series(1, %s::integer) AS g
"""
INDEX_BYTES = """
SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index
WHERE indrelid = 'acidic_runs'::regclass
"""


class Ride(acidic.Job):
    """Three steps that write nothing of their own: the run's own updates only."""

    n: int

    @acidic.step
    def a(self, tx: sa.Connection) -> None:
        pass

    @acidic.step
    def b(self, tx: sa.Connection) -> None:
        pass

    @acidic.step
    def c(self, tx: sa.Connection) -> None:
        pass


def prepare(version: str, base: int) -> None:
    """Make ``version``'s database afresh with ``base`` finished runs."""
    name = DATABASES[version]
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    ensure_database(name)
    with acidic.App(pg_url(name, "postgresql+psycopg")) as app:
        app.migrate()
    with psycopg.connect(pg_url(name), autocommit=True) as conn:
        if version == "0010":
            for statement in TO_0010.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(BASE, (base,))
        conn.execute("VACUUM ANALYZE acidic_runs")


def measure(version: str, n: int, offset: int) -> dict[str, Any]:
    """Run ``n`` rides in ``version``'s database: seconds and index bytes per run."""
    url = pg_url(DATABASES[version], "postgresql+psycopg")
    app = acidic.App(url)
    app.job(name="bench.Ride")(Ride)
    try:
        with app.engine.connect() as conn:
            before = dict(conn.exec_driver_sql(INDEX_BYTES).all())
        started = time.perf_counter()
        for i in range(offset, offset + n):
            app.run(Ride(n=i), key=f"ride-{i}")
        took = time.perf_counter() - started
        with app.engine.connect() as conn:
            after = dict(conn.exec_driver_sql(INDEX_BYTES).all())
    finally:
        app.close()
    grown = {name: (after[name] - before.get(name, 0)) / n for name in after}
    return {
        "ms_per_run": took / n * 1000,
        "index_bytes_per_run": sum(grown.values()),
        "by_index": grown,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the two databases")
    args = parser.parse_args()
    for version in DATABASES:
        prepare(version, args.base)
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in DATABASES}
    for r in range(args.rounds):
        order = list(DATABASES) if r % 2 == 0 else list(reversed(DATABASES))
        for version in order:
            results[version].append(measure(version, args.n, r * args.n))
    print(f"\n{args.n} runs x {args.rounds} rounds per schema, {args.base:,} runs stored before")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'schema':10} {'ms/run (median)':>16} {'index bytes/run':>16}")
    for version, rows in results.items():
        ms = statistics.median(r["ms_per_run"] for r in rows)
        grown = statistics.median(r["index_bytes_per_run"] for r in rows)
        print(f"{version:10} {ms:16.2f} {grown:16.0f}")
    print("\nindex growth per run (bytes, median), 0011:")
    for name in sorted(results["0011"][0]["by_index"]):
        grown = statistics.median(r["by_index"][name] for r in results["0011"])
        print(f"  {name:34} {grown:8.0f}")
    if not args.keep:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            for name in DATABASES.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
