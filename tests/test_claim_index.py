"""Claims stay cheap however long a queue's backlog: a worker's claim walks
``acidic_runs_claim_idx`` (migration 0003) in claim order and stops at its limit,
instead of fetching and sorting every due run of the queue (about 40 ms per claim with
100,000 runs waiting on PostgreSQL and SQLite, 115 ms on MariaDB, before 0003).

The test fills a queue with 20,000 due runs, makes one real claim while recording the
statements it sends, and asks the database for the plan of each statement that picks
due runs, with the very parameters the claim used.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from tests.support.bulk import analyze_runs, fill_runs

BACKLOG = 20_000


def _explain(conn: sa.Connection, statement: str, parameters: Any) -> str:
    name = conn.dialect.name
    if name == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        return "\n".join(str(r[3]) for r in rows)
    if name == "postgresql":
        rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        return "\n".join(str(r[0]) for r in rows)
    result = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
    return "\n".join(json.dumps(dict(r._mapping), default=str) for r in result)


@pytest.mark.slow
def test_claim__walks_the_claim_index_instead_of_sorting_the_backlog(
    backend: str, database_url: str
) -> None:
    with acidic.App(database_url) as app:
        app.migrate()
        with app.engine.begin() as conn:
            fill_runs(conn, BACKLOG)
            conn.execute(
                sa.text(
                    "UPDATE acidic_runs SET status = 'pending', queue = 'default',"
                    " job = 'job', run_at = :due, attempt_limit = 3"
                ),
                {"due": dt.datetime(2024, 1, 1)},
            )
        with app.engine.connect() as conn:
            analyze_runs(conn)
            conn.commit()

        sent: list[tuple[str, Any]] = []

        def record(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
            sent.append((statement, parameters))

        sa.event.listen(app.engine, "before_cursor_execute", record)
        try:
            claimed = app._store.claim_due(
                "default",
                ["job"],
                2,
                clock=lambda: dt.datetime.now(dt.UTC),
                lock_timeout=lambda job: 30.0,
            )
        finally:
            sa.event.remove(app.engine, "before_cursor_execute", record)
        with app.engine.connect() as conn:
            first_two = (
                conn.exec_driver_sql("SELECT id FROM acidic_runs ORDER BY id LIMIT 2")
                .scalars()
                .all()
            )
            conn.rollback()
        assert [r.id for r in claimed] == first_two  # enqueue order

        picks = [(s, p) for s, p in sent if "priority DESC" in s]
        assert picks, sent
        with app.engine.connect() as conn:
            plans = [_explain(conn, s, p) for s, p in picks]
            conn.rollback()

    for plan in plans:
        if backend == "postgresql":
            assert "acidic_runs_claim_idx" in plan, plan
            # The due runs come out of the index in order: nothing sorts the backlog
            # (a Sort may remain above the few candidates, on their rank).
            assert "Bitmap" not in plan, plan
        elif backend == "sqlite":
            assert "USING INDEX acidic_runs_claim_idx" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
        else:
            rows = [json.loads(line) for line in plan.splitlines()]
            assert rows[0]["key"] == "acidic_runs_claim_idx", plan
            assert "filesort" not in (rows[0]["Extra"] or ""), plan
