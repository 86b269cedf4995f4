"""A search by substring stays an index search on PostgreSQL while the trigram indexes of
keys and arguments leave out the runs in flight (migration 0012): a run's key and
arguments enter them once, when it stops being in flight, instead of at its insert, its
claim and its end (docs/benchmarks.md). The runs in flight are found through
``acidic_runs_in_flight_idx``.

The test fills the table with 100,000 runs, most of them ended, searches through the
admin API (what the dashboard and the CLI call) while recording the statements sent, and
asks PostgreSQL for the plan of each, with the parameters the search used.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from tests.support.bulk import analyze_runs, fill_runs

RUNS = 100_000
#: Runs still in flight among them (keys key-0 ... key-199).
IN_FLIGHT = 200


def _plans(app: acidic.App, search: Any) -> list[str]:
    """Run ``search()``, then EXPLAIN every statement it sent that reads acidic_runs."""
    sent: list[tuple[str, Any]] = []

    def record(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    sa.event.listen(app.engine, "before_cursor_execute", record)
    try:
        search()
    finally:
        sa.event.remove(app.engine, "before_cursor_execute", record)
    reads = [(s, p) for s, p in sent if "LIKE" in s]
    assert reads, sent
    with app.engine.connect() as conn:
        plans = [
            "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {s}", p).all()) for s, p in reads
        ]
        conn.rollback()
    return plans


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"])
def test_search__uses_the_trigram_indexes_and_the_in_flight_index(
    database_url: str,
) -> None:
    from acidic._admin import Admin, RunFilter

    with acidic.App(database_url) as app:
        app.migrate()
        with app.engine.begin() as conn:
            trigram = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"
            ).scalar_one()
            if not trigram:
                pytest.fail("pg_trgm is not installed: 0011 and 0012 made no search index")
            fill_runs(conn, RUNS)
            conn.exec_driver_sql(
                "UPDATE acidic_runs SET args = '{\"user\": ' || substr(idempotency_key, 5) || '}'"
            )
            conn.exec_driver_sql(
                "UPDATE acidic_runs SET status = CASE mod(substr(idempotency_key, 5)::int, 3)"
                " WHEN 0 THEN 'pending' WHEN 1 THEN 'running' ELSE 'scheduled' END"
                f" WHERE substr(idempotency_key, 5)::int < {IN_FLIGHT}"
            )
            conn.exec_driver_sql(
                "UPDATE acidic_runs SET status = 'failed' WHERE idempotency_key = 'key-54321'"
            )
        with app.engine.connect() as conn:
            analyze_runs(conn)
            conn.commit()
        admin = Admin(app)

        # Found in flight and not, by key and by argument.
        def keys(flt: RunFilter) -> set[str]:
            return {r.key for r in admin.list_runs(flt, limit=100).runs}

        assert keys(RunFilter(text="key-1234")) == {"key-1234"} | {
            f"key-1234{d}" for d in range(10)
        }
        assert keys(RunFilter(text='"user": 12345}')) == {"key-12345"}
        assert keys(RunFilter(text='"user": 7}')) == {"key-7"}  # running
        assert keys(RunFilter(text='"user": 54321}')) == {"key-54321"}  # failed
        assert keys(RunFilter(key_contains="ey-1999")) == {"key-1999"} | {
            f"key-1999{d}" for d in range(10)
        }
        assert keys(RunFilter(key_contains="ey-19", statuses=("running",))) == {
            "key-19",
            "key-190",
            "key-193",
            "key-196",
            "key-199",
        }  # in flight, running: the numbers that leave 1 divided by 3

        plans = _plans(app, lambda: admin.list_runs(RunFilter(text="key-1234"), limit=50))
        plans += _plans(app, lambda: admin.count_runs(RunFilter(text="key-1234"), at_most=50))
        plans += _plans(app, lambda: admin.list_runs(RunFilter(key_contains="key-1234")))
    for plan in plans:
        assert "Seq Scan on acidic_runs" not in plan, plan
        assert "acidic_runs_key_trgm_idx" in plan, plan
        assert "acidic_runs_in_flight_idx" in plan, plan
    assert all("acidic_runs_args_trgm_idx" in plan for plan in plans[:2]), plans[:2]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_search_indexes__leave_out_the_runs_in_flight(database_url: str) -> None:
    with acidic.App(database_url) as app:
        app.migrate()
        with app.engine.connect() as conn:
            defs: dict[str, str] = dict(
                conn.exec_driver_sql(
                    "SELECT indexname, indexdef FROM pg_indexes"
                    " WHERE tablename = 'acidic_runs'"
                    " AND (strpos(indexname, 'trgm') > 0"
                    " OR indexname = 'acidic_runs_in_flight_idx')"
                ).all()
            )
    assert set(defs) == {
        "acidic_runs_key_trgm_idx",
        "acidic_runs_args_trgm_idx",
        "acidic_runs_error_trgm_idx",
        "acidic_runs_in_flight_idx",
    }, defs
    in_flight = (
        "(ARRAY['pending'::character varying, 'running'::character varying,"
        " 'scheduled'::character varying])::text[]"
    )
    assert defs["acidic_runs_key_trgm_idx"].endswith(f"WHERE ((status)::text <> ALL ({in_flight}))")
    assert defs["acidic_runs_args_trgm_idx"].endswith(
        f"WHERE ((status)::text <> ALL ({in_flight}))"
    )
    assert defs["acidic_runs_error_trgm_idx"].endswith("WHERE (error IS NOT NULL)")
    assert defs["acidic_runs_in_flight_idx"].endswith(f"WHERE ((status)::text = ANY ({in_flight}))")
