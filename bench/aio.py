"""``python -m bench.aio``: acidic's asyncio side against its floors, on PostgreSQL.

* ``inline``: the ride run serially by ``await app.run_async`` (async steps, psycopg's
  async connection through SQLAlchemy's asyncio engine) against an async psycopg floor
  doing the same three transactions (:func:`job_3tx_async`, the async twin of
  ``raw_pg.job_3tx``); next to it, the sync pair (``app.run`` against ``job_3tx``).
* ``worker``: one worker with ``concurrency`` 200 draining N rides whose foreign step
  waits 100 ms (``await asyncio.sleep(0.1)``): the async job (on the worker's event
  loop) against the same ride as a sync job (``time.sleep(0.1)`` in 200 threads), and
  against the floor of an asyncio queue worker (:func:`worker_floor`: raw psycopg async,
  one event loop, the same claim-in-batches + three transactions + 100 ms wait), and the
  same floor on SQLAlchemy's asyncio engine (what SQLAlchemy's asyncio costs by itself).

Not a timed test: ratios in one run, printed (``--n``, ``--worker-n`` to size it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

import acidic

from .common import (
    INSERT_RIDE,
    Timer,
    check_rides,
    fake_charge,
    pg_url,
    reset_ride_tables,
    ride_args,
    sa_params,
    sa_text,
    wait_until,
)
from .systems.acidic_pg import _INSERT_AUDIT, _INSERT_RIDE, _UPDATE_RIDE
from .systems.raw_pg import job_3tx

#: A database of its own: the shared bench database may be at another branch's schema.
DB = "acidic_bench_aio" + os.environ.get("BENCH_DATABASE_SUFFIX", "")


def reset_pg() -> None:
    """Empty ride tables and acidic's tables, migrated (untimed)."""
    reset_ride_tables(DB)
    app = acidic.App(pg_url(DB, "postgresql+psycopg"))
    app.migrate()
    app.close()
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        # Every acidic table (the schema grows: children, limits, workers...); CASCADE for
        # the foreign keys between them.
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename LIKE 'acidic%%' AND tablename <> 'acidic_schema_version'"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        # autovacuum is off on the bench server: no dead rows from the last measurement.
        conn.execute("VACUUM ANALYZE")


#: The foreign call of the worker section (seconds).
CALL = 0.1


def make_app(
    url: str, *, call: float = 0.0
) -> tuple[acidic.App, type[acidic.Job], type[acidic.Job]]:
    """The App with the ride as an async job and as a sync job (``call``: how long the
    foreign step waits)."""
    app = acidic.App(url)

    @app.job(name="bench.AsyncRide")
    class AsyncRide(acidic.Job):
        user_id: int
        origin: str
        target: str

        @acidic.step
        async def create_ride(self, tx: AsyncConnection) -> None:
            result = await tx.execute(
                _INSERT_RIDE, {"a": self.user_id, "b": self.origin, "c": self.target}
            )
            self.ctx["ride_id"] = result.scalar_one()

        @acidic.step(transactional=False)
        async def charge(self) -> None:
            if call:
                await asyncio.sleep(call)
            self.ctx["charge_id"] = fake_charge(self.ctx["ride_id"], self.step_key)

        @acidic.step
        async def finish(self, tx: AsyncConnection) -> None:
            ride_id = self.ctx["ride_id"]
            await tx.execute(_UPDATE_RIDE, {"a": self.ctx["charge_id"], "b": ride_id})
            await tx.execute(_INSERT_AUDIT, {"a": ride_id})

    @app.job(name="bench.SyncRide")
    class SyncRide(acidic.Job):
        user_id: int
        origin: str
        target: str

        @acidic.step
        def create_ride(self, tx: Connection) -> None:
            self.ctx["ride_id"] = tx.execute(
                _INSERT_RIDE, {"a": self.user_id, "b": self.origin, "c": self.target}
            ).scalar_one()

        @acidic.step(transactional=False)
        def charge(self) -> None:
            if call:
                time.sleep(call)
            self.ctx["charge_id"] = fake_charge(self.ctx["ride_id"], self.step_key)

        @acidic.step
        def finish(self, tx: Connection) -> None:
            ride_id = self.ctx["ride_id"]
            tx.execute(_UPDATE_RIDE, {"a": self.ctx["charge_id"], "b": ride_id})
            tx.execute(_INSERT_AUDIT, {"a": ride_id})

    return app, AsyncRide, SyncRide


