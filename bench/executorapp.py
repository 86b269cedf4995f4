"""The module the queues' workers import in ``python -m bench.executors``: the ride as
an acidic job handed to the queue (an executor), and the same three transactions as a
bare task of that queue. Configured by ``BENCH_EXEC_URL``, ``BENCH_EXEC_KIND`` and
``BENCH_EXEC_QUEUE``."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import sqlalchemy as sa

import acidic

URL = os.environ.get("BENCH_EXEC_URL", "postgresql://postgres@127.0.0.1:5432/acidic_bench")
KIND = os.environ.get("BENCH_EXEC_KIND", "rq")
QUEUE = os.environ.get("BENCH_EXEC_QUEUE", "acidic-bench")
REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
PIKA_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"

DDL = (
    "CREATE TABLE IF NOT EXISTS xrides (id BIGSERIAL PRIMARY KEY, tag TEXT NOT NULL, "
    "charge_id TEXT)",
    "CREATE TABLE IF NOT EXISTS xaudit (id BIGSERIAL PRIMARY KEY, ride_id BIGINT NOT NULL)",
)
engine = sa.create_engine(sa.make_url(URL).set(drivername="postgresql+psycopg"))


def _book(conn: sa.Connection, tag: str) -> int:
    return int(
        conn.execute(
            sa.text("INSERT INTO xrides (tag) VALUES (:t) RETURNING id"), {"t": tag}
        ).scalar_one()
    )


def _confirm(conn: sa.Connection, ride_id: int, charge: str) -> None:
    conn.execute(
        sa.text("UPDATE xrides SET charge_id = :c WHERE id = :i"), {"c": charge, "i": ride_id}
    )
    conn.execute(sa.text("INSERT INTO xaudit (ride_id) VALUES (:i)"), {"i": ride_id})


def bare_ride(tag: str) -> None:
    """The floor: the ride's three transactions in one bare task."""
    with engine.begin() as conn:
        ride_id = _book(conn, tag)
    charge = hashlib.sha256(f"{ride_id}:{tag}".encode()).hexdigest()[:16]
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT 1"))  # the floor's second transaction (the charge)
    with engine.begin() as conn:
        _confirm(conn, ride_id, charge)


executor: Any
celery_app: Any = None
broker: Any = None
bare: Any = None
if KIND == "celery":
    import celery

    from acidic.celery import CeleryExecutor

    celery_app = celery.Celery("acidic_bench", broker=AMQP_URL)
    celery_app.conf.worker_hijack_root_logger = False
    executor = CeleryExecutor(celery_app, queue=QUEUE, relay_every=None)
    bare = celery_app.task(name="bench.bare", acks_late=True, ignore_result=True)(bare_ride)
elif KIND == "dramatiq":
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=PIKA_URL)
    from acidic.dramatiq import DramatiqExecutor

    executor = DramatiqExecutor(broker, queue_name=QUEUE, relay_every=None)
    bare = dramatiq.actor(broker=broker, actor_name="bench_bare", queue_name=QUEUE)(bare_ride)
else:
    from redis import Redis

    from acidic.rq import RQExecutor

    QUEUES = [QUEUE]
    executor = RQExecutor(Redis.from_url(REDIS_URL), queue=QUEUE)

app = acidic.App(URL, executor=executor)


@app.job(name="xride")
class XRide(acidic.Job):
    tag: str

    @acidic.step
    def book(self, tx: sa.Connection) -> None:
        self.ctx["ride_id"] = _book(tx, self.tag)

    @acidic.step(transactional=False)
    def charge(self) -> None:
        self.ctx["charge"] = hashlib.sha256(
            f"{self.ctx['ride_id']}:{self.step_key}".encode()
        ).hexdigest()[:16]

    @acidic.step
    def confirm(self, tx: sa.Connection) -> None:
        _confirm(tx, self.ctx["ride_id"], self.ctx["charge"])
