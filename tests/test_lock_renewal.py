"""Issue 18: under a worker's heartbeat, a run's step writes leave its lock alone until
half of it is spent, so that they change no indexed column (PostgreSQL then updates the
row in place); inline, every step write renews it, as before. And the worker's wake-ups:
an executor that found nothing spares the dispatcher a claim, unless a notification came.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Connection

import acidic
from acidic._storage._schema import runs
from acidic._worker._wakeups import Wakeups
from acidic.testing import Clock


def _expiry(tx: Connection, key: str) -> str:
    value = tx.execute(
        sa.select(runs.c.lock_expires_at).where(runs.c.idempotency_key == key)
    ).scalar_one()
    return str(value)


def _register(app: acidic.App, timeout: float) -> type[acidic.Job]:
    @app.job(name="tests.LockSeen")
    class LockSeen(acidic.Job):
        """Records the lock's expiry as its first and last steps see it."""

        tag: str = ""
        lock_timeout = timeout

        @acidic.step
        def first(self, tx: Connection) -> None:
            self.ctx["first"] = _expiry(tx, self.key)

        @acidic.step(transactional=False)
        def middle(self) -> None:
            pass

        @acidic.step
        def last(self, tx: Connection) -> None:
            self.ctx["last"] = _expiry(tx, self.key)

    return LockSeen


def test_lock_renewal__worker_steps_leave_a_fresh_lock_alone(app: acidic.App) -> None:
    job = _register(app, 600.0)
    app.enqueue(job(), key="seen-worker")
    assert app.worker(concurrency=1).drain() == 1
    run = app.get("seen-worker")
    assert run is not None
    assert run.status == "succeeded"
    # Claimed with a 600 s lock: the steps in between did not renew it.
    assert run.ctx["first"] == run.ctx["last"]


def test_lock_renewal__inline_steps_renew_at_every_write(app: acidic.App) -> None:
    job = _register(app, 600.0)
    app.run(job(), key="seen-inline")
    run = app.get("seen-inline")
    assert run is not None
    assert run.status == "succeeded"
    assert run.ctx["first"] < run.ctx["last"]  # renewed by the writes in between


def test_lock_renewal__worker_renews_a_half_spent_lock(database_url: str) -> None:
    clock = Clock()
    app = acidic.App(database_url, clock=clock)
    app.migrate()

    @app.job(name="tests.LockAged")
    class LockAged(acidic.Job):
        """Its middle step takes 40 s of the test clock: more than half its 60 s lock."""

        lock_timeout = 60.0

        @acidic.step
        def first(self, tx: Connection) -> None:
            self.ctx["first"] = _expiry(tx, self.key)

        @acidic.step(transactional=False)
        def middle(self) -> None:
            clock.advance(40)

        @acidic.step
        def last(self, tx: Connection) -> None:
            self.ctx["last"] = _expiry(tx, self.key)

    try:
        app.enqueue(LockAged(), key="aged")
        assert app.worker(concurrency=1).drain() == 1
        run = app.get("aged")
        assert run is not None
        assert run.status == "succeeded"
        assert run.ctx["first"] < run.ctx["last"]  # the middle step's end renewed it
    finally:
        app.close()


def test_wakeups__a_drained_executor_spares_one_claim() -> None:
    wakeups = Wakeups()
    heard = wakeups.heard
    wakeups.drained(heard)
    assert wakeups.take_drained() is True
    assert wakeups.take_drained() is False  # once


def test_wakeups__a_notification_since_the_claim_is_not_spared() -> None:
    wakeups = Wakeups()
    heard = wakeups.heard
    wakeups.notified("default")  # arrived while the executor was claiming
    wakeups.drained(heard)
    assert wakeups.take_drained() is False
    assert wakeups.event.is_set()
