"""What acidic's schema costs the server per run: ``python -m bench.write_cost [N] [ROUNDS]``.

Two questions of issue 18 ("which indexes each transition updates"), each answered by the
server CPU of one backend (``/proc/PID/stat``) running the same statements N times, the
schema changed between alternating rounds:

* **the indexes of** ``acidic_runs``: a run's insert and the four updates a ride's run
  makes (the claim and the end change ``status`` and the lock's columns, which indexes
  cover; the two progress writes between them change only columns no index covers, so
  they are heap-only), with the migrated indexes against only those a worker's path reads
  (the primary key, the key's unique index, the claim and running indexes); the GIN
  indexes' pending lists are cleaned inside the measurement (a backend inserting into a
  full list, or VACUUM, pays for that later otherwise);
* **the foreign key of** ``acidic_history``: a progress write (``UPDATE acidic_runs`` and
  the history row it writes, one statement) and a second history row in one transaction,
  as a step makes them, with and without the key (each row inserted runs PostgreSQL's
  referential check: a lookup of the run and a share lock of its row).

A worker draining rides measures the same effects end to end, but its server CPU per run
moved by ±0.3 ms between identical rounds on this machine, more than either effect; one
backend running statements serially is steady to a few hundredths of a millisecond.

Needs the bench database with acidic's tables and at least one run in it (any earlier
``python -m bench`` run leaves 1,000 or more); it adds runs with keys ``write-cost-*``
and history rows, and puts the indexes and the foreign key back as migrated at the end.
The configurations without them are not supported schemas: they measure what is at stake.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from .arrival import _cpu_seconds
from .common import DATABASES, pg_url

DB = DATABASES["acidic"]
#: The indexes a worker's claim, fencing and takeover read.
_WORKER_READS = {
    "acidic_runs_pkey",
    "acidic_runs_key_uq",
    "acidic_runs_claim_idx",
    "acidic_runs_running_idx",
}
_FK = "acidic_history_run_fk"
_ADD_FK = (
    f"ALTER TABLE acidic_history ADD CONSTRAINT {_FK} FOREIGN KEY (run_id)"
    " REFERENCES acidic_runs (id) ON DELETE CASCADE"
)

Conn = psycopg.Connection[Any]


def _indexes(conn: Conn) -> dict[str, str]:
    rows = conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
        " WHERE indrelid = 'acidic_runs'::regclass"
    ).fetchall()
    return {str(name): str(definition) for name, definition in rows}


def _server_ms_per_run(n: int, body: Callable[[Conn, int], None], after: str = "") -> float:
    """Server CPU per call of ``body`` on a fresh connection (``after``: SQL run once at
    the end, inside the measurement)."""
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid = int(row[0])
        before = _cpu_seconds(pid)
        for i in range(n):
            body(conn, i)
        if after:
            conn.execute(after)
        return 1000 * (_cpu_seconds(pid) - before) / n


def _ride_run(template: int, columns: str) -> Callable[[Conn, int], None]:
    tag = uuid.uuid4().hex[:8]
    copied = columns.replace("status", "'pending'").replace("finished_at", "NULL")

    def body(conn: Conn, i: int) -> None:
        row = conn.execute(
            f"INSERT INTO acidic_runs (idempotency_key, {columns})"
            f" SELECT %s, {copied} FROM acidic_runs WHERE id = %s RETURNING id",
            (f"write-cost-{tag}-{i}", template),
        ).fetchone()
        assert row is not None
        run = row[0]
        conn.execute(
            "UPDATE acidic_runs SET status = 'running', lock_token = 'token', locked_at = now(),"
            " lock_expires_at = now() + interval '30 s', last_run_at = now(),"
            " attempts = attempts + 1, owner = 'worker' WHERE id = %s",
            (run,),
        )
        conn.execute(
            "UPDATE acidic_runs SET recovery_point = 'charge', ctx = '{\"ride_id\": 1}'"
            " WHERE id = %s",
            (run,),
        )
        conn.execute(
            "UPDATE acidic_runs SET recovery_point = 'finish',"
            ' ctx = \'{"ride_id": 1, "charge_id": "ch"}\' WHERE id = %s',
            (run,),
        )
        conn.execute(
            "UPDATE acidic_runs SET status = 'succeeded', finished_at = now(), result = 'null',"
            " lock_token = NULL, locked_at = NULL, lock_expires_at = NULL,"
            " recovery_point = NULL WHERE id = %s",
            (run,),
        )

    return body


def _step_writes(runs: list[int]) -> Callable[[Conn, int], None]:
    def body(conn: Conn, i: int) -> None:
        run = runs[i % len(runs)]
        with conn.transaction():
            conn.execute(
                "WITH progress AS (UPDATE acidic_runs SET ctx = ctx WHERE id = %s RETURNING id)"
                " INSERT INTO acidic_history (run_id, step, event, at, attempt)"
                " SELECT id, 'create_ride', 'succeeded', now(), 1 FROM progress",
                (run,),
            )
            conn.execute(
                "INSERT INTO acidic_history (run_id, step, event, at, attempt)"
                " VALUES (%s, 'charge', 'started', now(), 1)",
                (run,),
            )

    return body


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        row = conn.execute("SELECT min(id) FROM acidic_runs").fetchone()
        if row is None or row[0] is None:
            raise SystemExit(f"no run in {DB}: run `python -m bench --n 1000 --rounds 1` first")
        template = int(row[0])
        runs = [int(r[0]) for r in conn.execute("SELECT id FROM acidic_runs LIMIT 1000")]
        columns = ", ".join(
            str(r[0])
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'acidic_runs' AND table_schema = current_schema()"
                " AND column_name NOT IN ('id', 'idempotency_key') ORDER BY ordinal_position"
            )
        )
        migrated = _indexes(conn)
        gin = [name for name, definition in migrated.items() if "USING gin" in definition]
        clean = "; ".join(f"SELECT gin_clean_pending_list('{name}'::regclass)" for name in gin)
        has_fk = bool(
            conn.execute("SELECT 1 FROM pg_constraint WHERE conname = %s", (_FK,)).fetchone()
        )
        results: dict[str, list[float]] = {}
        try:
            for r in range(rounds):
                for indexes in (True, False) if r % 2 == 0 else (False, True):
                    present = _indexes(conn)
                    for name, definition in migrated.items():
                        if indexes and name not in present:
                            conn.execute(definition)
                        elif not indexes and name in present and name not in _WORKER_READS:
                            conn.execute(f"DROP INDEX {name}")
                    conn.execute("VACUUM acidic_runs")
                    label = "run's insert + 4 updates, " + (
                        "migrated indexes" if indexes else "only the worker's indexes"
                    )
                    ms = _server_ms_per_run(
                        n, _ride_run(template, columns), clean if indexes else ""
                    )
                    results.setdefault(label, []).append(ms)
                    print(f"round {r + 1} {label}: {ms:.3f} ms", flush=True)
                for fk in (True, False) if r % 2 == 0 else (False, True):
                    present_fk = bool(
                        conn.execute(
                            "SELECT 1 FROM pg_constraint WHERE conname = %s", (_FK,)
                        ).fetchone()
                    )
                    if fk and not present_fk:
                        conn.execute(_ADD_FK)
                    elif not fk and present_fk:
                        conn.execute(f"ALTER TABLE acidic_history DROP CONSTRAINT {_FK}")
                    conn.execute("VACUUM acidic_history")
                    label = "step's progress + history row, " + (
                        "with the foreign key" if fk else "without it"
                    )
                    ms = _server_ms_per_run(n, _step_writes(runs))
                    results.setdefault(label, []).append(ms)
                    print(f"round {r + 1} {label}: {ms:.3f} ms", flush=True)
                time.sleep(0.1)
        finally:
            present = _indexes(conn)
            for name, definition in migrated.items():
                if name not in present:
                    conn.execute(definition)
            if (
                has_fk
                and not conn.execute(
                    "SELECT 1 FROM pg_constraint WHERE conname = %s", (_FK,)
                ).fetchone()
            ):
                conn.execute(_ADD_FK)
    print(f"\nserver CPU, ms per call, medians of {rounds} rounds (N = {n}):")
    for label, values in results.items():
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {label}: {statistics.median(values):.3f}  ({shown})")


if __name__ == "__main__":
    main()
