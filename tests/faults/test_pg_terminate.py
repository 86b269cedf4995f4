"""PostgreSQL sessions of acidic killed with ``pg_terminate_backend`` in the middle of
steps: every run still finishes (after the documented retry or takeover) and nothing
is done twice.

The App under test connects with an ``application_name`` of its own, so that the
test terminates its sessions only (never the test's). Inline, the caller sees the
documented error and the next ``app.run`` of the key finishes the run; with worker
processes, sessions are terminated every few hundred milliseconds while runs drain,
and the workers must retry, take over and finish everything. On the suite's private
cluster (``private_postgresql``, see tests/conftest.py): killing server processes is
not for a server that others use.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from tests.support import procs
from tests.support import worker_app as wa
from tests.support.faults import fault_app
from tests.support.faults.helpers import sessions, terminate, with_application_name
from tests.support.faults.pg_jobs import SleepInTx
from tests.support.jobs import effect_counts, effects, get_run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.private_postgresql,
    pytest.mark.parametrize("backend", ["postgresql"]),
]


class SleepOutside(acidic.Job):
    """A transactional step, then a non-transactional one that sleeps on its first
    attempt (acidic holds no connection meanwhile), then a transactional one."""

    seconds: float

    @acidic.step
    def before(self, tx: sa.Connection) -> None:
        tx.execute(effects.insert().values(run_key=self.key, step="before"))

    @acidic.step(transactional=False)
    def outside(self) -> None:
        if self.attempt == 1:
            time.sleep(self.seconds)

    @acidic.step
    def after(self, tx: sa.Connection) -> acidic.Response:
        tx.execute(effects.insert().values(run_key=self.key, step="after"))
        return acidic.Response(self.attempt)


class SleepOutsideShortLock(SleepOutside):
    """SleepOutside whose lock goes stale after a second."""

    lock_timeout = 1.0


@pytest.fixture
def victim_name() -> str:
    """The ``application_name`` of the sessions this test terminates (unique: tests run
    in parallel)."""
    return f"acidic_victim_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def victim(app: acidic.App, database_url: str, victim_name: str) -> Iterator[acidic.App]:
    """An App on the test database whose sessions are named ``victim_name``."""
    victim_app = acidic.App(with_application_name(database_url, victim_name))
    victim_app.job(name="SleepInTx")(SleepInTx)
    victim_app.job(name="SleepOutside")(SleepOutside)
    victim_app.job(name="SleepOutsideShortLock")(SleepOutsideShortLock)
    try:
        yield victim_app
    finally:
        victim_app.close()


def _run_in_thread(
    app: acidic.App, job: acidic.Job, key: str
) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = app.run(job, key=key)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def _history(run: acidic.Run) -> list[tuple[str, str, int]]:
    return procs.events(run)


def _started(app: acidic.App, key: str, step: str) -> bool:
    run = app.get(key)
    return run is not None and (step, "started", 1) in _history(run)


@pytest.mark.parametrize("where", ["python", "statement"])
def test_pg_terminate__inside_a_transactional_step(
    app: acidic.App, victim: acidic.App, admin: sa.Engine, victim_name: str, where: str
) -> None:
    key = f"terminated-in-{where}"
    # In Python the step sleeps out its time (the session is dead meanwhile); in a
    # statement, the termination ends the sleep.
    seconds = 1.5 if where == "python" else 30.0
    thread, outcome = _run_in_thread(victim, SleepInTx(where=where, seconds=seconds), key)
    # The step's own session, inside the step: not a session of acidic's that is
    # between a read and its rollback (e.g. checking the schema).
    if where == "python":
        state, query = "idle in transaction", "INSERT INTO effects%"
    else:
        state, query = "active", "SELECT pg_sleep%"
    procs.wait_for(
        lambda: sessions(admin, victim_name, state, query) == 1, f"the step ({state})", 30
    )
    assert terminate(admin, victim_name, state=state, query=query) == 1
    thread.join(30)
    assert not thread.is_alive()

    error = outcome.get("error")
    if where == "python":
        # Committing the step failed: documented as StorageError, recorded as the step's
        # failure, the driver's error chained.
        assert isinstance(error, acidic.StorageError), outcome
        assert isinstance(error.__cause__, sa.exc.OperationalError), repr(error.__cause__)
        assert "work" in str(error)
    else:
        # The step's own statement failed: the step's exception, unchanged.
        assert isinstance(error, sa.exc.OperationalError), outcome
    failed = get_run(app, key)
    assert (failed.status, failed.recovery_point, failed.locked_at) == ("failed", "work", None)
    assert failed.error is not None
    assert failed.error.step == "work"
    assert _history(failed) == [("work", "started", 1), ("work", "errored", 1)]
    assert effect_counts(app.engine, key) == {}  # the step's write died with its session

    # The same App (its pool met a dead session) finishes the run at the next call.
    assert victim.run(SleepInTx(where=where, seconds=seconds), key=key) == 2
    done = get_run(app, key)
    assert (done.status, done.attempts, done.error) == ("succeeded", 2, None)
    assert effect_counts(app.engine, key) == {"work": 1}
    assert _history(done) == [
        ("work", "started", 1),
        ("work", "errored", 1),
        ("work", "started", 2),
        ("work", "succeeded", 2),
    ]


def test_pg_terminate__idle_sessions_during_a_non_transactional_step(
    app: acidic.App, victim: acidic.App, admin: sa.Engine, victim_name: str
) -> None:
    """The pooled sessions die while a foreign call runs: the progress commit after it
    fails. The run must finish once its key is run again (after its lock is stale:
    acidic could not tell whether the commit happened)."""
    key = "terminated-idle"
    thread, outcome = _run_in_thread(victim, SleepOutsideShortLock(seconds=1.5), key)
    procs.wait_for(lambda: _started(app, key, "outside"), "the call", 30)
    assert terminate(admin, victim_name) >= 1
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), acidic.StorageError), outcome
    assert effect_counts(app.engine, key) == {"before": 1}
    stuck = get_run(app, key)
    assert stuck.recovery_point == "outside"

    deadline = time.monotonic() + 30
    while True:
        try:
            victim.run(SleepOutsideShortLock(seconds=1.5), key=key)
            break
        except acidic.KeyLockedError:
            assert time.monotonic() < deadline, "the run stayed locked"
            time.sleep(0.1)
    done = get_run(app, key)
    assert (done.status, done.result, done.error) == ("succeeded", done.attempts, None)
    assert effect_counts(app.engine, key) == {"before": 1, "after": 1}
    assert [e for e in _history(done) if e[0] == "after"] == [
        ("after", "started", done.attempts),
        ("after", "succeeded", done.attempts),
    ]


def test_pg_terminate__failed_commit_after_a_foreign_call_is_resumable_at_once(
    app: acidic.App, victim: acidic.App, admin: sa.Engine, victim_name: str
) -> None:
    key = "terminated-idle-at-once"
    thread, outcome = _run_in_thread(victim, SleepOutside(seconds=1.5), key)
    procs.wait_for(lambda: _started(app, key, "outside"), "the call", 30)
    assert terminate(admin, victim_name) >= 1
    thread.join(30)
    assert isinstance(outcome.get("error"), acidic.StorageError), outcome
    stuck = get_run(app, key)
    assert stuck.locked_at is None, f"{stuck.status}, locked until {stuck.lock_expires_at}"
    assert victim.run(SleepOutside(seconds=1.5), key=key) == 2


def test_pg_terminate__worker_sessions_killed_repeatedly_while_draining(
    chaos_app: acidic.App, database_url: str, admin: sa.Engine, victim_name: str, tmp_path: Path
) -> None:
    n = 200
    seconds_of_faults = 6.0
    exec_log = tmp_path / "executions"
    exec_log.mkdir()
    url = with_application_name(database_url, victim_name)
    terminated = 0
    with wa.worker_processes() as workers:
        for i in range(2):
            workers.append(
                fault_app.spawn(
                    url, tmp_path / f"worker-{i}.log", exec_log, lock_timeout=2.0, pause=0.05
                )
            )
        for worker in workers:
            worker.wait_started(60)
        keys = fault_app.enqueue(chaos_app, n)
        end = time.monotonic() + seconds_of_faults
        while time.monotonic() < end:
            time.sleep(0.3)
            if wa.status_counts(chaos_app).get("succeeded", 0) < n:  # runs in progress
                terminated += terminate(admin, victim_name)
        at_end = wa.status_counts(chaos_app)
        wa.wait_for(
            lambda: wa.status_counts(chaos_app) == {"succeeded": n},
            f"all {n} runs to succeed",
            timeout=90,
            every=0.2,
            detail=lambda: (wa.status_counts(chaos_app), [w.output()[-3000:] for w in workers]),
        )
        assert all(w.alive() for w in workers), [w.output()[-3000:] for w in workers]
        for worker in workers:
            worker.signal_group(signal.SIGTERM)
        assert [w.wait(30) for w in workers] == [0, 0], [w.output()[-3000:] for w in workers]

    report = fault_app.check_invariants(chaos_app.engine, keys, exec_log)
    print(f"terminated {terminated} sessions; at the end of the faults {at_end}; {report}")
    assert report.ok, report
    assert terminated >= 10, "too few sessions terminated while runs were in progress"
    assert report.repeated >= 1, "no step was cut short by a terminated session"
