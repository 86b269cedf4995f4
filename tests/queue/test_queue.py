"""Issue 3, background execution: enqueue, transactional enqueue, ordering and
fairness, retries, cancellation, pruning, the graceful (and forced) stop of a worker,
takeover of a dead owner's run, and several workers on one queue.

Workers run in-process in a thread (``tests.support.queue.jobs.background``) with a short
poll interval; schedules, Sleep, Halt and signals are in ``test_schedules.py``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from acidic._storage._schema import history, runs, signals
from tests.support.jobs import effect_counts, rides
from tests.support.queue.jobs import (
    CALLS,
    TIMES,
    Anything,
    Boom,
    Doomed,
    Flaky,
    Gate,
    Insistent,
    Later,
    Lingering,
    Napper,
    Note,
    Other,
    Picky,
    Stubborn,
    Unregistered,
    background,
    count_runs,
    events,
    executed_keys,
    get,
    leave_as_crashed,
    seconds,
    utcnow,
    wait_for,
    wait_status,
)

#: Every test once per flavour of step (sync, async, ORM session, async ORM session).
pytestmark = pytest.mark.usefixtures("flavour")


def _sentinel(app: acidic.App, key: str = "sentinel", queue: str = "default") -> acidic.Run:
    """Enqueue a Note and wait until a worker ran it: proof that the worker went past
    everything due before it."""
    app.enqueue(Note(tag=key), key=key, queue=queue)
    return wait_status(app, key, "succeeded")


# -- enqueue ---------------------------------------------------------------------------


def test_enqueue__returns_a_pending_run_with_queue_priority_and_run_at(app: acidic.App) -> None:
    at = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    run = app.enqueue(Note(tag="a"), key="k-a", run_at=at, queue="other", priority=3)
    assert (run.key, run.job, run.args) == ("k-a", "queue.Note", {"tag": "a", "pause": 0.0})
    assert (run.status, run.queue, run.priority, run.run_at) == ("pending", "other", 3, at)
    assert (run.attempts, run.max_attempts, run.recovery_point) == (0, 25, "note")
    stored = get(app, "k-a")
    assert (stored.status, stored.queue, stored.priority, stored.run_at) == (
        "pending",
        "other",
        3,
        at,
    )
    assert stored.history == []

    before = utcnow()
    default = app.enqueue(Note(tag="b"), key="k-b")
    after = utcnow()
    assert (default.status, default.queue, default.priority) == ("pending", "default", 0)
    assert default.run_at is not None
    assert before <= default.run_at <= after
    assert get(app, "k-b").run_at == default.run_at


def test_enqueue__a_worker_executes_the_run_once(app: acidic.App) -> None:
    run = app.enqueue(Note(tag="done"), key="once")
    assert run.status == "pending"
    with background(app):
        done = wait_status(app, "once", "succeeded")
        _sentinel(app)
    assert (done.result, done.attempts, done.recovery_point) == ("done", 1, None)
    assert done.lock_expires_at is None
    assert done.finished_at is not None
    assert effect_counts(app.engine, "once") == {"note": 1}
    assert len(TIMES["once", "note"]) == 1
    assert events(done) == [("note", "started", 1), ("note", "succeeded", 1)]


def test_enqueue__existing_key_returns_the_existing_run(app: acidic.App) -> None:
    first = app.enqueue(Note(tag="a"), key="dup")
    again = app.enqueue(Note(tag="a"), key="dup", queue="other", priority=9)
    assert again.created_at == first.created_at
    assert (again.queue, again.priority) == ("default", 0)  # the first call's
    assert count_runs(app) == 1
    with background(app):
        wait_status(app, "dup", "succeeded")
        after = app.enqueue(Note(tag="a"), key="dup")
        assert (after.status, after.result) == ("succeeded", "a")
        _sentinel(app)
    assert effect_counts(app.engine, "dup") == {"note": 1}
    assert count_runs(app) == 2  # dup and the sentinel


def test_enqueue__existing_key_with_other_arguments_raises(app: acidic.App) -> None:
    app.enqueue(Note(tag="a"), key="taken")
    with pytest.raises(acidic.ArgumentMismatchError, match="tag"):
        app.enqueue(Note(tag="b"), key="taken")
    with pytest.raises(acidic.ArgumentMismatchError, match=r"queue\.Note"):
        app.enqueue(Other(tag="a"), key="taken")
    stored = get(app, "taken")
    assert (stored.job, stored.args["tag"], stored.status) == ("queue.Note", "a", "pending")
    assert count_runs(app) == 1


def test_enqueue__default_key_is_the_key_app_run_uses(app: acidic.App) -> None:
    assert app.run(Note(tag="inline-first")) == "inline-first"
    run = app.enqueue(Note(tag="inline-first"))
    assert (run.status, run.result, run.queue) == ("succeeded", "inline-first", None)
    assert count_runs(app) == 1

    queued = app.enqueue(Note(tag="queued-first"))
    assert app.run(Note(tag="queued-first")) == "queued-first"  # claims the enqueued run
    assert get(app, queued.key).status == "succeeded"
    assert count_runs(app) == 2
    assert effect_counts(app.engine, queued.key) == {"note": 1}


def _mutated() -> acidic.Job:
    job = Anything(payload=1)
    job.payload = object()  # after construction: only enqueue can notice
    return job


BAD_CALLS: dict[str, tuple[Callable[[acidic.App], Any], type[Exception], str]] = {
    "unregistered job": (lambda a: a.enqueue(Unregistered()), acidic.UnknownJobError, "register"),
    "job class": (lambda a: a.enqueue(Note), acidic.UnknownJobError, "instance"),  # type: ignore[arg-type]
    "non-JSON argument": (
        lambda a: a.enqueue(Anything(payload=object())),
        acidic.SerializationError,
        "JSON",
    ),
    "argument changed to non-JSON": (
        lambda a: a.enqueue(_mutated()),
        acidic.SerializationError,
        "JSON",
    ),
    "naive run_at": (
        lambda a: a.enqueue(Note(), run_at=dt.datetime(2030, 1, 1)),
        acidic.AcidicError,
        "timezone",
    ),
    "run_at not a datetime": (
        lambda a: a.enqueue(Note(), run_at=1.5),  # type: ignore[arg-type]
        acidic.AcidicError,
        "timezone",
    ),
    "undeclared queue": (
        lambda a: a.enqueue(Note(), queue="nope"),
        acidic.AcidicError,
        "not declared",
    ),
    "str priority": (
        lambda a: a.enqueue(Note(), priority="1"),  # type: ignore[arg-type]
        acidic.AcidicError,
        "priority",
    ),
    "float priority": (
        lambda a: a.enqueue(Note(), priority=1.5),  # type: ignore[arg-type]
        acidic.AcidicError,
        "priority",
    ),
    "bool priority": (lambda a: a.enqueue(Note(), priority=True), acidic.AcidicError, "priority"),
    "empty key": (lambda a: a.enqueue(Note(), key=""), acidic.InvalidKeyError, "empty"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_enqueue__bad_input_raises_at_the_call_and_stores_nothing(
    app: acidic.App, case: str
) -> None:
    call, error, message = BAD_CALLS[case]
    with pytest.raises(error, match=message):
        call(app)
    assert count_runs(app) == 0


# -- transactional enqueue ---------------------------------------------------------------


def test_enqueue__rolled_back_transaction_leaves_no_run_that_a_worker_could_run(
    app: acidic.App,
) -> None:
    with background(app):
        with contextlib.suppress(Boom), app.engine.begin() as conn:
            run = app.enqueue(Note(tag="ghost"), key="ghost", connection=conn)
            assert run.status == "pending"
            raise Boom("the caller's transaction fails")
        _sentinel(app)
    assert app.get("ghost") is None
    assert ("ghost", "note") not in TIMES
    assert effect_counts(app.engine, "ghost") == {}
    assert count_runs(app) == 1  # the sentinel


def test_enqueue__committed_transaction_runs_only_after_the_commit(app: acidic.App) -> None:
    with background(app):
        with app.engine.begin() as conn:
            app.enqueue(Note(tag="staged"), key="staged", connection=conn)
            time.sleep(0.2)  # four poll intervals: a worker must not see it yet
            assert ("staged", "note") not in TIMES
            committed_at = utcnow()
        done = wait_status(app, "staged", "succeeded")
    assert TIMES["staged", "note"][0] >= committed_at
    assert effect_counts(app.engine, "staged") == {"note": 1}
    assert done.result == "staged"


def test_enqueue__rollback_undoes_the_callers_own_writes_and_the_run(app: acidic.App) -> None:
    with contextlib.suppress(Boom), app.engine.begin() as conn:
        conn.execute(rides.insert().values(user_id=1, origin="a", target="b"))
        app.enqueue(Note(tag="ride"), key="ride", connection=conn)
        raise Boom("rolled back")
    with app.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rides)).scalar_one() == 0
    assert app.get("ride") is None
    assert count_runs(app) == 0


def test_enqueue__existing_key_in_a_transaction_keeps_the_transaction_usable(
    app: acidic.App,
) -> None:
    first = app.enqueue(Note(tag="x"), key="again")
    with app.engine.begin() as conn:
        conn.execute(rides.insert().values(user_id=1, origin="a", target="b"))
        again = app.enqueue(Note(tag="x"), key="again", connection=conn)
        conn.execute(rides.insert().values(user_id=2, origin="c", target="d"))
    assert again.created_at == first.created_at
    with app.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(rides)).scalar_one() == 2
    assert count_runs(app) == 1


# -- ordering and fairness ----------------------------------------------------------------


def test_worker__runs_higher_priority_first_then_earlier_run_at_then_enqueue_order(
    app: acidic.App,
) -> None:
    base = utcnow() - dt.timedelta(minutes=1)
    # Keys sort against the expected order, so no ordering by key can pass.
    app.enqueue(Note(), key="z-fifo-1", run_at=base)
    app.enqueue(Note(), key="y-fifo-2", run_at=base)
    app.enqueue(Note(), key="x-fifo-3", run_at=base)
    app.enqueue(Note(), key="w-low", run_at=base - dt.timedelta(seconds=30), priority=-1)
    app.enqueue(Note(), key="v-earlier", run_at=base - dt.timedelta(seconds=10))
    app.enqueue(Note(), key="u-high", run_at=base + dt.timedelta(seconds=10), priority=5)
    with background(app, concurrency=1):
        wait_for(lambda: len(executed_keys(app)) == 6, what="six runs")
    assert executed_keys(app) == [
        "u-high",
        "v-earlier",
        "z-fifo-1",
        "y-fifo-2",
        "x-fifo-3",
        "w-low",
    ]


def test_worker__a_busy_queue_does_not_starve_a_quiet_one(app: acidic.App) -> None:
    for i in range(50):
        app.enqueue(Note(pause=0.01), key=f"busy-{i:02}", queue="busy")
    app.enqueue(Note(), key="quiet", queue="quiet")
    with background(app, concurrency=1):
        wait_status(app, "quiet", "succeeded")
        order = executed_keys(app)
    # Third at the latest, of 51 (the worker keeps draining busy while this test polls,
    # so how much of busy ran by now says nothing).
    assert order.index("quiet") <= 2, order


def test_worker__a_queue_that_keeps_receiving_runs_does_not_starve_a_quiet_one(
    app: acidic.App,
) -> None:
    # On PostgreSQL every enqueue into busy notifies the worker between its claims; the
    # quiet run was enqueued before the worker listened. Round-robin must still reach it.
    for i in range(3):
        app.enqueue(Note(pause=0.01), key=f"busy-{i:02}", queue="busy")
    app.enqueue(Note(), key="quiet", queue="quiet")
    stop = threading.Event()

    def feed() -> None:
        i = 3
        while not stop.is_set() and i < 400:
            app.enqueue(Note(pause=0.01), key=f"busy-{i:03}", queue="busy")
            i += 1
            stop.wait(0.002)

    feeder = threading.Thread(target=feed, daemon=True)
    with background(app, concurrency=1):
        feeder.start()
        try:
            wait_status(app, "quiet", "succeeded")
        finally:
            stop.set()
            feeder.join(5)
        order = executed_keys(app)
    assert order.index("quiet") <= 2, order


def test_worker__serves_only_its_queues(app: acidic.App) -> None:
    app.enqueue(Note(), key="elsewhere", queue="other")
    with background(app, queues=["quiet"]):
        _sentinel(app, "mine", queue="quiet")
        assert get(app, "elsewhere").status == "pending"
    assert ("elsewhere", "note") not in TIMES


# -- retries -----------------------------------------------------------------------------------


def test_retry__a_step_failing_twice_then_succeeding_takes_three_attempts(
    app: acidic.App,
) -> None:
    app.enqueue(Flaky(failures=2), key="flaky")
    with background(app):
        done = wait_status(app, "flaky", "succeeded", "failed")
    assert (done.status, done.result, done.attempts) == ("succeeded", 3, 3)
    assert [(s, e, a) for s, e, a in events(done) if e != "started"] == [
        ("work", "errored", 1),
        ("work", "errored", 2),
        ("work", "succeeded", 3),
    ]
    assert effect_counts(app.engine, "flaky") == {"work": 1}  # the failures rolled back
    assert done.error is None


def test_retry__exhausted_max_attempts_fail_the_run_for_good(app: acidic.App) -> None:
    app.enqueue(Doomed(), key="doomed")
    with background(app):
        failed = wait_status(app, "doomed", "failed", "succeeded")
        time.sleep(0.2)  # four backoffs of Doomed: it must not be tried again
        _sentinel(app)
        still = get(app, "doomed")
    assert (failed.status, failed.attempts, failed.max_attempts) == ("failed", 2, 2)
    assert failed.error is not None
    assert (failed.error.type, failed.error.step) == ("tests.support.queue.jobs.Boom", "work")
    assert "attempt 2 failed" in failed.error.message
    assert (still.status, still.attempts, still.run_at) == ("failed", 2, None)
    assert len(TIMES["doomed", "work"]) == 2


def test_retry__app_retry_gives_a_failed_run_a_fresh_budget(app: acidic.App) -> None:
    app.enqueue(Doomed(), key="again")
    with background(app):
        wait_status(app, "again", "failed")
        retried = app.retry("again")
        assert retried.status in ("pending", "running", "scheduled", "failed")
        assert retried.max_attempts == 4
        wait_for(lambda: len(TIMES["again", "work"]) == 4, what="two more attempts")
        failed = wait_status(app, "again", "failed")
        time.sleep(0.2)
        _sentinel(app)
    assert (failed.attempts, failed.max_attempts) == (4, 4)
    assert len(TIMES["again", "work"]) == 4
    assert get(app, "again").attempts == 4


def test_retry__a_failed_inline_run_retried_joins_the_default_queue_for_workers(
    app: acidic.App,
) -> None:
    with pytest.raises(Boom):
        app.run(Flaky(failures=1), key="inline-flaky")
    assert get(app, "inline-flaky").queue is None  # app.run's runs belong to no queue
    retried = app.retry("inline-flaky")
    assert (retried.status, retried.queue) == ("pending", "default")
    assert app.drain() == 1  # a worker takes it
    done = get(app, "inline-flaky")
    assert (done.status, done.result, done.attempts) == ("succeeded", 2, 2)


def test_retry__app_retry_of_a_run_that_did_not_fail_raises(app: acidic.App) -> None:
    app.enqueue(Note(), key="fine")
    with pytest.raises(acidic.AcidicError, match="pending"):
        app.retry("fine")
    assert get(app, "fine").max_attempts == 25


def test_retry__discard_on_error_fails_the_run_at_once(app: acidic.App) -> None:
    app.enqueue(Picky(), key="picky")
    with background(app):
        failed = wait_status(app, "picky", "failed", "succeeded")
        _sentinel(app)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.error is not None
    assert failed.error.type == "builtins.ValueError"
    assert len(TIMES["picky", "work"]) == 1


def test_retry__retry_after_schedules_the_run_and_counts_an_attempt(app: acidic.App) -> None:
    # 1 s: the worker must be stopped before the retry falls due, even on a loaded machine.
    app.enqueue(Later(after=1.0), key="later")
    with background(app) as bg:
        wait_for(lambda: bg.worker.processed >= 1, what="the first attempt")
        assert bg.stop() == 0
    parked = get(app, "later")
    assert (parked.status, parked.attempts) == ("scheduled", 1)
    assert parked.error is not None
    assert parked.error.type == "acidic._errors.Retry"
    errored = parked.history[-1]
    assert (errored.event, errored.attempt) == ("errored", 1)
    assert parked.run_at is not None
    assert 0.95 <= seconds(parked.run_at - errored.time) <= 1.1
    with background(app):
        done = wait_status(app, "later", "succeeded")
    assert (done.result, done.attempts) == (2, 2)
    assert TIMES["later", "work"][1] >= parked.run_at


def test_retry__retry_counts_toward_max_attempts(app: acidic.App) -> None:
    app.enqueue(Insistent(), key="insistent")
    with background(app):
        failed = wait_status(app, "insistent", "failed", "succeeded")
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert len(TIMES["insistent", "work"]) == 2


# -- cancel ------------------------------------------------------------------------------------


def test_cancel__pending_run_is_cancelled_and_never_executed(app: acidic.App) -> None:
    app.enqueue(Note(), key="never")
    cancelled = app.cancel("never")
    assert (cancelled.status, cancelled.run_at) == ("cancelled", None)
    assert cancelled.finished_at is not None
    with background(app):
        _sentinel(app)
    assert ("never", "note") not in TIMES
    assert get(app, "never").status == "cancelled"


def _halted(app: acidic.App, key: str) -> None:
    app.enqueue(Gate(), key=key)
    wait_status(app, key, "halted")


def _scheduled(app: acidic.App, key: str) -> None:
    app.enqueue(Napper(seconds=60), key=key)
    wait_status(app, key, "scheduled")


def _failed(app: acidic.App, key: str) -> None:
    app.enqueue(Doomed(), key=key)
    wait_status(app, key, "failed")


@pytest.mark.parametrize(
    "park", [_halted, _scheduled, _failed], ids=["halted", "scheduled", "failed"]
)
def test_cancel__parked_or_failed_run_is_cancelled(
    app: acidic.App, park: Callable[[acidic.App, str], None]
) -> None:
    with background(app):
        park(app, "parked")
        executions = sum(len(v) for (k, _), v in TIMES.items() if k == "parked")
        cancelled = app.cancel("parked")
        assert (cancelled.status, cancelled.run_at) == ("cancelled", None)
        assert cancelled.finished_at is not None
        with pytest.raises(acidic.AcidicError, match="cancelled"):
            app.resume("parked")
        _sentinel(app)
    assert get(app, "parked").status == "cancelled"
    assert sum(len(v) for (k, _), v in TIMES.items() if k == "parked") == executions


def test_cancel__running_run_ends_cancelled_at_its_next_step_boundary(app: acidic.App) -> None:
    app.enqueue(Lingering(seconds=0.5), key="busy")
    with background(app):
        wait_for(lambda: CALLS["busy", "linger"], what="linger to start")
        requested = app.cancel("busy")
        assert requested.status == "running"  # it stops at its next boundary, not now
        cancelled = wait_status(app, "busy", "cancelled", "succeeded")
        _sentinel(app)
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    assert cancelled.lock_expires_at is None
    assert effect_counts(app.engine, "busy") == {"first": 1}
    assert ("busy", "finish") not in TIMES
    assert events(cancelled)[-1] == ("linger", "started", 1)  # linger was not committed
    assert get(app, "busy").status == "cancelled"


def test_cancel__running_run_whose_step_then_fails_ends_cancelled(app: acidic.App) -> None:
    app.enqueue(Stubborn(seconds=0.4), key="stubborn")
    with background(app):
        wait_for(lambda: TIMES["stubborn", "work"], what="work to start")
        assert app.cancel("stubborn").status == "running"
        ended = wait_for(
            lambda: (run := get(app, "stubborn")).status != "running" and run,
            what="the step to end",
        )
        assert ended.status == "cancelled"  # not scheduled for another attempt
        time.sleep(0.4)  # longer than Stubborn's backoff
        _sentinel(app)
    assert get(app, "stubborn").status == "cancelled"
    assert len(TIMES["stubborn", "work"]) == 1


def test_cancel__succeeded_run_is_left_as_it_is(app: acidic.App) -> None:
    app.enqueue(Note(tag="kept"), key="kept")
    with background(app):
        done = wait_status(app, "kept", "succeeded")
    after = app.cancel("kept")
    assert (after.status, after.result, after.finished_at) == (
        "succeeded",
        "kept",
        done.finished_at,
    )
    assert get(app, "kept").status == "succeeded"


def test_cancel__inline_run_of_a_cancelled_key_raises(app: acidic.App) -> None:
    app.enqueue(Note(tag="c"), key="cancelled")
    app.cancel("cancelled")
    with pytest.raises(acidic.RunCancelledError, match="cancelled"):
        app.run(Note(tag="c"), key="cancelled")
    assert ("cancelled", "note") not in TIMES
    assert get(app, "cancelled").status == "cancelled"


@pytest.mark.parametrize(
    "action",
    [
        lambda a: a.resume("missing"),
        lambda a: a.signal("missing", "approved", {"by": "x"}),
        lambda a: a.retry("missing"),
        lambda a: a.cancel("missing"),
    ],
    ids=["resume", "signal", "retry", "cancel"],
)
def test_control__unknown_key_raises(app: acidic.App, action: Callable[[acidic.App], Any]) -> None:
    with pytest.raises(acidic.UnknownKeyError, match="missing"):
        action(app)
    assert count_runs(app) == 0


# -- prune --------------------------------------------------------------------------------------


def _age(app: acidic.App, key: str, age: dt.timedelta) -> None:
    with app.engine.begin() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.idempotency_key == key)
            .values(finished_at=utcnow() - age, created_at=utcnow() - age)
        )


def _insert_runs(app: acidic.App, statuses: dict[str, str], age: dt.timedelta) -> None:
    """Insert runs directly, each with one history row and one signal."""
    at = utcnow() - age
    rows = [
        {
            "idempotency_key": key,
            "job": "queue.Note",
            "args": '{"tag": "", "pause": 0.0}',
            "steps": '["note"]',
            "status": status,
            "recovery_point": None if status in ("succeeded", "cancelled") else "note",
            "ctx": "{}",
            "attempts": 1,
            "created_at": at,
            "finished_at": at,  # even unfinished runs: their status must protect them
            "queue": "busy",
            "priority": 0,
            "run_at": None,
            "cancel_requested": False,
        }
        for key, status in statuses.items()
    ]
    with app.engine.begin() as conn:
        conn.execute(runs.insert(), rows)
        ids = sa.select(runs.c.id).where(runs.c.idempotency_key.in_(list(statuses)))
        conn.execute(
            history.insert().from_select(
                ["run_id", "step", "event", "at", "attempt"],
                sa.select(
                    runs.c.id,
                    sa.literal("note"),
                    sa.literal("started"),
                    runs.c.created_at,
                    sa.literal(1),
                ).where(runs.c.id.in_(ids)),
            )
        )
        conn.execute(
            signals.insert().from_select(
                ["run_id", "name", "payload", "created_at"],
                sa.select(runs.c.id, sa.literal("s"), sa.literal("null"), runs.c.created_at).where(
                    runs.c.id.in_(ids)
                ),
            )
        )


def _counts(app: acidic.App, keys: list[str]) -> tuple[int, int, int]:
    """(runs, history rows, signals) of ``keys``."""
    ids = sa.select(runs.c.id).where(runs.c.idempotency_key.in_(keys))
    with app.engine.connect() as conn:
        return (
            int(conn.execute(sa.select(sa.func.count()).where(runs.c.id.in_(ids))).scalar_one()),
            int(
                conn.execute(
                    sa.select(sa.func.count()).where(history.c.run_id.in_(ids))
                ).scalar_one()
            ),
            int(
                conn.execute(
                    sa.select(sa.func.count()).where(signals.c.run_id.in_(ids))
                ).scalar_one()
            ),
        )


def _history_total(app: acidic.App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(history)).scalar_one())


UNFINISHED = {f"old-{s}": s for s in ("pending", "running", "scheduled", "halted", "failed")}


def test_prune__removes_old_succeeded_and_cancelled_runs_with_their_history(
    app: acidic.App,
) -> None:
    two_hours = dt.timedelta(hours=2)
    app.enqueue(Note(), key="old-done")
    app.enqueue(Note(), key="recent-done")
    app.enqueue(Note(), key="old-cancelled", run_at=utcnow() + dt.timedelta(hours=1))
    with background(app):
        wait_status(app, "old-done", "succeeded")
        wait_status(app, "recent-done", "succeeded")
    app.cancel("old-cancelled")
    app.signal("old-cancelled", "late", 1)
    for key in ("old-done", "old-cancelled"):
        _age(app, key, two_hours)
    _insert_runs(app, UNFINISHED, two_hours)
    _insert_runs(app, {"old-direct-done": "succeeded"}, two_hours)

    removed = ["old-done", "old-cancelled", "old-direct-done"]
    kept = ["recent-done", *UNFINISHED]
    assert _counts(app, removed) == (3, 3, 2)  # old-done's 2 events, old-direct-done's 1
    before_kept = _counts(app, kept)
    assert before_kept == (6, 2 + 5, 5)

    assert app.prune(older_than=3600) == 3

    assert _counts(app, removed) == (0, 0, 0)
    assert _counts(app, kept) == before_kept
    for key, status in UNFINISHED.items():
        assert get(app, key).status == status
    assert app.prune(older_than=3600) == 0


@pytest.mark.parametrize(
    "older_than", [3600, 3600.0, dt.timedelta(hours=1)], ids=["int", "float", "timedelta"]
)
def test_prune__takes_seconds_or_a_timedelta(app: acidic.App, older_than: Any) -> None:
    _insert_runs(app, {"two-hours": "succeeded"}, dt.timedelta(hours=2))
    _insert_runs(app, {"half-hour": "cancelled"}, dt.timedelta(minutes=30))
    assert app.prune(older_than=older_than) == 1
    assert app.get("two-hours") is None
    assert get(app, "half-hour").status == "cancelled"


@pytest.mark.parametrize(
    ("older_than", "error"), [("1h", TypeError), (True, TypeError), (-1, ValueError)]
)
def test_prune__refuses_other_ages(app: acidic.App, older_than: Any, error: type) -> None:
    _insert_runs(app, {"old": "succeeded"}, dt.timedelta(hours=2))
    with pytest.raises(error, match="older_than"):
        app.prune(older_than=older_than)
    assert count_runs(app) == 1


def test_prune__removes_more_than_one_batch(app: acidic.App) -> None:
    bulk = {f"bulk-{i:04}": ("succeeded" if i % 2 else "cancelled") for i in range(2500)}
    _insert_runs(app, bulk, dt.timedelta(days=1))
    _insert_runs(app, {"young": "succeeded"}, dt.timedelta(seconds=1))
    assert count_runs(app) == 2501
    assert _history_total(app) == 2501
    assert app.prune(dt.timedelta(minutes=1)) == 2500
    assert count_runs(app) == 1
    assert _history_total(app) == 1
    assert get(app, "young").status == "succeeded"


# -- graceful stop ------------------------------------------------------------------------------


def test_worker__graceful_stop_releases_the_run_at_its_next_step(app: acidic.App) -> None:
    app.enqueue(Lingering(seconds=0.5), key="drained")
    with background(app) as bg:
        wait_for(lambda: CALLS["drained", "linger"], what="linger to start")
        stopping = time.monotonic()
        assert bg.stop() == 0
        took = time.monotonic() - stopping
    assert took < 1.0  # the rest of linger's sleep, not a grace period
    released = get(app, "drained")
    assert released.status == "pending"
    assert released.recovery_point == "finish"  # the NEXT step
    assert (released.attempts, released.max_attempts) == (1, 26)  # not counted
    assert released.lock_expires_at is None
    assert released.run_at is not None
    assert released.run_at <= utcnow()
    assert events(released) == [
        ("first", "started", 1),
        ("first", "succeeded", 1),
        ("linger", "started", 1),
        ("linger", "succeeded", 1),
    ]
    with background(app):
        done = wait_status(app, "drained", "succeeded")
    assert (done.result, done.attempts) == (2, 2)
    assert effect_counts(app.engine, "drained") == {"first": 1, "finish": 1}
    assert CALLS["drained", "linger"] == 1


def test_worker__expired_grace_returns_a_non_zero_code(app: acidic.App) -> None:
    app.enqueue(Lingering(seconds=0.6), key="slow")
    with background(app, grace=0.1) as bg:
        wait_for(lambda: CALLS["slow", "linger"], what="linger to start")
        stopping = time.monotonic()
        assert bg.stop() != 0
        assert time.monotonic() - stopping < 0.5  # the grace, not the step
    # The step still ends at its boundary in this process and hands the run back.
    released = wait_status(app, "slow", "pending")
    assert (released.recovery_point, released.attempts) == ("finish", 1)


def test_worker__a_run_claimed_by_an_executor_during_a_stop_is_handed_back(
    app: acidic.App,
) -> None:
    # An executor that finished a run claims the next one itself; if the worker is
    # asked to stop while that claim is under way, the run is handed back untouched.
    app.enqueue(Note(), key="claimed-while-stopping")
    worker = app.worker()
    worker.stop()
    assert worker._claim_for_executor() is None
    run = get(app, "claimed-while-stopping")
    assert run.status == "pending"
    assert run.attempts == 0  # nothing ran: no attempt used up
    assert run.history == []
    assert executed_keys(app) == []
    with background(app, concurrency=1):  # and any worker runs it
        wait_status(app, "claimed-while-stopping", "succeeded")


def test_worker__stops_with_code_0_when_idle(app: acidic.App) -> None:
    with background(app) as bg:
        _sentinel(app)
        assert bg.stop() == 0
    assert bg.worker.processed == 1


# -- takeover, several workers, latency -----------------------------------------------------


def test_worker__takes_over_a_run_whose_owner_died(app: acidic.App) -> None:
    app.enqueue(Lingering(seconds=0.0), key="orphan")
    leave_as_crashed(app, "orphan", attempts=1)
    with background(app):
        done = wait_status(app, "orphan", "succeeded")
    assert (done.result, done.attempts) == (2, 2)
    assert events(done)[0] == ("first", "started", 1)  # the dead owner's
    assert events(done)[1:] == [
        (step, event, 2)
        for step in ("first", "linger", "finish")
        for event in ("started", "succeeded")
    ]
    assert effect_counts(app.engine, "orphan") == {"first": 1, "finish": 1}


def test_worker__takeover_after_the_last_attempt_fails_the_run(app: acidic.App) -> None:
    # A worker died during the run's 25th and last attempt (CONTRACT: a takeover
    # counts as an attempt, "so a job that keeps killing its worker ends failed"):
    # taking it over would be a 26th attempt, so the run must end failed unrun.
    app.enqueue(Note(tag="killer"), key="killer")
    leave_as_crashed(app, "killer", attempts=25)
    with background(app):
        ended = wait_status(app, "killer", "failed", "succeeded", timeout=3)
        _sentinel(app)
    assert ("killer", "note") not in TIMES  # not run a 26th time
    assert ended.status == "failed"
    assert ended.error is not None
    assert ended.error.step == "note"


def test_worker__several_workers_run_each_run_exactly_once(app: acidic.App) -> None:
    keys = [f"many-{i:02}" for i in range(24)]
    for key in keys:
        app.enqueue(Note(), key=key)
    with background(app, concurrency=4), background(app, concurrency=4):
        wait_for(lambda: len(executed_keys(app)) >= 24, what="all runs")
        _sentinel(app)
    assert sorted(k for k in executed_keys(app) if k != "sentinel") == keys
    assert all(len(TIMES[k, "note"]) == 1 for k in keys)
    assert {get(app, k).attempts for k in keys} == {1}
