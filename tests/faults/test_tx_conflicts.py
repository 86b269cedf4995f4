"""Serialization failures and deadlocks forced inside steps' transactions.

What is documented (docs/concepts.md, docs/guarantees.md): an exception raised *by the
step* (its own statement hit the deadlock or the serialization failure) is the step's
exception: the transaction is rolled back, the error is stored with the step, and ``app.run``
re-raises it unchanged (an enqueued run is retried after its backoff). A failure of
acidic's own progress write or of the *commit* (where PostgreSQL reports most
SERIALIZABLE conflicts) raises ``StorageError`` and is recorded as the step's failure
("Storage failures around a step"). Either way the next ``app.run`` of the key (or the
worker's retry) resumes at the step, and its effect exists exactly once.

Two runs race in threads of this process, synchronised inside their steps by a
barrier, so the conflict is certain: a write skew between two SERIALIZABLE steps on
PostgreSQL, and two steps locking two rows in opposite order (a deadlock) on PostgreSQL
and MariaDB. SQLite has one writer (BEGIN IMMEDIATE): two steps never run their
transactions at once, so neither fault exists there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

import acidic
from tests.support import procs
from tests.support.jobs import effect_counts, effects, get_run

pytestmark = pytest.mark.slow

BARRIER_TIMEOUT = 20.0

accounts_metadata = sa.MetaData()
accounts = sa.Table(
    "fault_accounts",
    accounts_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("touched", sa.Integer, nullable=False),
)


class Race:
    """What the two racing steps share (reset by each test)."""

    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    app: ClassVar[acidic.App | None] = None


def _sqlstate_or_code(exc: BaseException | None) -> object:
    """PostgreSQL's SQLSTATE, or MySQL/MariaDB's error number, of a driver error."""
    orig = getattr(exc, "orig", None) or exc
    if orig is not None and type(orig).__module__.startswith("pymysql"):
        return orig.args[0]
    return getattr(orig, "sqlstate", None)


class Skew(acidic.Job):
    """Reads every effect, then records its own, in a SERIALIZABLE transaction. Run
    ``n=1`` waits, on its first attempt, until run ``n=0`` has committed."""

    n: int

    def backoff(self, attempt: int) -> float:
        return 0.1

    @acidic.step
    def book(self, tx: sa.Connection) -> acidic.Response:
        tx.execute(sa.text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
        seen = tx.execute(sa.select(sa.func.count()).select_from(effects)).scalar_one()
        tx.execute(effects.insert().values(run_key=self.key, step="book"))
        if self.attempt == 1:
            Race.barrier.wait()  # both have read and written; neither has committed
            if self.n == 1:
                other = Race.app
                assert other is not None
                procs.wait_for(
                    lambda: (r := other.get("skew-0")) is not None and r.succeeded,
                    "the other run to commit",
                    BARRIER_TIMEOUT,
                )
        return acidic.Response(seen)


class Transfer(acidic.Job):
    """Updates account ``first`` then, once the other run holds its own first row,
    account ``second`` (on its first attempt: a deadlock with the opposite transfer)."""

    first: int
    second: int
    swallow: bool = False

    def backoff(self, attempt: int) -> float:
        return 0.1

    def _touch(self, tx: sa.Connection, account: int) -> None:
        tx.execute(
            accounts.update().where(accounts.c.id == account).values(touched=accounts.c.touched + 1)
        )

    @acidic.step
    def move(self, tx: sa.Connection) -> None:
        tx.execute(effects.insert().values(run_key=self.key, step="move"))
        self._touch(tx, self.first)
        if self.attempt == 1:
            Race.barrier.wait()
        try:
            self._touch(tx, self.second)
        except sa.exc.OperationalError:
            if not self.swallow:
                raise
            # A step that catches the deadlock and tries again (a common pattern).
            self._touch(tx, self.second)


@pytest.fixture
def race_app(app: acidic.App, database_url: str) -> Iterator[acidic.App]:
    """An App with Skew and Transfer registered; the accounts 1 and 2 exist."""
    Race.barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT)
    application = acidic.App(database_url)
    application.job(name="Skew")(Skew)
    application.job(name="Transfer")(Transfer)
    accounts_metadata.create_all(app.engine)
    with app.engine.begin() as conn:
        conn.execute(accounts.insert(), [{"id": 1, "touched": 0}, {"id": 2, "touched": 0}])
    Race.app = application
    try:
        yield application
    finally:
        Race.app = None
        application.close()


def _race(app: acidic.App, jobs: dict[str, acidic.Job]) -> dict[str, Any]:
    """Run each job under its key in a thread of its own; each outcome (result or
    exception) by key."""
    outcomes: dict[str, Any] = {}

    def target(key: str, job: acidic.Job) -> None:
        try:
            outcomes[key] = app.run(job, key=key)
        except BaseException as exc:
            outcomes[key] = exc

    threads = [threading.Thread(target=target, args=item) for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    return outcomes


def _drain(app: acidic.App, jobs: dict[str, acidic.Job]) -> list[acidic.Run]:
    """Enqueue the jobs and let one in-process worker (two threads) finish them."""
    for key, job in jobs.items():
        app.enqueue(job, key=key)
    worker = app.worker(concurrency=2, poll_interval=0.05)
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    try:
        procs.wait_for(
            lambda: all((r := app.get(k)) is not None and r.succeeded for k in jobs),
            "both runs to succeed",
            60,
            0.05,
            detail=lambda: [app.get(k) for k in jobs],
        )
    finally:
        worker.stop()
        thread.join(30)
    return [get_run(app, k) for k in jobs]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_tx_conflicts__serialization_failure_inline_is_recorded_and_resumable(
    app: acidic.App, race_app: acidic.App
) -> None:
    outcomes = _race(race_app, {"skew-0": Skew(n=0), "skew-1": Skew(n=1)})
    assert outcomes["skew-0"] == 0
    error = outcomes["skew-1"]
    if isinstance(error, acidic.StorageError):  # at commit: acidic's own write failed
        assert _sqlstate_or_code(error.__cause__) == "40001", repr(error.__cause__)
        assert "book" in str(error)
    else:  # the step's own statement failed: its exception, unchanged
        assert isinstance(error, sa.exc.OperationalError), repr(error)
        assert _sqlstate_or_code(error) == "40001"
    failed = get_run(app, "skew-1")
    assert (failed.status, failed.recovery_point, failed.locked_at) == ("failed", "book", None)
    assert failed.error is not None
    assert failed.error.step == "book"
    assert "serializ" in failed.error.message.lower(), failed.error.message
    assert effect_counts(app.engine, "skew-1") == {}

    assert race_app.run(Skew(n=1), key="skew-1") == 1  # it sees the other's effect now
    done = get_run(app, "skew-1")
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert procs.events(done) == [
        ("book", "started", 1),
        ("book", "errored", 1),
        ("book", "started", 2),
        ("book", "succeeded", 2),
    ]
    assert effect_counts(app.engine, "skew-0") == {"book": 1}
    assert effect_counts(app.engine, "skew-1") == {"book": 1}


@pytest.mark.parametrize("backend", ["postgresql"])
def test_tx_conflicts__serialization_failure_in_a_worker_is_retried(
    app: acidic.App, race_app: acidic.App
) -> None:
    first, second = _drain(race_app, {"skew-0": Skew(n=0), "skew-1": Skew(n=1)})
    assert (first.attempts, first.result) == (1, 0)
    assert (second.attempts, second.result) == (2, 1)
    assert [e.event for e in second.history] == ["started", "errored", "started", "succeeded"]
    errored = second.history[1].error
    assert errored is not None
    assert "serializ" in errored.message.lower(), errored.message
    assert effect_counts(app.engine, "skew-0") == {"book": 1}
    assert effect_counts(app.engine, "skew-1") == {"book": 1}


def _deadlock_jobs(swallow: bool = False) -> dict[str, acidic.Job]:
    return {
        "transfer-12": Transfer(first=1, second=2, swallow=swallow),
        "transfer-21": Transfer(first=2, second=1, swallow=swallow),
    }


def _touched(app: acidic.App) -> dict[int, int]:
    with app.engine.connect() as conn:
        return {int(i): int(t) for i, t in conn.execute(sa.select(accounts))}


DEADLOCK = {"postgresql": "40P01", "mysql": 1213}


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_tx_conflicts__deadlock_inline_fails_one_step_which_resumes(
    app: acidic.App, race_app: acidic.App, backend: str
) -> None:
    outcomes = _race(race_app, _deadlock_jobs())
    errors = {k: v for k, v in outcomes.items() if isinstance(v, BaseException)}
    assert len(errors) == 1, outcomes  # the database chose one victim
    ((victim, error),) = errors.items()
    assert isinstance(error, sa.exc.OperationalError), repr(error)  # unchanged
    assert _sqlstate_or_code(error) == DEADLOCK[backend]
    failed = get_run(app, victim)
    assert (failed.status, failed.recovery_point) == ("failed", "move")
    assert failed.error is not None
    assert failed.error.step == "move"
    assert "deadlock" in failed.error.message.lower()
    assert effect_counts(app.engine, victim) == {}  # its first update was rolled back
    assert _touched(app) == {1: 1, 2: 1}  # the other transfer alone

    race_app.run(_deadlock_jobs()[victim], key=victim)
    for key in outcomes:
        assert get_run(app, key).status == "succeeded"
        assert effect_counts(app.engine, key) == {"move": 1}
    assert _touched(app) == {1: 2, 2: 2}  # each transfer exactly once


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_tx_conflicts__deadlock_in_a_worker_is_retried(
    app: acidic.App, race_app: acidic.App
) -> None:
    runs = _drain(race_app, _deadlock_jobs())
    assert sorted(r.attempts for r in runs) == [1, 2]
    retried = next(r for r in runs if r.attempts == 2)
    assert [e.event for e in retried.history] == ["started", "errored", "started", "succeeded"]
    errored = retried.history[1].error
    assert errored is not None
    assert "deadlock" in errored.message.lower()
    for run in runs:
        assert effect_counts(app.engine, run.key) == {"move": 1}
    assert _touched(app) == {1: 2, 2: 2}


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_tx_conflicts__step_that_catches_a_deadlock_never_commits_half_a_step(
    app: acidic.App, race_app: acidic.App
) -> None:
    """A step catches the deadlock error and retries the statement. PostgreSQL refuses
    every statement of the aborted transaction, so the step fails and resumes; whatever
    the database, a step that moved its run on must have committed all its writes."""
    outcomes = _race(race_app, _deadlock_jobs(swallow=True))
    for key, outcome in outcomes.items():
        run = get_run(app, key)
        if run.status == "failed":
            assert isinstance(outcome, BaseException), outcome
            race_app.run(_deadlock_jobs(swallow=True)[key], key=key)
    for key in outcomes:
        run = get_run(app, key)
        assert run.status == "succeeded"
        assert effect_counts(app.engine, key) == {"move": 1}, f"{key}: {procs.events(run)}"
    assert _touched(app) == {1: 2, 2: 2}