async def job_3tx_async(conn: psycopg.AsyncConnection[Any], i: int) -> None:
    """``raw_pg.job_3tx`` on psycopg's async connection: the same three transactions."""
    args = ride_args(i)
    key = f"ride-{i}"
    async with conn.transaction():
        cur = await conn.execute(INSERT_RIDE, (args["user_id"], args["origin"], args["target"]))
        ride = await cur.fetchone()
        assert ride is not None
        cur = await conn.execute(
            "INSERT INTO bench_progress (key, args, status, step, ctx)"
            " VALUES (%s, %s, 'running', 'charge', %s) RETURNING id",
            (key, json.dumps(args), json.dumps({"ride_id": ride[0]})),
        )
        progress = await cur.fetchone()
        assert progress is not None
    charge = fake_charge(ride[0], key)
    ctx = json.dumps({"ride_id": ride[0], "charge_id": charge})
    async with conn.transaction():
        await conn.execute(
            "UPDATE bench_progress SET step = 'finish', ctx = %s WHERE id = %s", (ctx, progress[0])
        )
    async with conn.transaction():
        await conn.execute("UPDATE rides SET charge_id = %s WHERE id = %s", (charge, ride[0]))
        await conn.execute(
            "INSERT INTO ride_audit (ride_id, action) VALUES (%s, 'charged')", (ride[0],)
        )
        await conn.execute(
            "UPDATE bench_progress SET status = 'succeeded', step = NULL WHERE id = %s",
            (progress[0],),
        )


def inline(n: int) -> dict[str, float]:
    """Jobs per second of the four serial measurements."""
    url = pg_url(DB, "postgresql+psycopg")
    rates: dict[str, float] = {}

    reset_pg()
    with psycopg.connect(pg_url(DB)) as conn, Timer() as t:
        for i in range(n):
            job_3tx(conn, i)
    rates["sync floor (psycopg, 3 tx)"] = n / t.seconds
    check_rides(DB, n)

    reset_pg()
    app, _, sync_ride = make_app(url)
    with Timer() as t:
        for i in range(n):
            app.run(sync_ride(**ride_args(i)), key=f"ride-{i}")
    app.close()
    rates["sync acidic app.run"] = n / t.seconds
    check_rides(DB, n)

    async def floor() -> float:
        async with await psycopg.AsyncConnection.connect(pg_url(DB)) as conn:
            with Timer() as t:
                for i in range(n):
                    await job_3tx_async(conn, i)
        return t.seconds

    reset_pg()
    rates["async floor (psycopg async, 3 tx)"] = n / asyncio.run(floor())
    check_rides(DB, n)

    reset_pg()
    app, async_ride, _ = make_app(url)

    async def rides() -> float:
        await app.run_async(async_ride(**ride_args(-1)), key="warm-up")  # connect, check
        with Timer() as t:
            for i in range(n):
                await app.run_async(async_ride(**ride_args(i)), key=f"ride-{i}")
        return t.seconds

    rates["async acidic await app.run_async"] = n / asyncio.run(rides())
    app.close()
    return rates


_CLAIM = (
    "UPDATE bench_progress SET status = 'running' WHERE id IN ("
    " SELECT id FROM bench_progress WHERE status = 'pending' ORDER BY id"
    " FOR UPDATE SKIP LOCKED LIMIT %s) RETURNING id, key, args"
)
#: A transaction's statements: given ``execute(sql, params)`` (returning the first row,
#: if any), runs them; the first transaction needs the ride's id for its second.
_Body = Callable[[Callable[[str, tuple[Any, ...]], Awaitable[Any]]], Awaitable[Any]]


async def _psycopg_io(
    concurrency: int,
) -> tuple[Any, Any, Any]:
    """The floor's transactions and claims on raw psycopg async connections: a pool of
    20 (acidic's worker pool: 10 + 10) and one autocommit connection for claims."""
    url = pg_url(DB)
    pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for _ in range(20):
        pool.put_nowait(await psycopg.AsyncConnection.connect(url))
    claimer = await psycopg.AsyncConnection.connect(url, autocommit=True)

    async def tx(body: _Body) -> Any:
        conn = await pool.get()
        try:
            async with conn.transaction():

                async def execute(sql: str, params: tuple[Any, ...]) -> Any:
                    cur = await conn.execute(sql, params)
                    return await cur.fetchone() if cur.description is not None else None

                return await body(execute)
        finally:
            pool.put_nowait(conn)

    async def claim(slots: int) -> list[Any]:
        cur = await claimer.execute(_CLAIM, (slots,))
        return await cur.fetchall()

    async def close() -> None:
        await claimer.close()
        while not pool.empty():
            await pool.get_nowait().close()

    return tx, claim, close


