"""Never run, never imported: ``mypy --strict --warn-unused-ignores`` checks this file.

It uses acidic's public API the way users write it, and asserts with
``typing.assert_type`` that the types users see are the precise ones: ``@app.job``
and ``@acidic.step`` give back what they decorate, a job's fields make a typed
keyword-only constructor, and the step attributes have their documented types.
Each ``# type: ignore[code]`` marks a line that must be an error; with
``--warn-unused-ignores`` an ignore that is no longer needed fails the check.
tests/test_typing.py runs the check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, assert_type

import sqlalchemy as sa

import acidic

app = acidic.App("sqlite:///typing-never-run.sqlite3", lock_timeout=30)
assert_type(app, acidic.App)
assert_type(app.engine, sa.Engine)


@app.job
class CreateRide(acidic.Job):
    """The README's ride, with each kind of step."""

    user_id: int
    origin: str
    target: str
    note: str | None = None
    lock_timeout = 60.0

    @acidic.step
    def create_ride(self, tx: sa.Connection) -> None:
        assert_type(self.user_id, int)
        assert_type(self.note, str | None)
        assert_type(self.key, str)
        assert_type(self.step_key, str)
        assert_type(self.attempt, int)
        assert_type(self.retrying, bool)
        assert_type(self.ctx, acidic.Context)
        ride_id = tx.execute(sa.text("select 1")).scalar_one()
        self.ctx["ride_id"] = ride_id
        assert_type(self.ctx.get("ride_id"), Any | None)
        assert_type(self.ctx.setdefault("tries", 0), Any)

    @acidic.step(transactional=False)
    def charge(self) -> acidic.RecoveryPoint | None:
        if self.retrying and self.attempt > 3:
            return acidic.RecoveryPoint("create_ride")
        self.ctx["charge_id"] = f"ch_{self.step_key}"
        return None

    @acidic.step
    def send_receipt(self, tx: sa.Connection) -> acidic.Response | acidic.Halt:
        if "charge_id" not in self.ctx:
            return acidic.Halt()
        return acidic.Response({"ride_id": self.ctx["ride_id"]})

    def unique_by(self) -> Any:
        return [self.user_id, self.origin]


@app.job(name="rides.refund")
class Refund(acidic.Job):
    """A job registered under a pinned name."""

    charge_id: str
    amount: int

    @acidic.step(transactional=False)
    def refund(self) -> None:
        pass


# The decorators give back the very classes and functions they decorate.
assert_type(app.job(name="rides.refund")(Refund), type[Refund])
assert_type(app.job(CreateRide), type[CreateRide])
create_ride: Callable[[CreateRide, sa.Connection], None] = CreateRide.create_ride
charge: Callable[[CreateRide], acidic.RecoveryPoint | None] = CreateRide.charge
app.job(name="not-a-job")(dt.datetime)  # type: ignore[type-var]
assert_type(acidic.Job.lock_timeout, float | None)
assert_type(app.jobs, Mapping[str, type[acidic.Job]])
assert_type(app.name_of(CreateRide), str)


def use(conn: sa.Connection) -> None:
    assert_type(app.migrate(), list[str])
    ride = CreateRide(user_id=1, origin="a", target="b")
    assert_type(ride, CreateRide)
    assert_type(ride.origin, str)
    assert_type(Refund(charge_id="ch_1", amount=100), Refund)

    # Fields make a keyword-only constructor whose types are checked.
    CreateRide(user_id="x", origin="a", target="b")  # type: ignore[arg-type]
    CreateRide(user_id=1, origin="a")  # type: ignore[call-arg]
    CreateRide(1, "a", "b")  # type: ignore[call-arg]
    CreateRide(user_id=1, origin="a", target="b", colour="red")  # type: ignore[call-arg]

    # Steps keep their signatures.
    assert_type(ride.create_ride(conn), None)
    ride.create_ride()  # type: ignore[call-arg]
    assert_type(ride.charge(), acidic.RecoveryPoint | None)
    assert_type(ride.send_receipt(conn), acidic.Response | acidic.Halt)

    result = app.run(ride, key="ride-42")
    assert_type(result, Any)
    app.run(ride)
    app.run(CreateRide)  # type: ignore[arg-type]
    app.run(ride, key=42)  # type: ignore[arg-type]

    run = app.get("ride-42")
    assert_type(run, acidic.Run | None)
    if run is not None:
        assert_type(run.key, str)
        assert_type(run.job, str)
        assert_type(run.args, dict[str, Any])
        assert_type(run.status, acidic.RunStatus)
        assert_type(run.recovery_point, str | None)
        assert_type(run.result, Any)
        assert_type(run.error, acidic.RunError | None)
        assert_type(run.attempts, int)
        assert_type(run.created_at, dt.datetime)
        assert_type(run.finished_at, dt.datetime | None)
        assert_type(run.history, list[acidic.StepEvent])
        if run.error is not None:
            assert_type(run.error.step, str | None)
        for event in run.history:
            assert_type(event.step, str)
            assert_type(event.event, str)
            assert_type(event.time, dt.datetime)
        if run.status == acidic.RunStatus.SUCCEEDED:
            pass

    assert_type(acidic.Response({"a": 1}).value, Any)
    assert_type(acidic.RecoveryPoint("charge").step, str)
    acidic.RecoveryPoint()  # type: ignore[call-arg]

    try:
        app.run(ride, key="ride-42")
    except acidic.KeyLockedError as exc:
        assert_type(exc, acidic.KeyLockedError)
    except acidic.AcidicError as exc:
        assert_type(exc, acidic.AcidicError)

    with acidic.App(sa.create_engine("sqlite:///other.sqlite3")) as other:
        assert_type(other, acidic.App)
    acidic.App(lock_timeout="slow")  # type: ignore[arg-type]
    app.close()
