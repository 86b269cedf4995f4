"""``python -m bench.dashboard``: the dashboard's pages against a big table.

Seeds a PostgreSQL database (``acidic_bench_dashboard`` on ``$BENCH_PG``, or
``--database``; made on demand, migrated, and kept for the next run; ``--reseed`` starts
over) with ``--runs`` runs (default 1,000,000) spread over the last 7 days, in the
proportions of a busy installation: most
succeeded, 2 % failed, 1 % cancelled, a few thousand waiting, halted or running, ten
jobs, three queues and inline runs, two history events per run (three with an error for
the failed ones). The rows are written by ``INSERT ... SELECT generate_series`` on the
server: seeding 1,000,000 runs takes about a minute.

Then it asks each dashboard page ``--repeat`` times in process (Starlette's test client,
so the figure is server time: routing, queries, templates; no network) and prints the
median and the worst, flagging a median over 200 ms. ``--explain`` prints PostgreSQL's
plan of the slowest queries of each page (``auto_explain``-like: every statement over
20 ms, captured with SQLAlchemy's events).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from typing import Any

import psycopg
import sqlalchemy as sa

import acidic
from acidic.dashboard import create_app

from .common import PG_SERVER

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's test client warns about its httpx use
    from starlette.testclient import TestClient

#: The bench database (``--database`` overrides it: one per person on a shared server).
DATABASE = "acidic_bench_dashboard"
#: Seconds beyond which a page fails the goal.
GOAL = 0.200
JOBS = 10


def _url() -> str:
    return f"{PG_SERVER.rstrip('/')}/{DATABASE}"


def _ensure_database() -> None:
    with psycopg.connect(f"{PG_SERVER.rstrip('/')}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


SEED = """
INSERT INTO acidic_runs (idempotency_key, job, args, steps, status, recovery_point, ctx,
    result, error, attempts, created_at, last_run_at, finished_at, queue, priority, run_at,
    lock_token, locked_at, lock_expires_at, attempt_limit, cancel_requested)
SELECT 'run-' || g,
    'job' || (g % {jobs}),
    '{{"user_id":' || g || ',"plan":"p' || (g % 7) || '"}}',
    '["book","charge","receipt"]',
    s.status,
    CASE WHEN s.status IN ('succeeded', 'cancelled') THEN NULL ELSE 'charge' END,
    '{{}}',
    CASE WHEN s.status = 'succeeded' THEN '{{"ok":true}}' END,
    CASE WHEN s.status = 'failed' THEN '{{"type": "builtins.ValueError", "message": "partner '
        || 'refused request ' || g || '", "traceback": "Traceback (most recent call last):\\n'
        || '  File \\"jobs.py\\", line 12, in charge\\nValueError: partner refused", '
        || '"step": "charge"}}' END,
    CASE WHEN s.status = 'pending' THEN 0 ELSE 1 END,
    t.created,
    CASE WHEN s.status = 'pending' THEN NULL ELSE t.created + interval '20 ms' END,
    CASE WHEN s.status IN ('succeeded', 'cancelled')
        THEN t.created + (20 + g % 400) * interval '1 ms' END,
    CASE WHEN g % 5 = 0 THEN NULL ELSE 'q' || (g % 3) END,
    0,
    CASE WHEN s.status = 'pending' THEN t.created + (g % 3) * interval '1 hour'
         WHEN s.status = 'scheduled' THEN now() + (g % 48) * interval '1 hour' END,
    CASE WHEN s.status = 'running' THEN md5(g::text) END,
    CASE WHEN s.status = 'running' THEN now() END,
    CASE WHEN s.status = 'running' THEN now() + interval '30 s' END,
    CASE WHEN s.status = 'failed' THEN 1 END,
    false
FROM generate_series(1, {runs}) AS g,
LATERAL (SELECT now() - (({runs} - g)::float / {runs}) * interval '7 days' AS created) AS t,
LATERAL (SELECT CASE
    WHEN g % 1000 < 20 THEN 'failed'
    WHEN g % 1000 < 30 THEN 'cancelled'
    WHEN g % 1000 = 30 AND g > {runs} - 200000 THEN 'pending'
    WHEN g % 1000 = 31 THEN 'halted'
    WHEN g % 1000 = 32 AND g > {runs} - 100000 THEN 'scheduled'
    WHEN g % 1000 = 33 AND g > {runs} - 10000 THEN 'running'
    ELSE 'succeeded' END AS status) AS s
"""
SEED_HISTORY = """
INSERT INTO acidic_history (run_id, step, event, at, attempt, error)
SELECT r.id, e.step, e.event, r.created_at + e.after, 1,
    CASE WHEN e.event = 'errored' THEN r.error END
FROM acidic_runs AS r,
LATERAL (VALUES ('book', 'started', interval '20 ms'),
                ('book', 'succeeded', interval '25 ms'),
                ('charge', 'errored', interval '30 ms')) AS e(step, event, after)
