"""acidic's own SQL, sent by raw psycopg: the floor of acidic's design.

The same statements, with the same transaction boundaries, that acidic sends for a ride
(taken from acidic's store and compiled once, so they cannot drift from what acidic
sends), on acidic's own tables, but from a loop with no engine, no SQLAlchemy execute
path and no Python beyond building the parameters:

* ``inline``: the claim (``INSERT … ON CONFLICT DO NOTHING RETURNING id``, autocommit);
  step 1 (``INSERT`` ride and the progress statement, one transaction); the foreign
  step's ``started`` record and its ``succeeded`` record (autocommit each); step 3
  (``UPDATE`` ride, ``INSERT`` audit and the progress statement, one transaction);
* ``queue``: the same, but the run is enqueued first (untimed) and claimed by acidic's
  worker claim statement (``UPDATE … SKIP LOCKED … RETURNING``, autocommit).

Against the 3-tx floor this separates what acidic's choices of durability cost (two more
commits: the claim, and the foreign step's ``started`` record) from what its client code
costs (acidic / this).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from acidic._storage._claims import OneStatementClaimer
from acidic._storage._store import Store

from ..common import (
    DATABASES,
    INSERT_AUDIT,
    INSERT_RIDE,
    UPDATE_RIDE,
    Measurement,
    check_rides,
    fake_charge,
    pg_url,
    ride_args,
    time_executors,
)
from .acidic_pg import reset_pg

DB = DATABASES["acidic"]
JOB = "bench.Ride"
STEPS = json.dumps(["create_ride", "charge", "finish"], separators=(",", ":"))
LOCK = dt.timedelta(seconds=90)

RUN_COLUMNS = (
    "idempotency_key", "job", "args", "steps", "status", "recovery_point", "ctx", "result",
    "error", "attempts", "lock_token", "locked_at", "created_at", "last_run_at",
    "finished_at", "queue", "priority", "run_at", "lock_expires_at", "attempt_limit",
    "cancel_requested",
)  # fmt: skip
NEXT = ("ctx", "error", "recovery_point", "locked_at", "lock_expires_at")
STARTED = ("locked_at", "lock_expires_at")
DONE = (
    "ctx", "error", "lock_token", "locked_at", "lock_expires_at", "status", "recovery_point",
    "result", "finished_at", "run_at",
)  # fmt: skip


@dataclass(frozen=True)
class Statements:
    claim_insert: str
    claim_due: str
    #: The claim statement's own literals (bound by SQLAlchemy as parameters).
    claim_due_literals: dict[str, Any]
    progress: dict[tuple[tuple[str, ...], int], str]


def statements() -> Statements:
    """acidic's statements for a ride, as acidic's store renders them for psycopg."""
    store = Store(pg_url(DB, "postgresql+psycopg"))
    try:
        progress = {
            (cols, n): store._progress_statement(cols, n).sql
            for cols, n in ((NEXT, 2), (STARTED, 1), (NEXT, 1), (DONE, 2))
        }
        claimer = store._claimer
        assert isinstance(claimer, OneStatementClaimer)
        claim = claimer._statement((JOB,), 1)
        return Statements(
            claim_insert=store._insert_statement(RUN_COLUMNS).sql,
            claim_due=claim.sql,
            claim_due_literals=claim.literals,
            progress=progress,
        )
    finally:
        store.dispose()


def _progress(
    sql: Statements,
    conn: psycopg.Connection,
    run_id: int,
    token: str,
    values: dict[str, Any],
    events: list[tuple[str, str, int]],
) -> None:
    params: dict[str, Any] = {"p_run_id": run_id, "p_token": token}
    params.update({f"v_{k}": v for k, v in values.items()})
    now = dt.datetime.now(dt.UTC)
    for i, (step, event, attempt) in enumerate(events):
        params.update(
            {f"e{i}_step": step, f"e{i}_event": event, f"e{i}_at": now}
            | {f"e{i}_attempt": attempt, f"e{i}_error": None}
        )
    stmt = sql.progress[(tuple(values), len(events))]
    cur = conn.execute(stmt, params)  # type: ignore[arg-type]
    assert cur.rowcount == len(events), "progress refused"


def _next(ctx: dict[str, Any], step: str) -> dict[str, Any]:
    """The progress of a step after which the run goes on at ``step``."""
    t = dt.datetime.now(dt.UTC)
    return {
        "ctx": json.dumps(ctx, separators=(",", ":")),
        "error": None,
        "recovery_point": step,
        "locked_at": t,
        "lock_expires_at": t + LOCK,
    }


def _steps(
    sql: Statements, conn: psycopg.Connection, run_id: int, token: str, key: str, args: Any
) -> None:
    def progress(values: dict[str, Any], *events: tuple[str, str, int]) -> None:
        _progress(sql, conn, run_id, token, values, list(events))

    with conn.transaction():
        ride = conn.execute(INSERT_RIDE, (args["user_id"], args["origin"], args["target"]))
        ride_id = ride.fetchone()[0]  # type: ignore[index]
        ctx: dict[str, Any] = {"ride_id": ride_id}
        progress(
            _next(ctx, "charge"), ("create_ride", "started", 1), ("create_ride", "succeeded", 1)
        )
    t = dt.datetime.now(dt.UTC)
    progress({"locked_at": t, "lock_expires_at": t + LOCK}, ("charge", "started", 1))
    ctx["charge_id"] = fake_charge(ride_id, f"{key}:charge")
    progress(_next(ctx, "finish"), ("charge", "succeeded", 1))
    with conn.transaction():
        conn.execute(UPDATE_RIDE, (ctx["charge_id"], ride_id))
        conn.execute(INSERT_AUDIT, (ride_id,))
        done = dict.fromkeys(DONE) | {
            "ctx": json.dumps(ctx, separators=(",", ":")),
            "status": "succeeded",
            "finished_at": dt.datetime.now(dt.UTC),
        }
        progress(done, ("finish", "started", 1), ("finish", "succeeded", 1))


def job_inline(sql: Statements, conn: psycopg.Connection, i: int) -> None:
    args = ride_args(i)
    key = f"ride-{i}"
    token = uuid.uuid4().hex
    t = dt.datetime.now(dt.UTC)
    values = dict.fromkeys(RUN_COLUMNS)
    values.update(
        idempotency_key=key,
        job=JOB,
        args=json.dumps(args, separators=(",", ":")),
        steps=STEPS,
        status="running",
        recovery_point="create_ride",
        ctx="{}",
        attempts=1,
        lock_token=token,
        locked_at=t,
        created_at=t,
        last_run_at=t,
        lock_expires_at=t + LOCK,
        priority=0,
        cancel_requested=False,
    )
    row = conn.execute(sql.claim_insert, values).fetchone()  # type: ignore[arg-type]
    assert row is not None, f"key {key} exists"
    _steps(sql, conn, row[0], token, key, args)


def claim_and_run(sql: Statements, conn: psycopg.Connection) -> bool:
    t = dt.datetime.now(dt.UTC)
    params = sql.claim_due_literals | {
        "c_queue": "default",
        "c_now": t,
        "c_job0": JOB,
        "c_expires0": t + LOCK,
    }
    row = conn.execute(sql.claim_due, params).fetchone()  # type: ignore[arg-type]
    if row is None:
        return False
    run_id, key, args, token = row[0], row[1], json.loads(row[3]), row[11]
    _steps(sql, conn, run_id, token, key, args)
    return True


def _enqueue(n: int) -> None:
    from .acidic_pg import pg_app  # noqa: PLC0415

    app, job = pg_app()
    try:
        for i in range(n):
            app.enqueue(job(**ride_args(i)), key=f"ride-{i}")
    finally:
        app.close()


def run(mode: str, n: int, concurrency: int) -> Measurement:
    reset_pg()
    sql = statements()
    if mode == "queue":
        _enqueue(n)
    conns = [psycopg.connect(pg_url(DB), autocommit=True) for _ in range(concurrency)]
    counter = itertools.count()

    def next_job(conn: psycopg.Connection) -> bool:
        if mode == "queue":
            return claim_and_run(sql, conn)
        if (i := next(counter)) >= n:
            return False
        job_inline(sql, conn, i)
        return True

    seconds = time_executors(conns, next_job)
    check_rides(DB, n)
    return Measurement("acidic-sql", mode, n, concurrency, seconds)
