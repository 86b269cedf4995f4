"""Jobs used by the tests, importable by the test process and by the child processes
that tests start (and kill) through ``python -m tests.support.run_job``.

Every transactional step records one row in ``effects`` (run key, step) through its
``tx``: counting those rows is how tests prove a step's database work happened
exactly once. Non-transactional steps append a line to the file named by
``$ACIDIC_TEST_CALLS`` (if set), to count at-least-once foreign calls.

``$ACIDIC_TEST_CRASH`` = ``"<step>:<point>"`` makes the process kill itself with
SIGKILL at that point of that step: ``before`` (start of the step), ``written``
(transactional: after the step's writes, before acidic commits them) or ``called``
(non-transactional: after the foreign call, before acidic records it).
``$ACIDIC_TEST_SLEEP`` = ``"<step>:<seconds>"`` makes that step sleep (after its
writes) so that other processes can race it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa

import acidic

metadata = sa.MetaData()
rides = sa.Table(
    "rides",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("origin", sa.String(100), nullable=False),
    sa.Column("target", sa.String(100), nullable=False),
    sa.Column("charge_id", sa.String(100), nullable=True),
)
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(255), nullable=False),
    sa.Column("step", sa.String(100), nullable=False),
)


def create_tables(engine: sa.Engine) -> None:
    metadata.create_all(engine)


def effect_counts(engine: sa.Engine, key: str) -> dict[str, int]:
    """How many times each transactional step of ``key`` committed its work."""
    stmt = (
        sa.select(effects.c.step, sa.func.count())
        .where(effects.c.run_key == key)
        .group_by(effects.c.step)
    )
    with engine.connect() as conn:
        return {step: int(n) for step, n in conn.execute(stmt)}


def _maybe(step: str, point: str) -> None:
    crash = os.environ.get("ACIDIC_TEST_CRASH")
    if crash == f"{step}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


def _maybe_sleep(step: str) -> None:
    spec = os.environ.get("ACIDIC_TEST_SLEEP", "")
    name, _, seconds = spec.partition(":")
    if name == step:
        time.sleep(float(seconds))


def _record(tx: sa.Connection, key: str, step: str) -> None:
    tx.execute(effects.insert().values(run_key=key, step=step))


def _call(key: str, step: str) -> None:
    path = os.environ.get("ACIDIC_TEST_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{key}\t{step}\n")


class CreateRide(acidic.Job):
    """The reference's ride: create the ride, charge the card, send the receipt."""

    user_id: int
    origin: str
    target: str

    @acidic.step
    def create_ride(self, tx: sa.Connection) -> None:
        _maybe("create_ride", "before")
        inserted = tx.execute(
            rides.insert().values(user_id=self.user_id, origin=self.origin, target=self.target)
        ).inserted_primary_key
        assert inserted is not None
        ride_id = inserted[0]
        self.ctx["ride_id"] = ride_id
        _record(tx, self.key, "create_ride")
        _maybe_sleep("create_ride")
        _maybe("create_ride", "written")

    @acidic.step(transactional=False)
    def charge(self) -> None:
        _maybe("charge", "before")
        _call(self.key, "charge")
        self.ctx["charge_id"] = f"ch_{self.step_key[-12:]}"
        _maybe_sleep("charge")
        _maybe("charge", "called")

    @acidic.step
    def send_receipt(self, tx: sa.Connection) -> acidic.Response:
        _maybe("send_receipt", "before")
        tx.execute(
            rides.update()
            .where(rides.c.id == self.ctx["ride_id"])
            .values(charge_id=self.ctx["charge_id"])
        )
        _record(tx, self.key, "send_receipt")
        _maybe_sleep("send_receipt")
        _maybe("send_receipt", "written")
        return acidic.Response({"ride_id": self.ctx["ride_id"], "charge_id": self.ctx["charge_id"]})


class Slow(acidic.Job):
    """One transactional step that sleeps ``seconds`` while holding its transaction,
    then a non-transactional step that sleeps as long with no transaction open."""

    seconds: float

    @acidic.step
    def hold(self, tx: sa.Connection) -> None:
        _record(tx, self.key, "hold")
        time.sleep(self.seconds)

    @acidic.step(transactional=False)
    def wait(self) -> None:
        time.sleep(self.seconds)

    @acidic.step
    def finish(self, tx: sa.Connection) -> acidic.Response:
        _record(tx, self.key, "finish")
        return acidic.Response(self.attempt)


class ShortLockRide(CreateRide):
    """CreateRide whose locks go stale after one second: the job's ``lock_timeout``
    class attribute, which overrides the App's."""

    lock_timeout = 1.0


class Hold(acidic.Job):
    """Slow's first step alone: sleeps ``seconds`` holding its transaction open, then
    finishes the run with the attempt number."""

    seconds: float

    @acidic.step
    def hold(self, tx: sa.Connection) -> acidic.Response:
        _record(tx, self.key, "hold")
        time.sleep(self.seconds)
        return acidic.Response(self.attempt)


JOBS: dict[str, type[acidic.Job]] = {
    "CreateRide": CreateRide,
    "Slow": Slow,
    "ShortLockRide": ShortLockRide,
    "Hold": Hold,
}


@contextlib.contextmanager
def migrated_app(
    url: str, jobs: Mapping[str, type[acidic.Job]], **options: Any
) -> Iterator[acidic.App]:
    """A migrated App on ``url`` with ``jobs`` registered under their names and the
    test tables created; closed afterwards."""
    app = acidic.App(url, **options)
    try:
        app.migrate()
        for name, cls in jobs.items():
            app.job(name=name)(cls)
        create_tables(app.engine)
        yield app
    finally:
        app.close()


def get_run(app: acidic.App, key: str) -> acidic.Run:
    """The stored run of ``key``, which must exist."""
    run = app.get(key)
    assert run is not None, f"no run for {key!r}"
    return run


def make_app(url: str, **options: Any) -> acidic.App:
    """An App on ``url`` with the jobs above registered under their short names."""
    from tests.support.flavours import apply_from_environment

    apply_from_environment(JOBS.values())  # a child process of a flavoured test
    app = acidic.App(url, **options)
    for name, cls in JOBS.items():
        app.job(name=name)(cls)
    return app
