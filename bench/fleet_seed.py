"""Seed a PostgreSQL database with a fleet's worth of runs, for timing the fleet's
reads (``acidic queues``, ``acidic workers``, the dashboard's Workers and Queues pages).

``python -m bench.fleet_seed [--runs 1000000] [--database acidic_bench_fleet]`` creates
the database if needed, migrates it, empties acidic's tables and fills them with one
``INSERT … SELECT generate_series``: by default 1,000,000 runs over four queues and five
jobs, of which about 93 % succeeded, 3 % failed, 2 % pending (half due, half due in an
hour), 1 % scheduled, 0.5 % halted, 0.3 % cancelled and 0.2 % running (held by eight
live workers, a few by a dead one: orphaned), plus eight live workers and two gone ones
in the registry, one queue paused. Prints the URL; other scripts import :func:`seed`.
"""

from __future__ import annotations

import argparse
import time

import psycopg

import acidic

from .common import ensure_database, pg_url, wait_for_pg

DATABASE = "acidic_bench_fleet"

#: (low, high, status) over g % 10000: the share of each status.
_SEED_RUNS = """
INSERT INTO acidic_runs (idempotency_key, job, args, steps, status, recovery_point, ctx,
    result, error, attempts, lock_token, locked_at, created_at, last_run_at, finished_at,
    queue, priority, run_at, lock_expires_at, attempt_limit, cancel_requested, owner)
SELECT 'seed-' || g,
    'bench.Job' || (g %% 5),
    '{"n":' || g || '}',
    '["a","b","c"]',
    s.status,
    CASE WHEN s.status = 'succeeded' THEN NULL ELSE 'b' END,
    '{}',
    CASE WHEN s.status = 'succeeded' THEN '1' END,
    CASE WHEN s.status IN ('failed', 'scheduled')
        THEN '{"type":"builtins.ValueError","message":"boom","traceback":"","step":"b"}' END,
    1,
    CASE WHEN s.status = 'running' THEN md5(g::text) END,
    CASE WHEN s.status = 'running' THEN now() END,
    now() - (g %% 86400) * interval '1 second',
    now() - (g %% 86400) * interval '1 second',
    CASE WHEN s.status IN ('succeeded', 'cancelled')
        THEN now() - (g %% 86400) * interval '1 second' END,
    (ARRAY['default', 'emails', 'reports', 'bulk'])[1 + g %% 4],
    0,
    CASE WHEN s.status = 'pending' AND g %% 2 = 0 THEN now() - (g %% 600) * interval '1 second'
         WHEN s.status = 'pending' THEN now() + interval '1 hour'
         WHEN s.status = 'scheduled' THEN now() + (g %% 600) * interval '1 second' END,
    CASE WHEN s.status = 'running' THEN now() + interval '90 seconds' END,
    3,
    false,
    CASE WHEN s.status = 'running' THEN
        CASE WHEN g %% 50 = 0 THEN 'dead:1:000000' ELSE 'bench:' || (g %% 8) || ':000000' END
    END
FROM generate_series(1, %s::integer) AS g
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN g %% 10000 < 9300 THEN 'succeeded'
        WHEN g %% 10000 < 9600 THEN 'failed'
        WHEN g %% 10000 < 9800 THEN 'pending'
        WHEN g %% 10000 < 9900 THEN 'scheduled'
        WHEN g %% 10000 < 9950 THEN 'halted'
        WHEN g %% 10000 < 9980 THEN 'cancelled'
        ELSE 'running'
    END AS status
) AS s
"""

_SEED_WORKERS = """
INSERT INTO acidic_workers (id, host, pid, queues, concurrency, version, jobs, started_at,
    heartbeat_at, gone_at)
SELECT id, 'bench', pid, '["default","emails","reports","bulk"]', 8, '0', %s, now(), now(),
    CASE WHEN gone THEN now() - interval '1 minute' ELSE now() + interval '1 hour' END
FROM (
    SELECT 'bench:' || i || ':000000' AS id, 1000 + i AS pid, false AS gone
    FROM generate_series(0, 7) AS i
    UNION ALL SELECT 'dead:1:000000', 1, true
    UNION ALL SELECT 'dead:2:000000', 2, true
) AS w
"""


def seed(runs: int = 1_000_000, database: str = DATABASE) -> str:
    """Create (if needed), migrate and fill ``database``; its SQLAlchemy URL."""
    wait_for_pg()
    ensure_database(database)
    url = pg_url(database, "postgresql+psycopg")
    app = acidic.App(url)
    try:
        app.migrate()
    finally:
        app.close()
    jobs = '["bench.Job0","bench.Job1","bench.Job2","bench.Job3"]'  # Job4: no live worker
    with psycopg.connect(pg_url(database), autocommit=True) as conn:
        conn.execute(
            "TRUNCATE acidic_runs, acidic_history, acidic_signals, acidic_workers, "
            "acidic_paused_queues RESTART IDENTITY CASCADE"
        )
        conn.execute(_SEED_RUNS, (runs,))
        conn.execute(_SEED_WORKERS, (jobs,))
        conn.execute("INSERT INTO acidic_paused_queues (name, paused_at) VALUES ('bulk', now())")
        conn.execute("VACUUM ANALYZE acidic_runs, acidic_workers")
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--database", default=DATABASE)
    args = parser.parse_args()
    started = time.monotonic()
    url = seed(args.runs, args.database)
    print(f"seeded {args.runs:,} runs in {time.monotonic() - started:.1f} s: {url}")


if __name__ == "__main__":
    main()
