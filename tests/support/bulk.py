"""Many runs at once, for the tests of the query plans over a large runs table."""

from __future__ import annotations

import sqlalchemy as sa


def fill_runs(conn: sa.Connection, rows: int) -> None:
    """Insert ``rows`` runs (keys ``key-0`` …) in one INSERT … SELECT, on any backend."""
    digits = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
    number = "a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d"
    key = "CONCAT('key-', n)" if conn.dialect.name in ("mysql", "mariadb") else "'key-' || n"
    conn.exec_driver_sql(
        "INSERT INTO acidic_runs (idempotency_key, job, args, steps, status, ctx, attempts,"
        " created_at)"
        f" SELECT {key}, 'job', '{{}}', '[]', 'succeeded', '{{}}', 1, '2024-01-01 00:00:00'"
        f" FROM (SELECT {number} AS n FROM ({digits}) a CROSS JOIN ({digits}) b"
        f" CROSS JOIN ({digits}) c CROSS JOIN ({digits}) e CROSS JOIN ({digits}) f) numbers"
        f" WHERE n < {rows}"
    )


def analyze_runs(conn: sa.Connection) -> None:
    """Refresh the planner's statistics of acidic_runs, after a bulk insert."""
    name = conn.dialect.name
    if name == "postgresql":
        conn.exec_driver_sql("ANALYZE acidic_runs")
    elif name == "sqlite":
        conn.exec_driver_sql("ANALYZE")
    else:
        conn.exec_driver_sql("ANALYZE TABLE acidic_runs").all()
