"""Semantic 7 with real processes: stale locks and fencing.

A run whose owner died keeps its lock until the lock is ``lock_timeout`` old (the
App's, or the job class's ``lock_timeout``, which wins), then the next caller takes
it over. An owner that was merely stopped (SIGSTOP) past its lock timeout and taken
over must, once continued, be refused its commit: it gets LockLostError and its
step's work is rolled back, so every transactional effect exists exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

import acidic
from tests.support import procs
from tests.support.flavours import PROCESS_FLAVOURS
from tests.support.jobs import CreateRide, ShortLockRide, effect_counts, make_app

#: Every flavour of step (sync, async, ORM session, async ORM session; the last three in
#: CI's second phase, scripts/test-flavours).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("flavour"),
    pytest.mark.parametrize("flavour", PROCESS_FLAVOURS, indirect=True),
]

ARGS: dict[str, Any] = {"user_id": 5, "origin": "Paris", "target": "Lille"}
RIDE_HISTORY = [
    (step, event, 2)
    for step in ("create_ride", "charge", "send_receipt")
    for event in ("started", "succeeded")
]
#: Slow's sleeps: long enough to stop the owner inside a step, short enough to be quick.
SECONDS = 1.0
#: Short enough for a quick test, long enough that a loaded CI machine still checks
#: the refusal before the lock goes stale.
LOCK_TIMEOUT = 1.0
#: Both, with async or ORM-session steps: each ``app.run`` of an async job opens a
#: connection on a loop of its own, and a session step builds the ORM's machinery; on a
#: loaded machine that ate the room above (CI, MariaDB).
FLAVOURED = 2.0


def _timing(flavour: str) -> tuple[float, float]:
    """(SECONDS, LOCK_TIMEOUT) for the flavour of step under test."""
    return (SECONDS, LOCK_TIMEOUT) if flavour == "sync" else (FLAVOURED, FLAVOURED)


def _crash_in_create_ride(
    database_url: str, job: str, key: str, lock_timeout: float | None = None
) -> None:
    """A child claims ``key`` and is SIGKILLed inside create_ride's open transaction."""
    code, out, err = procs.run_job(
        database_url, job, key, ARGS, lock_timeout, ACIDIC_TEST_CRASH="create_ride:written"
    )
    assert code == -signal.SIGKILL, f"child exited {code}: {out}\n{err}"


def _check_taken_over(app: acidic.App, key: str, result: object) -> None:
    run = app.get(key)
    assert run is not None
    assert (run.status, run.attempts, run.result) == ("succeeded", 2, result)
    assert procs.events(run) == RIDE_HISTORY
    assert effect_counts(app.engine, key) == {"create_ride": 1, "send_receipt": 1}


def test_takeover__killed_owner_is_taken_over_after_the_apps_lock_timeout(
    database_url: str, app: acidic.App, flavour: str
) -> None:
    key = "ride-app-timeout"
    timeout = _timing(flavour)[1]
    # The dead owner and the next caller both run Apps configured with 1 s (2 s).
    with make_app(database_url, lock_timeout=timeout) as short:
        procs.warm(short, key)  # the refusal check below must be quick
        _crash_in_create_ride(database_url, "CreateRide", key, timeout)
        with pytest.raises(acidic.KeyLockedError, match=key):
            short.run(CreateRide(**ARGS), key=key)
        run = app.get(key)
        assert run is not None
        assert procs.lock_age(run) < timeout  # the refusal above was before staleness

        procs.sleep_until_stale(app, key, timeout)
        result = short.run(CreateRide(**ARGS), key=key)  # not 90 s later: 1 s
    _check_taken_over(app, key, result)


def test_takeover__killed_owner_is_taken_over_after_the_jobs_lock_timeout(
    database_url: str, app: acidic.App
) -> None:
    key = "ride-job-timeout"
    assert ShortLockRide.lock_timeout == LOCK_TIMEOUT
    procs.warm(app, key)  # the refusal check below must be quick
    _crash_in_create_ride(database_url, "ShortLockRide", key)
    with pytest.raises(acidic.KeyLockedError, match=key):
        app.run(ShortLockRide(**ARGS), key=key)
    run = app.get(key)
    assert run is not None
    assert procs.lock_age(run) < LOCK_TIMEOUT  # the refusal above was before staleness

    # The App's lock_timeout is the default 90 s: the job's 1 s wins.
    procs.sleep_until_stale(app, key, LOCK_TIMEOUT)
    result = app.run(ShortLockRide(**ARGS), key=key)
    _check_taken_over(app, key, result)


def _stop(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGSTOP)
    stat = Path(f"/proc/{proc.pid}/stat")
    procs.wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", "SIGSTOP")


