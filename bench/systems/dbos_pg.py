"""DBOS Transact on the ride workload: a workflow of two datasource transactions and a
step, on the same PostgreSQL server (database ``dbos_bench``, system and application
tables in it).

* ``serial``: the workflow called directly, one job after another;
* ``queue``: N workflows enqueued first (untimed, with ``DBOSClient``), then the
  queue's worker (``worker_concurrency`` = C) runs them; timed until all succeeded.

The transactions use READ COMMITTED, like the floor and acidic (DBOS defaults to
SERIALIZABLE); the queue polls every ``POLL`` seconds (DBOS's default is 1 s, which
would cap a queue at C workflows per second).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import psycopg

from ..common import (
    DATABASES,
    INSERT_AUDIT,
    INSERT_RIDE,
    UPDATE_RIDE,
    Measurement,
    Poller,
    Timer,
    check_rides,
    ensure_database,
    fake_charge,
    pg_url,
    reset_ride_tables,
    ride_args,
    sa_text,
    wait_until,
)

DB = DATABASES["dbos"]
QUEUE = "rides"
POLL = float(os.environ.get("BENCH_DBOS_POLL", "0.01"))


def _reset() -> None:
    ensure_database(DB)
    reset_ride_tables(DB)
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables"
            " WHERE schemaname = 'dbos' AND tablename NOT IN"
            " ('dbos_migrations', 'application_versions')"
        ).fetchall()
        if tables:
            conn.execute(f"TRUNCATE {', '.join(t[0] for t in tables)} CASCADE")


def run(mode: str, n: int, concurrency: int) -> Measurement:
    from dbos import DBOS, DBOSClient, SQLAlchemyDatasource  # noqa: PLC0415

    _reset()
    url = pg_url(DB, "postgresql+psycopg")
    DBOS(config={"name": "bench", "system_database_url": url, "log_level": "WARNING"})
    logging.getLogger("dbos").setLevel(logging.WARNING)
    ds = SQLAlchemyDatasource.create(url)
    insert_ride, update_ride, insert_audit = map(sa_text, (INSERT_RIDE, UPDATE_RIDE, INSERT_AUDIT))

    @ds.transaction(isolation_level="READ COMMITTED")
    def create_ride(args: dict[str, Any]) -> int:
        session = ds.sql_session()
        ride_id: int = session.execute(
            insert_ride, {"a": args["user_id"], "b": args["origin"], "c": args["target"]}
        ).scalar_one()
        return ride_id

    @DBOS.step()
    def charge(ride_id: int, key: str) -> str:
        return fake_charge(ride_id, key)

    @ds.transaction(isolation_level="READ COMMITTED")
    def finish(ride_id: int, charge_id: str) -> None:
        session = ds.sql_session()
        session.execute(update_ride, {"a": charge_id, "b": ride_id})
        session.execute(insert_audit, {"a": ride_id})

    @DBOS.workflow(name="ride")
    def ride(args: dict[str, Any]) -> None:
        ride_id = create_ride(args)
        charge_id = charge(ride_id, DBOS.workflow_id or "")
        finish(ride_id, charge_id)

    DBOS.launch()
    try:
        if mode == "serial":
            with Timer() as t:
                for i in range(n):
                    ride(ride_args(i))
        else:
            # Registered with no room (worker_concurrency 0) while it is filled, so
            # nothing runs before the clock starts; then opened to C executors.
            queue = DBOS.register_queue(QUEUE, worker_concurrency=0, polling_interval_sec=POLL)
            client = DBOSClient(system_database_url=url)
            poller = Poller(DB, "dbos.workflow_status", "status = 'SUCCESS'")
            for i in range(n):
                client.enqueue({"queue_name": QUEUE, "workflow_name": "ride"}, ride_args(i))
            time.sleep(2 * POLL + 1.5)  # the queue's thread is polling (and finds no room)
            if poller.count() != 0:
                raise RuntimeError("the DBOS queue ran workflows before it was opened")
            with Timer() as t:
                queue.set_worker_concurrency(concurrency)
                wait_until(lambda: poller.count() >= n, timeout=3600, interval=0.02)
            client.destroy()
            poller.close()
    finally:
        DBOS.destroy(destroy_registry=True)
    check_rides(DB, n)
    return Measurement("dbos", mode, n, concurrency, t.seconds)


if __name__ == "__main__":  # a quick check: python -m bench.systems.dbos_pg
    print(run("queue", 50, 4).to_json())