async def _sqlalchemy_io(concurrency: int) -> tuple[Any, Any, Any]:
    """The same on SQLAlchemy's asyncio engine (pool 10 + 10, statements ``text()``, a
    transaction per ``engine.begin()``): what an application writing its async steps with
    SQLAlchemy pays with or without acidic."""
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

    engine = create_async_engine(
        pg_url(DB, "postgresql+psycopg"), pool_size=10, max_overflow=10, pool_timeout=600
    )
    claims = engine.execution_options(isolation_level="AUTOCOMMIT")
    texts: dict[str, Any] = {}

    def named(sql: str, params: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
        stmt = texts.get(sql)
        if stmt is None:
            stmt = texts[sql] = sa_text(sql)
        return stmt, sa_params(*params)

    async def tx(body: _Body) -> Any:
        async with engine.begin() as conn:

            async def execute(sql: str, params: tuple[Any, ...]) -> Any:
                result = await conn.execute(*named(sql, params))
                return result.first() if result.returns_rows else None

            return await body(execute)

    async def claim(slots: int) -> list[Any]:
        async with claims.connect() as conn:
            return list((await conn.execute(*named(_CLAIM, (slots,)))).all())

    return tx, claim, engine.dispose


async def _floor_worker(n: int, concurrency: int, *, sqlalchemy: bool = False) -> float:
    """The raw asyncio queue worker: one loop, ``concurrency`` runs at once; a dispatcher
    claims as many pending rows as there are free slots in one autocommit ``UPDATE …
    SKIP LOCKED``; each run is ``raw_pg.claim_and_run``'s three transactions with the
    100 ms call after the first. On psycopg's async connections, or (``sqlalchemy``) on
    SQLAlchemy's asyncio engine. Seconds to drain ``n``."""
    io = _sqlalchemy_io if sqlalchemy else _psycopg_io
    tx, claim, close = await io(concurrency)
    free = asyncio.Semaphore(concurrency)
    slot_freed = asyncio.Event()
    done = 0

    async def run(run_id: int, key: str, args: dict[str, Any]) -> None:
        nonlocal done
        try:

            async def step1(execute: Any) -> Any:
                ride = await execute(INSERT_RIDE, (args["user_id"], args["origin"], args["target"]))
                await execute(
                    "UPDATE bench_progress SET step = 'charge', ctx = %s WHERE id = %s",
                    (json.dumps({"ride_id": ride[0]}), run_id),
                )
                return ride

            ride = await tx(step1)
            await asyncio.sleep(CALL)
            charge = fake_charge(ride[0], key)
            ctx = json.dumps({"ride_id": ride[0], "charge_id": charge})

            async def step2(execute: Any) -> None:
                await execute(
                    "UPDATE bench_progress SET step = 'finish', ctx = %s WHERE id = %s",
                    (ctx, run_id),
                )

            async def step3(execute: Any) -> None:
                await execute("UPDATE rides SET charge_id = %s WHERE id = %s", (charge, ride[0]))
                await execute(
                    "INSERT INTO ride_audit (ride_id, action) VALUES (%s, 'charged')", (ride[0],)
                )
                await execute(
                    "UPDATE bench_progress SET status = 'succeeded', step = NULL WHERE id = %s",
                    (run_id,),
                )

            await tx(step2)
            await tx(step3)
            done += 1
        finally:
            free.release()
            slot_freed.set()

    tasks: set[asyncio.Task[None]] = set()
    with Timer() as t:
        while done < n:
            await free.acquire()
            slots = 1
            while not free.locked() and slots < concurrency:
                await free.acquire()
                slots += 1
            rows = await claim(slots)
            for run_id, key, args in rows:
                task = asyncio.create_task(run(run_id, key, json.loads(args)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            for _ in range(slots - len(rows)):
                free.release()
            if not rows:
                slot_freed.clear()
                if done < n:
                    await slot_freed.wait()
    await close()
    return t.seconds


def worker_floor(n: int, concurrency: int, *, sqlalchemy: bool = False) -> tuple[float, float]:
    """Runs per second of :func:`_floor_worker` on N pending rows, and its CPU
    milliseconds per run."""
    reset_pg()
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bench_progress (key, args, status) VALUES (%s, %s, 'pending')",
                [(f"ride-{i}", json.dumps(ride_args(i))) for i in range(n)],
            )
        conn.execute("VACUUM ANALYZE bench_progress")
    with Timer() as t:
        rate = n / asyncio.run(_floor_worker(n, concurrency, sqlalchemy=sqlalchemy))
    check_rides(DB, n)
    return rate, t.cpu * 1000 / n


def worker(n: int, concurrency: int) -> dict[str, tuple[float, float]]:
    """Runs per second of one worker draining N rides whose foreign step waits, and its
    CPU milliseconds per run (the worker is in this process; the floor too)."""
    rates: dict[str, tuple[float, float]] = {}
    for label, pick in (("async job, event loop", 1), ("sync job, threads", 2)):
        reset_pg()
        app, *jobs = make_app(pg_url(DB, "postgresql+psycopg"), call=CALL)
        job = jobs[pick - 1]
        for i in range(n):  # untimed: the queue is filled first
            app.enqueue(job(**ride_args(i)), key=f"ride-{i}")
        w = app.worker(concurrency=concurrency, poll_interval=0.5)
        thread = threading.Thread(target=w.run, kwargs={"install_signal_handlers": False})
        with Timer() as t:
            thread.start()
            wait_until(lambda w=w: w.outcomes.get("succeeded", 0) >= n, timeout=3600)
        w.stop()
        thread.join()
        app.close()
        check_rides(DB, n)
        rates[f"worker --concurrency {concurrency}, {label}"] = (n / t.seconds, t.cpu * 1000 / n)
    rates[f"floor: raw psycopg async queue, {concurrency} at once"] = worker_floor(n, concurrency)
    rates[f"floor: SQLAlchemy asyncio queue, {concurrency} at once"] = worker_floor(
        n, concurrency, sqlalchemy=True
    )
    return rates


#: Issue 13's target: one worker process, ``--concurrency 200``, rides whose foreign step
#: waits 100 ms, on PostgreSQL on the 2-core machine.
TARGET_CONCURRENCY = 200
TARGET_RUNS_PER_SECOND = 400


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.aio")
    parser.add_argument("--n", type=int, default=300, help="rides per inline measurement")
    parser.add_argument("--worker-n", type=int, default=2000, help="rides per worker run")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--sections", default="inline,worker")
    options = parser.parse_args()
    sections = options.sections.split(",")
    if "inline" in sections:
        rates = inline(options.n)
        print(f"inline, serial, N={options.n} (jobs/s; ratio = acidic / its floor)")
        for label, rate in rates.items():
            print(f"  {label:40s} {rate:8.1f}")
        sync = rates["sync acidic app.run"] / rates["sync floor (psycopg, 3 tx)"]
        aio = rates["async acidic await app.run_async"] / rates["async floor (psycopg async, 3 tx)"]
        print(f"  ratio sync  {sync:.2f}   ratio async {aio:.2f}")
    if "worker" in sections:
        rates = worker(options.worker_n, options.concurrency)
        print(
            f"worker, N={options.worker_n}, foreign call {CALL * 1000:.0f} ms"
            " (runs/s; client CPU ms/run, all threads)"
        )
        for label, (rate, cpu) in rates.items():
            print(f"  {label:48s} {rate:8.1f}  {cpu:6.2f} ms")
        for name in ("raw psycopg async queue", "SQLAlchemy asyncio queue"):
            floor = rates[f"floor: {name}, {options.concurrency} at once"][0]
            ratios = [
                f"{label.split(', ')[1]} {rate / floor:.2f}x"
                for label, (rate, _) in rates.items()
                if not label.startswith("floor")
            ]
            print(f"  ratio to the {name} floor: {'; '.join(ratios)}")
        if options.concurrency == TARGET_CONCURRENCY:
            rate = rates[f"worker --concurrency {TARGET_CONCURRENCY}, async job, event loop"][0]
            met = "MET " if rate >= TARGET_RUNS_PER_SECOND else "MISS"
            print(
                f"  {met} async worker, --concurrency {TARGET_CONCURRENCY}: {rate:.1f} runs/s"
                f" (target >= {TARGET_RUNS_PER_SECOND}, issue 13; it moves with the machine's"
                " speed: read the ratios above beside it)"
            )


if __name__ == "__main__":
    main()
