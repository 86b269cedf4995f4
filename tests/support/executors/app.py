"""The module a queue's stock worker imports in the executor tests (and bench/).

Configured by the environment, so that the test process and the worker processes build
the same App: ``ACIDIC_EXEC_URL`` (the database), ``ACIDIC_EXEC_KIND`` (``celery``,
``rq`` or ``dramatiq``), ``ACIDIC_EXEC_QUEUE`` (a queue name unique to the test),
``ACIDIC_EXEC_LOCK`` (the lock timeout, seconds) and ``ACIDIC_EXEC_GRACE`` (the relay's).

Transactional steps write one row in ``exec_effects`` through their ``tx`` (a row per
committed execution: counting them proves exactly-once); the foreign step writes one
row per call in ``exec_calls`` on a connection of its own, with its step key.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa

import acidic

URL = os.environ.get("ACIDIC_EXEC_URL", "postgresql://postgres@127.0.0.1:5432/test")
KIND = os.environ.get("ACIDIC_EXEC_KIND", "rq")
QUEUE = os.environ.get("ACIDIC_EXEC_QUEUE", "acidic-test")
LOCK = float(os.environ.get("ACIDIC_EXEC_LOCK", "5"))
GRACE = float(os.environ.get("ACIDIC_EXEC_GRACE", "2"))
REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
#: pika (Dramatiq) spells the default virtual host "/" as %2F.
PIKA_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"

meta = sa.MetaData()
effects = sa.Table(
    "exec_effects",
    meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(255), nullable=False),
    sa.Column("step", sa.String(64), nullable=False),
)
calls = sa.Table(
    "exec_calls",
    meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(255), nullable=False),
    sa.Column("step_key", sa.String(255), nullable=False),
)


def build(
    kind: str,
    url: str,
    queue: str,
    *,
    lock: float = LOCK,
    grace: float = GRACE,
    relay_every: float | None = None,
) -> Any:
    """A namespace with the App (jobs registered), its executor and the queue's object
    (``celery_app``, ``broker`` or ``redis``) for ``kind``."""
    ns = _Built()
    if kind == "celery":
        import celery

        from acidic.celery import CeleryExecutor

        ns.celery_app = celery.Celery(f"acidic_tests_{queue}", broker=AMQP_URL)
        ns.celery_app.conf.worker_hijack_root_logger = False
        ns.executor = CeleryExecutor(
            ns.celery_app, queue=queue, grace=grace, relay_every=relay_every
        )
    elif kind == "dramatiq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        from acidic.dramatiq import DramatiqExecutor

        ns.broker = RabbitmqBroker(url=PIKA_URL)
        ns.executor = DramatiqExecutor(
            ns.broker, queue_name=queue, grace=grace, relay_every=relay_every
        )
    else:
        from redis import Redis

        from acidic.rq import RQExecutor

        ns.redis = Redis.from_url(REDIS_URL)
        ns.executor = RQExecutor(ns.redis, queue=queue, grace=grace)
    ns.app = acidic.App(url, lock_timeout=lock, executor=ns.executor)
    for name, cls in JOBS.items():
        ns.app.job(name=name)(cls)
    _calls_engine[:] = [ns.app.engine]
    return ns


class _Built:
    app: acidic.App
    executor: Any
    celery_app: Any = None
    broker: Any = None
    redis: Any = None


#: The engine the foreign step records its calls with (the last App built here).
_calls_engine: list[sa.Engine] = []


def _effect(job: acidic.Job, step: str, tx: sa.Connection) -> None:
    tx.execute(effects.insert().values(run_key=job.key, step=step))


class Ride(acidic.Job):
    """Three steps: book (transactional), charge (a foreign call), confirm."""

    rider: str = ""
    pause: float = 0.0
    max_attempts = 1000  # the storm kills executions; none of them is a step's error

    @acidic.step
    def book(self, tx: sa.Connection) -> None:
        _effect(self, "book", tx)
        time.sleep(self.pause)

    @acidic.step(transactional=False)
    def charge(self) -> None:
        with _calls_engine[-1].begin() as conn:
            conn.execute(calls.insert().values(run_key=self.key, step_key=self.step_key))
        time.sleep(self.pause)

    @acidic.step
    def confirm(self, tx: sa.Connection) -> acidic.Response:
        _effect(self, "confirm", tx)
        time.sleep(self.pause)
        return acidic.Response(self.rider)


class Napper(acidic.Job):
    seconds: float = 1.0

    @acidic.step
    def before(self, tx: sa.Connection) -> acidic.Sleep:
        _effect(self, "before", tx)
        return acidic.Sleep(self.seconds)

    @acidic.step
    def after(self, tx: sa.Connection) -> acidic.Response:
        _effect(self, "after", tx)
        return acidic.Response("awake")


class Retrier(acidic.Job):
    """Asks for a retry after ``after`` seconds on its first attempt."""

    after: float = 1.0

    @acidic.step
    def only(self, tx: sa.Connection) -> acidic.Response:
        _effect(self, "only", tx)
        if self.attempt == 1:
            raise acidic.Retry(after=self.after)
        return acidic.Response(self.attempt)


class Waiter(acidic.Job):
    """Halts until the signal ``go`` arrives; returns its payload."""

    @acidic.step
    def wait(self, tx: sa.Connection) -> acidic.Halt | acidic.Response:
        payload = self.signal("go")
        if payload is None:
            return acidic.Halt()
        _effect(self, "wait", tx)
        return acidic.Response(payload)


class Failer(acidic.Job):
    """Always fails; two attempts, 0.2 s apart."""

    max_attempts = 2

    def backoff(self, attempt: int) -> float:
        return 0.2

    @acidic.step
    def only(self, tx: sa.Connection) -> None:
        raise RuntimeError(f"failing attempt {self.attempt}")


class Slow(acidic.Job):
    """Ten steps of ``pause`` seconds each (a run to cancel midway)."""

    pause: float = 0.3

    @acidic.step
    def s1(self, tx: sa.Connection) -> None:
        _effect(self, "s1", tx)
        time.sleep(self.pause)

    @acidic.step
    def s2(self, tx: sa.Connection) -> None:
        _effect(self, "s2", tx)
        time.sleep(self.pause)

    @acidic.step
    def s3(self, tx: sa.Connection) -> None:
        _effect(self, "s3", tx)
        time.sleep(self.pause)

    @acidic.step
    def s4(self, tx: sa.Connection) -> None:
        _effect(self, "s4", tx)
        time.sleep(self.pause)

    @acidic.step
    def s5(self, tx: sa.Connection) -> None:
        _effect(self, "s5", tx)
        time.sleep(self.pause)


JOBS: dict[str, type[acidic.Job]] = {
    "ride": Ride,
    "napper": Napper,
    "retrier": Retrier,
    "waiter": Waiter,
    "failer": Failer,
    "slow": Slow,
}

if os.environ.get("ACIDIC_EXEC_URL"):  # a queue's worker imports this module
    _every = os.environ.get("ACIDIC_EXEC_RELAY_EVERY")
    _built = build(KIND, URL, QUEUE, relay_every=float(_every) if _every else None)
    app = _built.app
    celery_app = _built.celery_app
    broker = _built.broker
    QUEUES = [QUEUE]  # `rq worker -c` reads its queues here
    REDIS_URL_SETTING = REDIS_URL
