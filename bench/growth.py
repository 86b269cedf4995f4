"""Growth: acidic's cost per job must not grow with N, nor with the runs already stored.

Measures acidic inline and its worker (4 executors), with the raw 3-tx floor as the
drift reference, at each N; then preloads ``base`` finished runs (and their six
history events each) with ``INSERT … SELECT generate_series`` and measures N = 2,000
again on top of them, then once more after emptying the table.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from .common import DATABASES, pg_url, retry_on_restart, wait_for_pg

DB = DATABASES["acidic"]
SYSTEMS = [("raw", "3tx", 1), ("acidic", "inline", 1), ("acidic", "worker", 4)]

PRELOAD_RUNS = """
INSERT INTO acidic_runs (idempotency_key, job, args, steps, status, recovery_point, ctx,
    result, error, attempts, lock_token, locked_at, created_at, last_run_at, finished_at,
    queue, priority, run_at, lock_expires_at, attempt_limit, cancel_requested)
SELECT 'old-' || g, 'bench.Ride',
    '{"user_id":' || g || ',"origin":"origin-' || g || '","target":"target-' || g || '"}',
    '["create_ride","charge","finish"]', 'succeeded', NULL,
    '{"ride_id":' || g || ',"charge_id":"ch_0123456789abcdef01234567"}', NULL, NULL, 1,
    NULL, NULL, now() - interval '1 day', now() - interval '1 day', now() - interval '1 day',
    CASE WHEN g %% 2 = 0 THEN 'default' END, 0, NULL, NULL, 3, false
FROM generate_series(1, %s::integer) AS g
"""
PRELOAD_HISTORY = """
INSERT INTO acidic_history (run_id, step, event, at, attempt, error)
SELECT r.id, s.step, e.event, r.created_at, 1, NULL
FROM acidic_runs AS r
CROSS JOIN (VALUES (1, 'create_ride'), (2, 'charge'), (3, 'finish')) AS s (o, step)
CROSS JOIN (VALUES (1, 'started'), (2, 'succeeded')) AS e (o, event)
WHERE r.idempotency_key LIKE 'old-%%'
ORDER BY r.id, s.o, e.o
"""


def preload(base: int) -> float:
    """Fill acidic's tables with ``base`` finished runs; seconds it took."""
    wait_for_pg()
    started = time.monotonic()
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        conn.execute("TRUNCATE acidic_runs, acidic_history, acidic_signals RESTART IDENTITY")
        conn.execute(PRELOAD_RUNS, (base,))
        conn.execute(PRELOAD_HISTORY)
        conn.execute("VACUUM ANALYZE acidic_runs, acidic_history")
    return time.monotonic() - started


def _measure(
    n: int, base: int, label: str, systems: list[tuple[str, str, int]]
) -> list[dict[str, Any]]:
    from .__main__ import run_child  # noqa: PLC0415

    rows = []
    for system, mode, concurrency in systems:
        env = {"BENCH_KEEP_RUNS": "1"} if base else None
        try:
            r = run_child(system, mode, n, concurrency, env)
        except Exception as exc:
            rows.append({"system": system, "mode": mode, "n": n, "error": str(exc)})
            continue
        r.update(preloaded_runs=base, phase=label)
        rows.append(r)
        print(".", end="", flush=True)
    return rows


def growth_section(ns: list[int], base: int) -> dict[str, Any]:
    print("\ngrowth: ", end="", flush=True)
    rows: list[dict[str, Any]] = []
    for n in ns:
        rows += _measure(n, 0, f"N={n}", SYSTEMS)
    # The acidic child migrates the database first (the preload needs the tables).
    from .systems.acidic_pg import reset_pg  # noqa: PLC0415

    retry_on_restart(reset_pg)
    seconds = retry_on_restart(preload, base)
    rows += _measure(2000, base, f"N=2000 on {base:,} runs", SYSTEMS[1:])
    wait_for_pg()
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        conn.execute("TRUNCATE acidic_runs, acidic_history, acidic_signals RESTART IDENTITY")
    rows += _measure(2000, 0, "N=2000 again, empty", SYSTEMS)
    print(flush=True)
    return {"rows": rows, "preload_seconds": seconds, "base": base}


def print_growth(section: dict[str, Any]) -> None:
    took = section["preload_seconds"]
    print(f"\nGrowth (preloading {section['base']:,} finished runs took {took:.0f} s)")
    print(f"{'':34}{'raw 3tx ms/job':>16}{'acidic inline':>15}{'acidic worker(4)':>18}")
    phases: dict[str, dict[str, Any]] = {}
    for r in section["rows"]:
        phases.setdefault(r.get("phase", f"N={r['n']}"), {})[f"{r['system']}/{r['mode']}"] = r
    for phase, got in phases.items():
        cells = []
        for key in ("raw-3tx/serial", "acidic/inline", "acidic/worker"):
            r = got.get(key)
            cells.append("-" if r is None or "error" in r else f"{r['ms_per_job']:.2f}")
        print(f"{phase:34}{cells[0]:>16}{cells[1]:>15}{cells[2]:>18}")