# Not on SQLite: a transactional step holds SQLite's only write lock until it
# commits, so an owner stopped inside one blocks every writer of the database, the
# taker's claim included (it would wait for the busy timeout, not take over). That is
# SQLite's one-writer design, documented, not a fencing question; the
# non-transactional variant below covers fencing on SQLite.
@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
# Sync steps only for now: with Session and AsyncSession steps on PostgreSQL the owner
# was seen, 4 times in about 40, already past hold's commit when stopped (recovery point
# "wait"): the open transaction the test waits for was not always hold's (to be found).
# Fencing of a stopped owner with those steps: faults/test_fencing.py, every flavour.
@pytest.mark.only_flavours("sync")
def test_takeover__stopped_owner_cannot_commit_its_transactional_step(
    database_url: str, app: acidic.App, flavour: str
) -> None:
    seconds, lock_timeout = _timing(flavour)
    key = "slow-fenced-tx"
    args = {"seconds": seconds}
    with procs.children() as children:
        taker = procs.prepare(database_url, "Slow", key, args, lock_timeout)
        owner = procs.spawn("tests.support.run_job", database_url, "Slow", key, args, lock_timeout)
        children += [taker, owner]

        # Stop the owner while it sleeps in hold with hold's transaction open.
        procs.wait_for(lambda: app.get(key), "the owner's claim")
        procs.wait_for(
            lambda: procs.other_open_transactions(app.engine) == 1,
            "the owner inside hold's transaction",
            detail=lambda: (app.get(key), procs.other_open_transactions(app.engine)),
        )
        _stop(owner)
        stopped = app.get(key)
        assert stopped is not None
        assert (stopped.status, stopped.recovery_point, stopped.attempts) == ("running", "hold", 1)
        assert stopped.history == []
        assert effect_counts(app.engine, key) == {}  # hold's insert is not committed

        # Past the lock timeout, another process takes the run over and completes it.
        procs.sleep_until_stale(app, key, lock_timeout)
        taken = procs.release(taker)
        assert taken.get("result") == 2, taken  # Slow.finish returns the attempt
        assert taken["elapsed"] >= 2 * seconds  # it ran hold and wait itself

        # The owner wakes up: its commit is refused.
        owner.send_signal(signal.SIGCONT)
        out, err = owner.communicate(timeout=procs.CHILD_TIMEOUT)
    assert owner.returncode == 0, err
    assert procs.outcome(out, err)["error"] == "LockLostError"

    assert effect_counts(app.engine, key) == {"hold": 1, "finish": 1}
    run = app.get(key)
    assert run is not None
    assert (run.status, run.attempts, run.result, run.error) == ("succeeded", 2, 2, None)
    assert procs.events(run) == [
        (step, event, 2)
        for step in ("hold", "wait", "finish")
        for event in ("started", "succeeded")
    ]


def test_takeover__stopped_owner_cannot_commit_its_non_transactional_step(
    database_url: str, app: acidic.App, flavour: str
) -> None:
    seconds, lock_timeout = _timing(flavour)
    key = "slow-fenced-foreign"
    args = {"seconds": seconds}
    with procs.children() as children:
        taker = procs.prepare(database_url, "Slow", key, args, lock_timeout)
        owner = procs.spawn("tests.support.run_job", database_url, "Slow", key, args, lock_timeout)
        children += [taker, owner]

        # Stop the owner while it sleeps in wait, with no transaction open.
        def in_wait() -> bool:
            run = app.get(key)
            return run is not None and ("wait", "started", 1) in procs.events(run)

        procs.wait_for(
            in_wait, "the owner inside wait", detail=lambda: (app.get(key), owner.poll())
        )
        _stop(owner)
        stopped = app.get(key)
        assert stopped is not None
        assert (stopped.status, stopped.recovery_point, stopped.attempts) == ("running", "wait", 1)
        assert effect_counts(app.engine, key) == {"hold": 1}

        procs.sleep_until_stale(app, key, lock_timeout)
        taken = procs.release(taker)
        assert taken.get("result") == 2, taken
        assert seconds <= taken["elapsed"] < 2 * seconds  # it ran wait, not hold

        owner.send_signal(signal.SIGCONT)
        out, err = owner.communicate(timeout=procs.CHILD_TIMEOUT)
    assert owner.returncode == 0, err
    assert procs.outcome(out, err)["error"] == "LockLostError"

    assert effect_counts(app.engine, key) == {"hold": 1, "finish": 1}
    run = app.get(key)
    assert run is not None
    assert (run.status, run.attempts, run.result, run.error) == ("succeeded", 2, 2, None)
    assert procs.events(run) == [
        ("hold", "started", 1),
        ("hold", "succeeded", 1),
        ("wait", "started", 1),
        ("wait", "started", 2),
        ("wait", "succeeded", 2),
        ("finish", "started", 2),
        ("finish", "succeeded", 2),
    ]
