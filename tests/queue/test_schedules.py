"""Issue 3, time and waiting: ``run_at``, ``Sleep``, ``Halt`` with ``resume`` and
``signal``, the attempt budget across parking, and the durability of schedules
across worker stops. Workers run in-process in a thread, as in ``test_queue.py``.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

import acidic
from tests.support.jobs import effect_counts
from tests.support.queue.jobs import (
    READ,
    SENT,
    TIMES,
    Flaky,
    Gate,
    Napper,
    Note,
    ParkThenFlaky,
    Racy,
    SleepLast,
    background,
    events,
    get,
    seconds,
    utcnow,
    wait_for,
    wait_status,
)

#: How late a due run may start (poll 0.05 s, a loaded machine): generous but far
#: below any wrong behaviour these tests look for.
LATE = 0.5


def _first(key: str, step: str) -> dt.datetime:
    return TIMES[key, step][0]


# -- run_at ------------------------------------------------------------------------------


#: Every test once per flavour of step (sync, async, ORM session, async ORM session).
pytestmark = pytest.mark.usefixtures("flavour")


def test_run_at__not_run_before_it_and_run_soon_after_it(app: acidic.App) -> None:
    at = utcnow() + dt.timedelta(seconds=0.6)
    app.enqueue(Note(tag="later"), key="later", run_at=at)
    with background(app):
        time.sleep(0.1)
        assert get(app, "later").status == "pending"
        done = wait_status(app, "later", "succeeded")
    started = _first("later", "note")
    assert at <= started <= at + dt.timedelta(seconds=LATE)
    assert done.result == "later"


@pytest.mark.parametrize("what", ["run_at", "sleep", "backoff"])
def test_worker__wakes_when_the_earliest_due_time_comes_not_at_the_next_poll(
    app: acidic.App, what: str
) -> None:
    # With a 5 s poll interval, only waking for the due time can start it in time.
    if what == "run_at":
        due = utcnow() + dt.timedelta(seconds=0.4)
        app.enqueue(Note(), key="w", run_at=due)
        step = "note"
    elif what == "sleep":
        app.enqueue(Napper(seconds=0.4), key="w")
        step = "after"
    else:
        app.enqueue(Flaky(failures=1, delay=0.4), key="w")
        step = "work"
    with background(app, poll_interval=5.0):
        if what != "run_at":
            parked = wait_status(app, "w", "scheduled")
            assert parked.run_at is not None
            due = parked.run_at
        done = wait_status(app, "w", "succeeded", timeout=3)
    started = TIMES["w", step][-1]
    assert due <= started <= due + dt.timedelta(seconds=LATE)
    assert done.status == "succeeded"


# -- Sleep -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["seconds", "timedelta", "until"])
def test_sleep__parks_the_run_frees_the_worker_and_resumes_at_the_next_step(
    app: acidic.App, how: str
) -> None:
    # Long enough for another run to start and finish meanwhile on a loaded machine.
    until = utcnow() + dt.timedelta(seconds=1.2)
    job = Napper(how=how, seconds=1.0, until=until.isoformat())
    app.enqueue(job, key="nap")
    with background(app, concurrency=1):
        parked = wait_status(app, "nap", "scheduled")
        slept_at = _first("nap", "before")
        # Parked: the worker is free for another run meanwhile.
        app.enqueue(Note(tag="meanwhile"), key="meanwhile")
        wait_status(app, "meanwhile", "succeeded")
        assert get(app, "nap").status == "scheduled"
        done = wait_status(app, "nap", "succeeded", timeout=3)
    assert parked.recovery_point == "after"  # the NEXT step
    assert parked.lock_expires_at is None
    assert parked.run_at is not None
    if how == "until":
        assert parked.run_at == until
    else:
        assert 1.0 <= seconds(parked.run_at - slept_at) <= 1.0 + LATE
    woke = _first("nap", "after")
    assert parked.run_at <= woke <= parked.run_at + dt.timedelta(seconds=LATE)
    assert _first("meanwhile", "note") < parked.run_at
    assert done.result == "awake"
    assert effect_counts(app.engine, "nap") == {"before": 1, "after": 1}
    assert [(s, e) for s, e, _ in events(done)] == [
        ("before", "started"),
        ("before", "succeeded"),
        ("after", "started"),
        ("after", "succeeded"),
    ]


def test_sleep__from_the_last_step_raises_job_definition_error(app: acidic.App) -> None:
    with pytest.raises(acidic.JobDefinitionError, match="last step"):
        app.run(SleepLast(), key="inline-last")
    assert effect_counts(app.engine, "inline-last") == {}  # the step rolled back

    app.enqueue(SleepLast(), key="queued-last")
    with background(app):
        failed = wait_status(app, "queued-last", "failed", "succeeded", "scheduled")
    assert failed.status == "failed"  # SleepLast has one attempt
    assert failed.error is not None
    assert failed.error.type == "acidic._errors.JobDefinitionError"
    assert effect_counts(app.engine, "queued-last") == {}


def test_sleep__inline_run_returns_none_until_due_then_continues(app: acidic.App) -> None:
    assert app.run(Napper(seconds=0.4), key="inline-nap") is None
    parked = get(app, "inline-nap")
    assert (parked.status, parked.recovery_point) == ("scheduled", "after")
    assert parked.run_at is not None

    assert app.run(Napper(seconds=0.4), key="inline-nap") is None  # before run_at
    assert ("inline-nap", "after") not in TIMES
    assert get(app, "inline-nap").status == "scheduled"

    time.sleep(max(seconds(parked.run_at - utcnow()), 0) + 0.01)
    assert app.run(Napper(seconds=0.4), key="inline-nap") == "awake"
    assert effect_counts(app.engine, "inline-nap") == {"before": 1, "after": 1}


def test_sleep__inline_run_parked_by_sleep_is_continued_by_a_worker(app: acidic.App) -> None:
    with background(app):
        # The worker up and claiming first: its start-up (seconds on a loaded machine)
        # is not what the bound below measures.
        app.enqueue(Note(tag="ready"), key="ready")
        wait_status(app, "ready", "succeeded")
        assert app.run(Napper(seconds=0.4), key="handoff") is None
        parked = get(app, "handoff")
        assert (parked.status, parked.queue) == ("scheduled", "default")
        assert parked.run_at is not None
        done = wait_status(app, "handoff", "succeeded", timeout=3)
    woke = _first("handoff", "after")
    assert parked.run_at <= woke <= parked.run_at + dt.timedelta(seconds=LATE)
    assert effect_counts(app.engine, "handoff") == {"before": 1, "after": 1}
    assert done.result == "awake"


def test_run_at__inline_run_before_run_at_returns_none_without_running(
    app: acidic.App,
) -> None:
    app.enqueue(Note(tag="early"), key="not-yet", run_at=utcnow() + dt.timedelta(minutes=1))
    assert app.run(Note(tag="early"), key="not-yet") is None
    assert ("not-yet", "note") not in TIMES
    run = get(app, "not-yet")
    assert (run.status, run.attempts) == ("pending", 0)


def test_resume__wakes_a_sleeping_run_now(app: acidic.App) -> None:
    app.enqueue(Napper(seconds=60), key="long-nap")
    with background(app):
        wait_status(app, "long-nap", "scheduled")
        resumed_at = utcnow()
        woken = app.resume("long-nap")
        assert woken.status in ("pending", "running", "succeeded")
        done = wait_status(app, "long-nap", "succeeded")
    assert _first("long-nap", "after") - resumed_at < dt.timedelta(seconds=LATE)
    assert effect_counts(app.engine, "long-nap") == {"before": 1, "after": 1}
    assert done.result == "awake"


# -- Halt, resume, signal ---------------------------------------------------------------------


def test_halt__resume_continues_at_the_same_step(app: acidic.App) -> None:
    app.enqueue(Gate(), key="gate")
    with background(app):
        halted = wait_status(app, "gate", "halted")
        time.sleep(0.15)  # three polls: a halted run is not picked up by itself
        assert get(app, "gate").status == "halted"
        resumed = app.resume("gate")
        assert resumed.status in ("pending", "running", "succeeded")
        done = wait_status(app, "gate", "succeeded")
    assert (halted.recovery_point, halted.run_at, halted.lock_expires_at) == ("wait", None, None)
    assert done.result == {"passes": 2, "unknown": None, "approval": None}
    assert effect_counts(app.engine, "gate") == {"prepare": 1, "wait": 2, "finish": 1}


def test_signal__wakes_a_halted_run_and_delivers_the_payload(app: acidic.App) -> None:
    app.enqueue(Gate(), key="gate")
    with background(app):
        wait_status(app, "gate", "halted")
        signalled = app.signal("gate", "approved", {"by": "x"})
        assert signalled.status in ("pending", "running", "succeeded")
        done = wait_status(app, "gate", "succeeded")
    assert done.result == {"passes": 2, "unknown": None, "approval": {"by": "x"}}
    assert effect_counts(app.engine, "gate") == {"prepare": 1, "wait": 2, "finish": 1}


def test_halt__inline_halted_run_is_continued_by_a_worker_after_a_signal(
    app: acidic.App,
) -> None:
    assert app.run(Gate(), key="inline-gate") is None
    assert get(app, "inline-gate").status == "halted"
    with background(app):
        app.signal("inline-gate", "approved", {"by": "worker"})
        done = wait_status(app, "inline-gate", "succeeded")
    assert done.result == {"passes": 2, "unknown": None, "approval": {"by": "worker"}}
    assert effect_counts(app.engine, "inline-gate") == {"prepare": 1, "wait": 2, "finish": 1}


def test_signal__sent_before_the_run_halts_is_kept_and_the_latest_wins(
    app: acidic.App,
) -> None:
    app.enqueue(Gate(), key="early")
    assert app.signal("early", "approved", {"by": "a"}).status == "pending"
    assert app.signal("early", "approved", {"by": "x"}).status == "pending"
    with background(app):
        done = wait_status(app, "early", "succeeded", "halted")
    assert done.status == "succeeded"  # it never halted
    assert done.result == {"passes": 1, "unknown": None, "approval": {"by": "x"}}
    assert "halted" not in [e for _, e, _ in events(done)]


def test_signal__delivered_while_the_step_decides_to_halt_still_wakes_the_run(
    app: acidic.App,
) -> None:
    # The step read no signal, then the signal is delivered (the run is running, so
    # there is nothing to wake yet), then the step halts: the stored signal is there
    # for the run, which must not stay halted waiting for a signal it already has.
    app.enqueue(Racy(), key="racy")
    with background(app):
        wait_for(READ.is_set, what="the step to read no signal")
        assert app.signal("racy", "go", 42).status == "running"
        SENT.set()
        ended = wait_status(app, "racy", "succeeded", "halted", timeout=3)
        if ended.status == "halted":
            time.sleep(0.3)  # give any wake-up a chance before judging
            ended = get(app, "racy")
    assert ended.status == "succeeded"
    assert ended.result == 42


def test_signal__does_not_wake_a_sleeping_run(app: acidic.App) -> None:
    app.enqueue(Napper(seconds=60), key="sleeper")
    with background(app):
        parked = wait_status(app, "sleeper", "scheduled")
        after = app.signal("sleeper", "approved", {"by": "x"})
        assert (after.status, after.run_at) == ("scheduled", parked.run_at)
        time.sleep(0.15)
        assert get(app, "sleeper").status == "scheduled"
    assert ("sleeper", "after") not in TIMES


@pytest.mark.parametrize(
    ("name", "payload", "error"),
    [
        ("", 1, acidic.AcidicError),
        ("x" * 300, 1, acidic.AcidicError),
        ("ok", object(), acidic.SerializationError),
    ],
    ids=["empty name", "long name", "non-JSON payload"],
)
def test_signal__bad_name_or_payload_raises_and_delivers_nothing(
    app: acidic.App, name: str, payload: object, error: type[Exception]
) -> None:
    app.enqueue(Gate(), key="gate")
    with pytest.raises(error):
        app.signal("gate", name, payload)
    app.signal("gate", "approved", "only this one")
    with background(app):
        done = wait_status(app, "gate", "succeeded", "halted")
    assert done.result["approval"] == "only this one"


@pytest.mark.parametrize("status", ["pending", "succeeded"])
def test_resume__of_a_run_that_is_not_parked_raises(app: acidic.App, status: str) -> None:
    if status == "succeeded":
        app.run(Note(tag="done"), key="k")
    else:
        app.enqueue(Note(tag="done"), key="k")
    with pytest.raises(acidic.AcidicError, match=status):
        app.resume("k")
    assert get(app, "k").status == status


def test_outcomes__durations_take_seconds_or_a_timedelta() -> None:
    assert acidic.Sleep(dt.timedelta(milliseconds=1500)).seconds == 1.5
    assert acidic.Sleep(2).seconds == 2.0
    assert acidic.Retry(after=dt.timedelta(seconds=3)).after == 3.0
    assert acidic.Retry(after=0.25).after == 0.25
    with pytest.raises(ValueError, match="timezone"):
        acidic.Sleep(until=dt.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="either"):
        acidic.Sleep()
    with pytest.raises(ValueError, match="Retry"):
        acidic.Retry(after=-1)


# -- the attempt budget across parking ---------------------------------------------------------


@pytest.mark.parametrize("how", ["sleep", "halt"])
def test_attempts__waking_from_a_sleep_or_halt_does_not_use_up_the_budget(
    app: acidic.App, how: str
) -> None:
    # CONTRACT "Attempts": a Retry and an error count toward max_attempts (and a
    # takeover); a run that only slept or halted has had no failed attempt, so its
    # first error must be retried (ParkThenFlaky has max_attempts = 2).
    app.enqueue(ParkThenFlaky(how=how), key="park")
    with background(app):
        if how == "halt":
            wait_status(app, "park", "halted")
            app.resume("park")
        ended = wait_status(app, "park", "succeeded", "failed")
    assert ended.status == "succeeded", ended.error and ended.error.message
    assert len(TIMES["park", "work"]) == 2
    assert [(s, e) for s, e, _ in events(ended) if e == "errored"] == [("work", "errored")]


# -- durability across worker stops ------------------------------------------------------------


def test_durability__run_at_survives_a_worker_stop(app: acidic.App) -> None:
    at = utcnow() + dt.timedelta(seconds=1)
    app.enqueue(Note(tag="durable"), key="durable", run_at=at)
    with background(app):
        time.sleep(0.2)
    assert get(app, "durable").status == "pending"
    assert ("durable", "note") not in TIMES
    with background(app):
        done = wait_status(app, "durable", "succeeded", timeout=3)
    assert at <= _first("durable", "note") <= at + dt.timedelta(seconds=LATE)
    assert done.attempts == 1


def test_durability__retry_backoff_survives_a_worker_stop(app: acidic.App) -> None:
    # Long enough for a loaded CI machine to stop the worker before it is due (0.8 s was not).
    app.enqueue(Flaky(failures=1, delay=1.5), key="backoff")
    with background(app) as bg:
        parked = wait_status(app, "backoff", "scheduled")
        assert bg.stop() == 0
    assert parked.run_at is not None
    assert get(app, "backoff").status == "scheduled"
    assert utcnow() < parked.run_at  # stopped before it was due
    with background(app):
        done = wait_status(app, "backoff", "succeeded", timeout=4)
    retried = TIMES["backoff", "work"][1]
    assert parked.run_at <= retried <= parked.run_at + dt.timedelta(seconds=LATE)
    assert (done.result, done.attempts) == (2, 2)


def test_durability__sleep_survives_a_worker_stop(app: acidic.App) -> None:
    app.enqueue(Napper(seconds=1.5), key="asleep")  # see the backoff test above
    with background(app) as bg:
        parked = wait_status(app, "asleep", "scheduled")
        assert bg.stop() == 0
    assert parked.run_at is not None
    assert utcnow() < parked.run_at
    with background(app):
        done = wait_status(app, "asleep", "succeeded", timeout=4)
    woke = _first("asleep", "after")
    assert parked.run_at <= woke <= parked.run_at + dt.timedelta(seconds=LATE)
    assert effect_counts(app.engine, "asleep") == {"before": 1, "after": 1}
    assert done.result == "awake"
