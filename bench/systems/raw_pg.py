"""The floor on PostgreSQL: raw psycopg 3, the ride's writes and nothing else.

* ``3tx``: what a durable 3-step job must do at the least: three transactions per job,
  each also writing the job's progress row (insert with step 1, then one update each);
* ``1tx``: the absolute floor: the three writes in one transaction, no progress;
* ``queue``: ``3tx`` preceded by a claim transaction (``UPDATE … SKIP LOCKED``) on
  pre-inserted job rows: the floor of a database-backed worker.

Executors are threads, each with its own connection, taking job numbers from a shared
counter (no queue) or claiming rows (``queue``).
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from ..common import (
    DATABASES,
    INSERT_AUDIT,
    INSERT_RIDE,
    UPDATE_RIDE,
    Measurement,
    Timer,
    check_rides,
    fake_charge,
    pg_url,
    reset_ride_tables,
    ride_args,
    sa_params,
    sa_text,
    time_executors,
)

DB = DATABASES["raw"]

#: The progress statements of the floors (psycopg placeholders; :func:`sa_text` for the
#: SQLAlchemy floors).
CLAIM_ONE = (
    "UPDATE bench_progress SET status = 'running' WHERE id = ("
    " SELECT id FROM bench_progress WHERE status = 'pending' ORDER BY id"
    " FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, key, args"
)
INSERT_PROGRESS = (
    "INSERT INTO bench_progress (key, args, status, step, ctx)"
    " VALUES (%s, %s, 'running', 'charge', %s) RETURNING id"
)
STEP_CHARGE = "UPDATE bench_progress SET step = 'charge', ctx = %s WHERE id = %s"
STEP_FINISH = "UPDATE bench_progress SET step = 'finish', ctx = %s WHERE id = %s"
RUN_DONE = "UPDATE bench_progress SET status = 'succeeded', step = NULL WHERE id = %s"


def job_3tx(conn: psycopg.Connection, i: int) -> None:
    args = ride_args(i)
    key = f"ride-{i}"
    with conn.transaction():
        ride_id = conn.execute(INSERT_RIDE, (args["user_id"], args["origin"], args["target"]))
        ride = ride_id.fetchone()
        assert ride is not None
        progress = conn.execute(
            INSERT_PROGRESS, (key, json.dumps(args), json.dumps({"ride_id": ride[0]}))
        ).fetchone()
        assert progress is not None
    _steps_2_3(conn, progress[0], ride[0], key)


def _steps_2_3(conn: psycopg.Connection, run_id: int, ride_id: int, key: str) -> None:
    charge = fake_charge(ride_id, key)
    ctx = json.dumps({"ride_id": ride_id, "charge_id": charge})
    with conn.transaction():
        conn.execute(STEP_FINISH, (ctx, run_id))
    with conn.transaction():
        conn.execute(UPDATE_RIDE, (charge, ride_id))
        conn.execute(INSERT_AUDIT, (ride_id,))
        conn.execute(RUN_DONE, (run_id,))


def job_1tx(conn: psycopg.Connection, i: int) -> None:
    args = ride_args(i)
    with conn.transaction():
        ride = conn.execute(
            INSERT_RIDE, (args["user_id"], args["origin"], args["target"])
        ).fetchone()
        assert ride is not None
        conn.execute(UPDATE_RIDE, (fake_charge(ride[0], f"ride-{i}"), ride[0]))
        conn.execute(INSERT_AUDIT, (ride[0],))


def claim_and_run(conn: psycopg.Connection) -> bool:
    """The queue floor: claim one pending job row, then its three step transactions."""
    with conn.transaction():
        row = conn.execute(CLAIM_ONE).fetchone()
    if row is None:
        return False
    run_id, key, args_json = row
    args = json.loads(args_json)
    with conn.transaction():
        ride = conn.execute(
            INSERT_RIDE, (args["user_id"], args["origin"], args["target"])
        ).fetchone()
        assert ride is not None
        conn.execute(STEP_CHARGE, (json.dumps({"ride_id": ride[0]}), run_id))
    _steps_2_3(conn, run_id, ride[0], key)
    return True


@functools.cache
def _sa_statements() -> dict[str, Any]:
    """The floor's statements as SQLAlchemy ``text()``, built once per process."""
    return {
        "CLAIM_ONE": sa_text(CLAIM_ONE),
        "INSERT_PROGRESS": sa_text(INSERT_PROGRESS),
        "STEP_CHARGE": sa_text(STEP_CHARGE),
        "STEP_FINISH": sa_text(STEP_FINISH),
        "RUN_DONE": sa_text(RUN_DONE),
        "INSERT_RIDE": sa_text(INSERT_RIDE),
        "UPDATE_RIDE": sa_text(UPDATE_RIDE),
        "INSERT_AUDIT": sa_text(INSERT_AUDIT),
    }