WHERE r.status <> 'pending' AND (e.event <> 'errored' OR r.status = 'failed')
"""


def seed(runs: int, reseed: bool) -> None:
    _ensure_database()
    with acidic.App(_url()) as app:
        app.migrate()
        with app.engine.begin() as conn:
            have = conn.execute(sa.text("SELECT count(*) FROM acidic_runs")).scalar_one()
            if have == runs and not reseed:
                print(f"{have} runs already stored", file=sys.stderr)
                return
            print(f"seeding {runs} runs ...", file=sys.stderr)
            started = time.perf_counter()
            conn.execute(sa.text("TRUNCATE acidic_runs, acidic_history, acidic_signals CASCADE"))
            conn.exec_driver_sql(SEED.format(runs=runs, jobs=JOBS).replace("%", "%%"))
            conn.exec_driver_sql(SEED_HISTORY)
        with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE acidic_runs")
            conn.exec_driver_sql("VACUUM ANALYZE acidic_history")
        print(f"seeded in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def pages(runs: int) -> list[tuple[str, str]]:
    """(label, path) of every page measured."""
    mid = runs // 2
    return [
        ("overview 1h", "/"),
        ("overview 24h", "/?window=24h"),
        ("overview 7d", "/?window=7d"),
        ("runs", "/runs"),
        ("runs, older page", f"/runs?cursor={mid}"),
        ("runs status=failed", "/runs?status=failed"),
        ("runs status=halted job=job1", "/runs?status=halted&job=job1"),
        ("runs queue=q1 since 1h", "/runs?queue=q1&since=1h"),
        ("runs search key", f"/runs?q=run-{mid}"),
        ("runs search error text", "/runs?q=refused+request+4321"),
        ("runs live refresh", "/runs?status=failed"),
        ("run page", f"/run?key=run-{mid + 1}"),
        ("run page (failed)", "/run?key=run-5"),
        ("jobs 24h", "/jobs"),
        ("jobs 7d", "/jobs?window=7d"),
        ("scheduled", "/scheduled"),
        ("bulk confirm (retry failed)", "/runs/bulk?action=retry&status=failed"),
        ("bulk confirm (cancel job3 failed)", "/runs/bulk?action=cancel&status=failed&job=job3"),
        ("workers", "/workers"),
        ("queues", "/queues"),
    ]


def _served_app() -> Any:
    """An App registering the seeded jobs (job0 ... job9), as ``acidic dashboard --app``
    serves one: the runs page's job and queue lists come from it."""

    class Seeded(acidic.Job):
        user_id: int
        plan: str

        @acidic.step
        def book(self, tx: sa.Connection) -> None:
            pass

    app = acidic.App(_url(), queues=["q0", "q1", "q2"])
    for i in range(JOBS):
        app.job(name=f"job{i}")(type(f"Seeded{i}", (Seeded,), {"__module__": __name__}))
    return app


def measure(runs: int, repeat: int, explain: bool) -> list[dict[str, Any]]:
    app = _served_app()
    slow: list[tuple[float, str, Any]] = []
    current = {"page": ""}

    @sa.event.listens_for(app.engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        conn.info["bench_start"] = time.perf_counter()

    @sa.event.listens_for(app.engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        took = time.perf_counter() - conn.info.pop("bench_start", time.perf_counter())
        if took > 0.020:
            slow.append((took, current["page"], (statement, params)))

    token = "bench-dashboard-token"  # noqa: S105 - a throw-away token of this process
    client = TestClient(
        create_app(app, refresh=0, token=token),
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {token}"},
    )
    results = []
    for label, path in pages(runs):
        headers = {"X-Acidic-Live": "1"} if "live" in label else {}
        current["page"] = label
        first = client.get(path, headers=headers)
        if first.status_code == 404:
            continue  # a page this version does not have
        assert first.status_code == 200, (path, first.status_code, first.text[:300])
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200
        results.append(
            {
                "page": label,
                "path": path,
                "median_ms": statistics.median(times) * 1000,
                "max_ms": max(times) * 1000,
            }
        )
    if explain:
        seen = set()
        with app.engine.connect() as conn:
            for took, label, (statement, params) in sorted(slow, key=lambda s: -s[0]):
                if (label, statement) in seen or not statement.lstrip().upper().startswith(
                    "SELECT"
                ):
                    continue
                seen.add((label, statement))
                short = statement if len(statement) < 400 else statement[:400] + " ..."
                print(f"\n--- {label}: {took * 1000:.0f} ms\n{short}")
                plan = conn.exec_driver_sql("EXPLAIN ANALYZE " + statement, params).all()
                print("\n".join(r[0] for r in plan))
    app.close()
    return results


def _use_database(name: str) -> None:
    global DATABASE  # noqa: PLW0603 - the module's helpers read it
    DATABASE = name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--database", default=DATABASE)
    args = parser.parse_args()
    _use_database(args.database)
    seed(args.runs, args.reseed)
    results = measure(args.runs, args.repeat, args.explain)
    report(args, results)


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ndashboard pages, {args.runs} runs stored, median of {args.repeat} (server time)")
    print(f"load average at the end: {load}")
    print(f"{'page':40} {'median':>10} {'worst':>10}")
    for r in results:
        flag = "  OVER 200 ms" if r["median_ms"] > GOAL * 1000 else ""
        print(f"{r['page']:40} {r['median_ms']:8.1f}ms {r['max_ms']:8.1f}ms{flag}")


if __name__ == "__main__":
    main()
