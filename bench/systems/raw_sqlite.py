"""The floor on SQLite: the stdlib sqlite3 module, the same three transactions per job
(``BEGIN IMMEDIATE``, WAL, default synchronous setting: what acidic's SQLite engine uses)."""

from __future__ import annotations

import json
import os
import sqlite3

from ..common import (
    INSERT_AUDIT,
    INSERT_RIDE,
    RIDE_DDL_SQLITE,
    SQLITE_DIR,
    UPDATE_RIDE,
    Measurement,
    Timer,
    fake_charge,
    ride_args,
)


def _q(sql: str) -> str:
    return sql.replace("%s", "?")


def path() -> str:
    SQLITE_DIR.mkdir(parents=True, exist_ok=True)
    return str(SQLITE_DIR / "raw.sqlite3")


def connect(file: str) -> sqlite3.Connection:
    conn = sqlite3.connect(file, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def job_3tx(conn: sqlite3.Connection, i: int) -> None:
    args = ride_args(i)
    key = f"ride-{i}"
    conn.execute("BEGIN IMMEDIATE")
    ride_id = conn.execute(
        _q(INSERT_RIDE), (args["user_id"], args["origin"], args["target"])
    ).fetchone()[0]
    run_id = conn.execute(
        "INSERT INTO bench_progress (key, args, status, step, ctx)"
        " VALUES (?, ?, 'running', 'charge', ?) RETURNING id",
        (key, json.dumps(args), json.dumps({"ride_id": ride_id})),
    ).fetchone()[0]
    conn.execute("COMMIT")
    charge = fake_charge(ride_id, key)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "UPDATE bench_progress SET step = 'finish', ctx = ? WHERE id = ?",
        (json.dumps({"ride_id": ride_id, "charge_id": charge}), run_id),
    )
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(_q(UPDATE_RIDE), (charge, ride_id))
    conn.execute(_q(INSERT_AUDIT), (ride_id,))
    conn.execute(
        "UPDATE bench_progress SET status = 'succeeded', step = NULL WHERE id = ?", (run_id,)
    )
    conn.execute("COMMIT")


def check_sqlite(file: str, n: int) -> None:
    conn = sqlite3.connect(file)
    charged = conn.execute("SELECT count(*) FROM rides WHERE charge_id IS NOT NULL").fetchone()[0]
    audits = conn.execute("SELECT count(*) FROM ride_audit").fetchone()[0]
    conn.close()
    if charged != n or audits != n:
        raise RuntimeError(f"expected {n} charged rides and audit rows, found {charged}/{audits}")


def run(n: int) -> Measurement:
    file = path()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(file + suffix):
            os.remove(file + suffix)
    conn = connect(file)
    conn.executescript(RIDE_DDL_SQLITE)
    with Timer() as t:
        for i in range(n):
            job_3tx(conn, i)
    conn.close()
    check_sqlite(file, n)
    return Measurement("raw-sqlite-3tx", "serial", n, 1, t.seconds)
