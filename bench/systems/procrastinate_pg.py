"""Procrastinate on the ride workload, through its worker (database
``procrastinate_bench``, on the same server).

* ``task``: one task doing the ride's three writes in one transaction (no steps, no
  progress: a retry redoes everything);
* ``chain``: the three steps as three tasks, each deferring the next after its own
  transaction commits (the nearest Procrastinate has to durable steps).

N jobs are deferred first (untimed); the worker (``concurrency`` = C, LISTEN/NOTIFY
on) is then timed until every task succeeded. Tasks are ``async`` and write through
a psycopg ``AsyncConnectionPool`` of C connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg

from ..common import (
    DATABASES,
    INSERT_AUDIT,
    INSERT_RIDE,
    UPDATE_RIDE,
    Measurement,
    Poller,
    check_rides,
    ensure_database,
    fake_charge,
    pg_url,
    reset_ride_tables,
    ride_args,
)

DB = DATABASES["procrastinate"]


def _reset() -> bool:
    """Empty the ride tables and Procrastinate's; True if its schema is there."""
    ensure_database(DB)
    reset_ride_tables(DB)
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename LIKE 'procrastinate%'"
            ).fetchall()
        ]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    return bool(tables)


def run(mode: str, n: int, concurrency: int) -> Measurement:
    return asyncio.run(_run(mode, n, concurrency))


def _define_tasks(app: Any, pool: Any) -> tuple[Any, Any]:
    """The one-task job, and the first of the three chained tasks."""

    async def insert_ride(args: dict[str, Any]) -> int:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(INSERT_RIDE, (args["user_id"], args["origin"], args["target"]))
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    async def finish(ride_id: int, charge_id: str) -> None:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(UPDATE_RIDE, (charge_id, ride_id))
            await conn.execute(INSERT_AUDIT, (ride_id,))

    @app.task(name="ride")
    async def ride(user_id: int, origin: str, target: str) -> None:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(INSERT_RIDE, (user_id, origin, target))
            row = await cur.fetchone()
            assert row is not None
            charge_id = fake_charge(row[0], f"ride-{user_id}")
            await conn.execute(UPDATE_RIDE, (charge_id, row[0]))
            await conn.execute(INSERT_AUDIT, (row[0],))

    @app.task(name="create_ride")
    async def create_ride(user_id: int, origin: str, target: str) -> None:
        ride_id = await insert_ride({"user_id": user_id, "origin": origin, "target": target})
        await charge.defer_async(ride_id=ride_id, key=f"ride-{user_id}")

    @app.task(name="charge")
    async def charge(ride_id: int, key: str) -> None:
        await finish_ride.defer_async(ride_id=ride_id, charge_id=fake_charge(ride_id, key))

    @app.task(name="finish_ride")
    async def finish_ride(ride_id: int, charge_id: str) -> None:
        await finish(ride_id, charge_id)

    return ride, create_ride


async def _run(mode: str, n: int, concurrency: int) -> Measurement:
    import procrastinate  # noqa: PLC0415
    from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    has_schema = _reset()
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=pg_url(DB)))
    pool = AsyncConnectionPool(pg_url(DB), min_size=concurrency, max_size=concurrency, open=False)

    ride, create_ride = _define_tasks(app, pool)
    first = ride if mode == "task" else create_ride
    expected = n if mode == "task" else 3 * n
    async with app.open_async():
        if not has_schema:
            await app.schema_manager.apply_schema_async()
        await pool.open()
        for start in range(0, n, 500):  # untimed: the queue is filled first
            await first.batch_defer_async(
                *(ride_args(i) for i in range(start, min(n, start + 500)))
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=concurrency, wait=True, install_signal_handlers=False)
        )
        poller = Poller(DB, "procrastinate_jobs", "status = 'succeeded'")
        while poller.count() < expected:
            if worker.done():
                worker.result()
                raise RuntimeError("the Procrastinate worker stopped early")
            await asyncio.sleep(0.02)
        seconds = loop.time() - started
        poller.close()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await pool.close()
    check_rides(DB, n)
    return Measurement(f"procrastinate-{mode}", "worker", n, concurrency, seconds)