def claim_and_run_sa(engine: Any) -> bool:
    """:func:`claim_and_run` with every transaction on a connection of ``engine``'s pool
    (checked out per transaction, as acidic does) and every statement SQLAlchemy
    ``text()``: the queue floor of an application that writes with SQLAlchemy Core."""
    st = _sa_statements()
    with engine.begin() as conn:
        row = conn.execute(st["CLAIM_ONE"]).first()
    if row is None:
        return False
    run_id, key, args_json = row
    args = json.loads(args_json)
    with engine.begin() as conn:
        ride_id = conn.execute(
            st["INSERT_RIDE"], sa_params(args["user_id"], args["origin"], args["target"])
        ).scalar_one()
        conn.execute(st["STEP_CHARGE"], sa_params(json.dumps({"ride_id": ride_id}), run_id))
    _steps_2_3_sa(engine, st, run_id, ride_id, key)
    return True


def _steps_2_3_sa(engine: Any, st: dict[str, Any], run_id: int, ride_id: int, key: str) -> None:
    charge = fake_charge(ride_id, key)
    ctx = json.dumps({"ride_id": ride_id, "charge_id": charge})
    with engine.begin() as conn:
        conn.execute(st["STEP_FINISH"], sa_params(ctx, run_id))
    with engine.begin() as conn:
        conn.execute(st["UPDATE_RIDE"], sa_params(charge, ride_id))
        conn.execute(st["INSERT_AUDIT"], sa_params(ride_id))
        conn.execute(st["RUN_DONE"], sa_params(run_id))


def sa_floor(n: int, concurrency: int) -> float:
    """The 3-tx floor written with SQLAlchemy Core (``text()``, an Engine's pool, one
    checkout per transaction as acidic does): what SQLAlchemy itself costs."""
    import sqlalchemy as sa  # noqa: PLC0415

    st = _sa_statements()
    engine = sa.create_engine(pg_url(DB, "postgresql+psycopg"), pool_size=concurrency)
    counter = itertools.count()

    def executor() -> None:
        while (i := next(counter)) < n:
            args, key = ride_args(i), f"ride-{i}"
            with engine.begin() as conn:
                ride_id = conn.execute(
                    st["INSERT_RIDE"], sa_params(args["user_id"], args["origin"], args["target"])
                ).scalar_one()
                run_id = conn.execute(
                    st["INSERT_PROGRESS"],
                    sa_params(key, json.dumps(args), json.dumps({"ride_id": ride_id})),
                ).scalar_one()
            _steps_2_3_sa(engine, st, run_id, ride_id, key)

    with engine.connect():
        pass  # the first connection (and SQLAlchemy's dialect setup) is not timed
    with Timer() as t:
        threads = [threading.Thread(target=executor) for _ in range(concurrency)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    engine.dispose()
    return t.seconds


def connect() -> psycopg.Connection:
    return psycopg.connect(pg_url(DB))


def run(mode: str, n: int, concurrency: int) -> Measurement:
    reset_ride_tables(DB)
    if mode == "sa3tx":
        seconds = sa_floor(n, concurrency)
        check_rides(DB, n)
        return Measurement(
            "raw-sa3tx", "threads" if concurrency > 1 else "serial", n, concurrency, seconds
        )
    if mode == "queue":
        with connect() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bench_progress (key, args, status) VALUES (%s, %s, 'pending')",
                [(f"ride-{i}", json.dumps(ride_args(i))) for i in range(n)],
            )
    job: Callable[[psycopg.Connection, int], None] = job_3tx if mode == "3tx" else job_1tx
    counter = itertools.count()
    conns = [connect() for _ in range(concurrency)]

    def next_job(conn: psycopg.Connection) -> bool:
        if mode == "queue":
            return claim_and_run(conn)
        if (i := next(counter)) >= n:
            return False
        job(conn, i)
        return True

    seconds = time_executors(conns, next_job)
    check_rides(DB, n)
    return Measurement(
        f"raw-{mode}", "threads" if concurrency > 1 else "serial", n, concurrency, seconds
    )
