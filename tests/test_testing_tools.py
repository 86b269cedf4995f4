"""acidic.testing's Clock, App.drain and assert_each_step_succeeded_once: moving time
makes run_at, Sleep and backoff fall due without sleeping, and drain runs them inline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import acidic
from acidic.testing import Clock, assert_each_step_succeeded_once, crash_points
from tests.support import jobs


class Nap(acidic.Job):
    hours: int

    @acidic.step
    def doze(self, tx: sa.Connection) -> acidic.Sleep:
        return acidic.Sleep(dt.timedelta(hours=self.hours))

    @acidic.step
    def wake(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response(self.attempt)


class Flaky(acidic.Job):
    """Fails its first two attempts; retries ten minutes later."""

    max_attempts = 5

    def backoff(self, attempt: int) -> float:
        return 600.0

    @acidic.step
    def work(self, tx: sa.Connection) -> acidic.Response:
        if self.attempt < 3:
            raise RuntimeError(f"flaky on attempt {self.attempt}")
        return acidic.Response(self.attempt)


class Twice(acidic.Job):
    """Its first step succeeds twice: it sends the run back to itself once."""

    @acidic.step
    def again(self, tx: sa.Connection) -> acidic.RecoveryPoint | None:
        if self.ctx.get("looped"):
            return None
        self.ctx["looped"] = True
        return acidic.RecoveryPoint("again")

    @acidic.step
    def done(self, tx: sa.Connection) -> None:
        pass


JOBS: dict[str, type[acidic.Job]] = {"Nap": Nap, "Flaky": Flaky, "Twice": Twice}


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))


@pytest.fixture
def app(database_url: str, clock: Clock) -> Iterator[acidic.App]:
    with jobs.migrated_app(database_url, JOBS, clock=clock) as application:
        yield application


def test_clock__moves_only_when_told_and_never_back() -> None:
    clock = Clock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    start = clock()
    assert start == dt.datetime(2029, 12, 31, 22, tzinfo=dt.UTC)
    assert clock() == start  # frozen
    assert clock.advance(90) == start + dt.timedelta(seconds=90)
    assert clock.advance(dt.timedelta(minutes=1)) == start + dt.timedelta(seconds=150)
    later = start + dt.timedelta(days=1)
    assert clock.set(later) == later == clock.now()
    with pytest.raises(acidic.AcidicError, match="only moves forward"):
        clock.set(start)
    with pytest.raises(ValueError, match="must not be negative"):
        clock.advance(-1)
    with pytest.raises(acidic.AcidicError, match="timezone-aware"):
        clock.set(dt.datetime(2031, 1, 1))


def test_drain__runs_a_run_only_once_the_clock_reaches_its_run_at(
    app: acidic.App, clock: Clock
) -> None:
    app.enqueue(Nap(hours=0), key="later", run_at=clock() + dt.timedelta(hours=1))
    assert app.drain() == 0
    assert jobs.get_run(app, "later").status == "pending"
    clock.advance(dt.timedelta(minutes=59))
    assert app.drain() == 0
    clock.advance(60)
    # Sleep(0 hours) parks the run due at once: a second execution in the same drain.
    assert app.drain() == 2
    run = jobs.get_run(app, "later")
    assert run.status == "succeeded"
    assert_each_step_succeeded_once(run)


def test_drain__a_sleep_ends_when_the_clock_passes_it(app: acidic.App, clock: Clock) -> None:
    app.enqueue(Nap(hours=8), key="nap")
    assert app.drain() == 1
    run = jobs.get_run(app, "nap")
    assert (run.status, run.recovery_point) == ("scheduled", "wake")
    assert run.run_at == clock() + dt.timedelta(hours=8)
    clock.advance(dt.timedelta(hours=8))
    assert app.drain() == 1
    assert jobs.get_run(app, "nap").result == 2


def test_drain__backoff_falls_due_by_the_clock_and_errors_are_recorded_not_raised(
    app: acidic.App, clock: Clock
) -> None:
    app.enqueue(Flaky(), key="flaky")
    for attempt in (1, 2):
        assert app.drain() == 1  # the step's RuntimeError is recorded, not raised
        run = jobs.get_run(app, "flaky")
        assert run.status == "scheduled"
        assert run.error is not None
        assert run.error.message == f"flaky on attempt {attempt}"
        assert app.drain() == 0  # ten minutes of backoff to go
        clock.advance(600)
    assert app.drain() == 1
    assert jobs.get_run(app, "flaky").result == 3


def test_assert_each_step_succeeded_once__names_a_step_done_twice(app: acidic.App) -> None:
    app.run(Twice(), key="twice")
    with pytest.raises(AssertionError, match=r"again \(2 times\)") as raised:
        assert_each_step_succeeded_once(jobs.get_run(app, "twice"))
    assert "history:" in str(raised.value)


def test_assert_each_step_succeeded_once__refuses_an_unfinished_run(
    app: acidic.App, clock: Clock
) -> None:
    app.enqueue(Nap(hours=1), key="unfinished")
    app.drain()
    with pytest.raises(AssertionError, match="it is scheduled, not succeeded"):
        assert_each_step_succeeded_once(jobs.get_run(app, "unfinished"))
    with pytest.raises(AssertionError, match="does not exist"):
        assert_each_step_succeeded_once(app.get("missing"))


def test_crash_points__refuses_an_unknown_mode_and_kill_without_a_factory(
    app: acidic.App,
) -> None:
    with pytest.raises(acidic.AcidicError, match="mode must be"):
        next(crash_points(app, Flaky(), mode="explode"))  # type: ignore[arg-type]
    with pytest.raises(acidic.AcidicError, match="app_factory"):
        next(crash_points(app, Flaky(), mode="kill"))


def test_crash_points__uses_and_moves_the_apps_clock(app: acidic.App, clock: Clock) -> None:
    # A crashed run's lock is made stale by moving the App's Clock, not by waiting.
    start = clock()
    points = list(crash_points(app, Nap(hours=1)))
    assert points
    assert all(p.run.status == "succeeded" for p in points)
    assert clock() > start + dt.timedelta(hours=1)
