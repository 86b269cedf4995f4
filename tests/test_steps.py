"""The step protocol: a step's error is stored and re-raised, and the next run of the
key resumes at the failed step; context and ``tx`` writes commit with their step or
not at all; Halt, RecoveryPoint and Response; step keys, attempts and ``retrying``.

The jobs below are used only here. Their behaviour is steered per test through the
module-level sets ``FAIL`` and ``HALT`` (step names), and what each step saw while it
ran is appended to ``SEEN``; the autouse fixture resets all of them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from acidic.testing import crash_points
from tests.support.jobs import effect_counts, effects, get_run, migrated_app


class Boom(Exception):
    """What a step raises when its name is in ``FAIL``."""


@dataclass(frozen=True)
class Seen:
    """What one step execution saw through its job's step attributes."""

    step: str
    key: str
    attempt: int
    retrying: bool
    step_key: str
    ctx: dict[str, Any]


FAIL: set[str] = set()
HALT: set[str] = set()
SEEN: list[Seen] = []
RAISED: list[BaseException] = []
CALLS: Counter[str] = Counter()  # non-transactional step executions, by step
LOOP_FAIL_AT: set[int] = set()  # Looper.body raises on these passes (1-based)


def _visit(job: acidic.Job, name: str, tx: sa.Connection | None) -> acidic.Halt | None:
    """A step's body: observe, write an effect through ``tx``, change ctx, then maybe
    raise or halt."""
    SEEN.append(Seen(name, job.key, job.attempt, job.retrying, job.step_key, dict(job.ctx)))
    if tx is None:
        CALLS[name] += 1
    else:
        tx.execute(effects.insert().values(run_key=job.key, step=name))
    job.ctx[name] = job.attempt
    job.ctx["last"] = name
    if name in FAIL:
        exc = Boom(f"{name} failed")
        RAISED.append(exc)
        raise exc
    if name in HALT:
        return acidic.Halt()
    return None


class Pipeline(acidic.Job):
    """one (tx), two (tx), three (no tx), four (tx, responds with the context)."""

    n: int = 1

    @acidic.step
    def one(self, tx: sa.Connection) -> acidic.Halt | None:
        return _visit(self, "one", tx)

    @acidic.step
    def two(self, tx: sa.Connection) -> acidic.Halt | None:
        return _visit(self, "two", tx)

    @acidic.step(transactional=False)
    def three(self) -> acidic.Halt | None:
        return _visit(self, "three", None)

    @acidic.step
    def four(self, tx: sa.Connection) -> acidic.Response | acidic.Halt:
        halted = _visit(self, "four", tx)
        return halted or acidic.Response(dict(self.ctx))


class Jumper(acidic.Job):
    """start jumps over ``skipped`` straight to ``finish``."""

    @acidic.step
    def start(self, tx: sa.Connection) -> acidic.RecoveryPoint:
        _visit(self, "start", tx)
        return acidic.RecoveryPoint("finish")

    @acidic.step
    def skipped(self, tx: sa.Connection) -> None:
        _visit(self, "skipped", tx)

    @acidic.step
    def finish(self, tx: sa.Connection) -> acidic.Response:
        _visit(self, "finish", tx)
        return acidic.Response("finished")


class Looper(acidic.Job):
    """``body`` loops back to itself until it has run ``times`` times."""

    times: int = 3

    @acidic.step
    def init(self, tx: sa.Connection) -> None:
        _visit(self, "init", tx)
        self.ctx["i"] = 0

    @acidic.step
    def body(self, tx: sa.Connection) -> acidic.RecoveryPoint | None:
        _visit(self, "body", tx)
        self.ctx["i"] += 1
        if self.ctx["i"] in LOOP_FAIL_AT:  # fail after changing, adding and deleting
            del self.ctx["init"]
            self.ctx["failing"] = True
            raise Boom(f"pass {self.ctx['i']} failed")
        if self.ctx["i"] < self.times:
            return acidic.RecoveryPoint("body")
        return None

    @acidic.step
    def done(self, tx: sa.Connection) -> acidic.Response:
        _visit(self, "done", tx)
        return acidic.Response(self.ctx["i"])


class LostJump(acidic.Job):
    """jump returns a RecoveryPoint to a step that does not exist."""

    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        _visit(self, "first", tx)

    @acidic.step
    def jump(self, tx: sa.Connection) -> acidic.RecoveryPoint:
        _visit(self, "jump", tx)
        return acidic.RecoveryPoint("nowhere")


class Early(acidic.Job):
    """first finishes the run with a Response; later never runs."""

    @acidic.step
    def first(self, tx: sa.Connection) -> acidic.Response:
        _visit(self, "first", tx)
        return acidic.Response("early")

    @acidic.step
    def later(self, tx: sa.Connection) -> acidic.Response:
        _visit(self, "later", tx)
        return acidic.Response("late")

    @acidic.step(transactional=False)
    def latest(self) -> None:
        _visit(self, "latest", None)


class BadReturn(acidic.Job):
    """``bad`` returns something a step may not return (tx or not, by ``transactional``)."""

    transactional: bool = True

    @acidic.step
    def bad(self, tx: sa.Connection) -> Any:
        _visit(self, "bad", tx)
        return 42 if self.transactional else None

    @acidic.step(transactional=False)
    def bad_foreign(self) -> Any:
        _visit(self, "bad_foreign", None)
        return "not an outcome"


class Valued(acidic.Job):
    """Responds with values of every tagged type."""

    @acidic.step
    def respond(self, tx: sa.Connection) -> acidic.Response:
        _visit(self, "respond", tx)
        return acidic.Response(RESPONSE_VALUE)


RESPONSE_VALUE: dict[str, Any] = {
    "aware": dt.datetime(
        2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
    ),
    "utc": dt.datetime(2024, 1, 1, 0, 0, tzinfo=dt.UTC),
    "naive": dt.datetime(2024, 1, 2, 3, 4, 5, 6),
    "day": dt.date(2024, 3, 1),
    "amount": Decimal("12.50"),
    "tiny": Decimal("-0.000000000000000000000001"),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "nested": {"list": [Decimal("1.10"), dt.date(2000, 1, 1)]},
    "pair": (1, "two"),
}


class SelfCommit(acidic.Job):
    """A transactional step that ends acidic's transaction itself (``how``)."""

    how: str = "commit"

    @acidic.step
    def sneaky(self, tx: sa.Connection) -> None:
        _visit(self, "sneaky", tx)
        if self.how == "commit":
            tx.commit()
        else:
            tx.rollback()

    @acidic.step
    def after(self, tx: sa.Connection) -> None:
        _visit(self, "after", tx)


JOBS: dict[str, type[acidic.Job]] = {
    "steps.Pipeline": Pipeline,
    "steps.Jumper": Jumper,
    "steps.Looper": Looper,
    "steps.LostJump": LostJump,
    "steps.Early": Early,
    "steps.BadReturn": BadReturn,
    "steps.Valued": Valued,
    "steps.SelfCommit": SelfCommit,
}


#: Every test once per flavour of step (sync, async, ORM session, async ORM session).
pytestmark = pytest.mark.usefixtures("flavour")


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    for state in (FAIL, HALT, SEEN, RAISED, CALLS, LOOP_FAIL_AT):
        state.clear()
    yield
    for state in (FAIL, HALT, SEEN, RAISED, CALLS, LOOP_FAIL_AT):
        state.clear()


@pytest.fixture
def steps_app(database_url: str) -> Iterator[acidic.App]:
    """A migrated App on a fresh database with this module's jobs registered."""
    with migrated_app(database_url, JOBS) as app:
        yield app


_get = get_run


def _events(run: acidic.Run) -> list[tuple[str, str]]:
    return [(e.step, e.event) for e in run.history]


def _fail_once(app: acidic.App, step: str, key: str = "k") -> None:
    """Run Pipeline under ``key`` with ``step`` failing, then let it succeed next time."""
    FAIL.add(step)
    with pytest.raises(Boom):
        app.run(Pipeline(), key=key)
    FAIL.clear()


# -- a step raises ---------------------------------------------------------------------


def test_step_error__exception_propagates_unchanged(steps_app: acidic.App) -> None:
    FAIL.add("two")

    with pytest.raises(Boom) as caught:
        steps_app.run(Pipeline(), key="k")

    assert type(caught.value) is Boom
    assert caught.value is RAISED[0]
    assert str(caught.value) == "two failed"
    assert not getattr(caught.value, "__notes__", None)


def test_step_error__stored_with_type_message_traceback_and_step(steps_app: acidic.App) -> None:
    FAIL.add("two")
    with pytest.raises(Boom):
        steps_app.run(Pipeline(), key="k")

    run = _get(steps_app, "k")
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.type == f"{Boom.__module__}.Boom"
    assert run.error.message == "two failed"
    assert run.error.step == "two"
    assert "Traceback (most recent call last)" in run.error.traceback
    assert "in two" in run.error.traceback
    assert run.error.traceback.rstrip().endswith("Boom: two failed")
    errored = run.history[-1]
    assert (errored.step, errored.event) == ("two", "errored")
    assert errored.error == run.error


def test_step_error__recovery_point_stays_and_lock_released_at_once(
    steps_app: acidic.App,
) -> None:
    FAIL.add("two")
    with pytest.raises(Boom):
        steps_app.run(Pipeline(), key="k")

    run = _get(steps_app, "k")
    assert run.recovery_point == "two"
    assert run.locked_at is None
    assert run.finished_at is None
    # An immediate re-run is not refused as locked: it runs the step again.
    with pytest.raises(Boom):
        steps_app.run(Pipeline(), key="k")
    assert len(RAISED) == 2
    assert _get(steps_app, "k").attempts == 2


def test_step_error__rerun_resumes_at_failed_step_without_rerunning_earlier(
    steps_app: acidic.App,
) -> None:
    _fail_once(steps_app, "two")
    assert effect_counts(steps_app.engine, "k") == {"one": 1}
    SEEN.clear()

    result = steps_app.run(Pipeline(), key="k")

    assert [s.step for s in SEEN] == ["two", "three", "four"]
    assert effect_counts(steps_app.engine, "k") == {"one": 1, "two": 1, "four": 1}
    assert CALLS == {"three": 1}
    assert result == {"one": 1, "two": 2, "three": 2, "four": 2, "last": "four"}


def test_step_error__rerun_resumes_at_failed_non_transactional_step(
    steps_app: acidic.App,
) -> None:
    _fail_once(steps_app, "three")
    assert effect_counts(steps_app.engine, "k") == {"one": 1, "two": 1}
    assert _get(steps_app, "k").recovery_point == "three"

    steps_app.run(Pipeline(), key="k")

    assert [s.step for s in SEEN] == ["one", "two", "three", "three", "four"]
    assert effect_counts(steps_app.engine, "k") == {"one": 1, "two": 1, "four": 1}
    assert CALLS == {"three": 2}  # at-least-once: the failed call and its retry


def test_step_error__success_after_rerun_clears_stored_error(steps_app: acidic.App) -> None:
    _fail_once(steps_app, "two")
    assert _get(steps_app, "k").error is not None

    steps_app.run(Pipeline(), key="k")

    run = _get(steps_app, "k")
    assert run.status == "succeeded"
    assert run.error is None
    assert run.recovery_point is None
    assert run.finished_at is not None


def test_step_error__history_shows_errored_then_started_succeeded(steps_app: acidic.App) -> None:
    _fail_once(steps_app, "two")
    steps_app.run(Pipeline(), key="k")

    run = _get(steps_app, "k")
    assert [(e.step, e.event, e.attempt) for e in run.history] == [
        ("one", "started", 1),
        ("one", "succeeded", 1),
        ("two", "started", 1),
        ("two", "errored", 1),
        ("two", "started", 2),
        ("two", "succeeded", 2),
        ("three", "started", 2),
        ("three", "succeeded", 2),
        ("four", "started", 2),
        ("four", "succeeded", 2),
    ]
    assert [e.error is not None for e in run.history] == [False] * 3 + [True] + [False] * 6
    times = [e.time for e in run.history]
    assert times == sorted(times)


def test_attempts__increment_per_run_and_match_self_attempt(steps_app: acidic.App) -> None:
    FAIL.add("two")
    for _ in range(2):
        with pytest.raises(Boom):
            steps_app.run(Pipeline(), key="k")
    assert _get(steps_app, "k").attempts == 2
    FAIL.clear()

    steps_app.run(Pipeline(), key="k")
    steps_app.run(Pipeline(), key="k")  # finished: returns the stored result, no attempt

    assert _get(steps_app, "k").attempts == 3
    assert [(s.step, s.attempt) for s in SEEN] == [
        ("one", 1),
        ("two", 1),
        ("two", 2),
        ("two", 3),
        ("three", 3),
        ("four", 3),
    ]


def test_retrying__true_only_for_the_step_that_failed_before(steps_app: acidic.App) -> None:
    _fail_once(steps_app, "two")
    steps_app.run(Pipeline(), key="k")

    assert [(s.step, s.attempt, s.retrying) for s in SEEN] == [
        ("one", 1, False),
        ("two", 1, False),
        ("two", 2, True),
        ("three", 2, False),
        ("four", 2, False),
    ]


def test_retrying__true_for_a_failed_non_transactional_step(steps_app: acidic.App) -> None:
    _fail_once(steps_app, "three")
    steps_app.run(Pipeline(), key="k")

    assert [(s.step, s.retrying) for s in SEEN] == [
        ("one", False),
        ("two", False),
        ("three", False),
        ("three", True),
        ("four", False),
    ]


def test_started__of_a_non_transactional_step_commits_with_the_step_before_it(
    steps_app: acidic.App,
) -> None:
    steps_app.run(Pipeline(), key="k")

    history = _get(steps_app, "k").history
    assert [(e.step, e.event) for e in history] == [
        (step, event)
        for step in ("one", "two", "three", "four")
        for event in ("started", "succeeded")
    ]
    two_ended, three_started = history[3], history[4]
    # One transaction: two's commit records three's start (no write of its own).
    assert three_started.time == two_ended.time


def test_retrying__true_after_a_crash_between_the_step_before_and_the_call(
    steps_app: acidic.App,
) -> None:
    # The crash after two's commit, before three is called: three's start is committed
    # already, so three runs with retrying true ("the call may have been made").
    crashes = crash_points(
        steps_app,
        Pipeline(),
        where=lambda p: p.step == "two" and p.kind == "acknowledgement",
    )
    crashed = [c for c in crashes if c.crashed]

    assert len(crashed) == 1
    assert crashed[0].run.status == "succeeded"
    seen = [(s.step, s.retrying) for s in SEEN if s.key == crashed[0].key]
    assert seen == [("one", False), ("two", False), ("three", True), ("four", False)]


# -- context ---------------------------------------------------------------------------


def test_ctx__persisted_across_steps_and_across_runs(steps_app: acidic.App) -> None:
    _fail_once(steps_app, "three")
    assert _get(steps_app, "k").ctx == {"one": 1, "two": 1, "last": "two"}

    result = steps_app.run(Pipeline(), key="k")

    ctx_seen = {s.step: s.ctx for s in SEEN}
    assert ctx_seen["one"] == {}
    assert ctx_seen["four"] == {"one": 1, "two": 1, "three": 2, "last": "three"}
    final = {"one": 1, "two": 1, "three": 2, "four": 2, "last": "four"}
    assert result == final
    assert _get(steps_app, "k").ctx == final


@pytest.mark.parametrize("step", ["two", "three"], ids=["transactional", "non_transactional"])
def test_ctx__changes_of_a_failing_step_are_discarded(steps_app: acidic.App, step: str) -> None:
    _fail_once(steps_app, step)
    committed = {"one": 1, "last": "one"} if step == "two" else {"one": 1, "two": 1, "last": "two"}
    assert _get(steps_app, "k").ctx == committed

    steps_app.run(Pipeline(), key="k")

    retried = [s for s in SEEN if s.step == step]
    assert [s.ctx for s in retried] == [committed, committed]


def test_ctx__failing_step_cannot_delete_or_change_committed_values(
    steps_app: acidic.App,
) -> None:
    LOOP_FAIL_AT.add(1)
    with pytest.raises(Boom):
        steps_app.run(Looper(), key="loop")

    run = _get(steps_app, "loop")
    assert run.ctx == {"init": 1, "last": "init", "i": 0}
    assert run.recovery_point == "body"


# -- transactions ----------------------------------------------------------------------


def test_tx__writes_of_a_raising_step_are_rolled_back(steps_app: acidic.App) -> None:
    FAIL.add("two")
    with pytest.raises(Boom):
        steps_app.run(Pipeline(), key="k")

    assert [s.step for s in SEEN] == ["one", "two"]  # two did write before raising
    assert effect_counts(steps_app.engine, "k") == {"one": 1}


@pytest.mark.parametrize("how", ["commit", "rollback"])
def test_tx__step_ending_its_own_transaction_is_refused(steps_app: acidic.App, how: str) -> None:
    with pytest.raises(acidic.JobDefinitionError) as caught:
        steps_app.run(SelfCommit(how=how), key="k")

    assert "sneaky" in str(caught.value)
    run = _get(steps_app, "k")
    assert run.status == "failed"
    assert run.recovery_point == "sneaky"
    assert run.error is not None
    assert run.error.type == "acidic._errors.JobDefinitionError"
    assert run.error.step == "sneaky"
    assert run.ctx == {}
    assert [s.step for s in SEEN] == ["sneaky"]


def test_tx__writes_before_a_step_commits_itself_are_not_kept(steps_app: acidic.App) -> None:
    """A step's writes commit together with its progress or not at all: a refused step
    that called tx.commit() must not leave its writes behind while its recovery point
    stays on it (the next run would write them a second time)."""
    with pytest.raises(acidic.JobDefinitionError):
        steps_app.run(SelfCommit(how="commit"), key="k")

    assert effect_counts(steps_app.engine, "k") == {}


# -- Halt ------------------------------------------------------------------------------


def test_halt__run_returns_none_with_status_halted(steps_app: acidic.App) -> None:
    HALT.add("two")

    assert steps_app.run(Pipeline(), key="k") is None

    run = _get(steps_app, "k")
    assert run.status == "halted"
    assert run.recovery_point == "two"
    assert run.locked_at is None
    assert run.error is None
    assert run.result is None
    assert run.finished_at is None
    assert _events(run) == [
        ("one", "started"),
        ("one", "succeeded"),
        ("two", "started"),
        ("two", "halted"),
    ]


def test_halt__commits_tx_writes_and_ctx_of_the_halting_step(steps_app: acidic.App) -> None:
    HALT.add("two")
    steps_app.run(Pipeline(), key="k")

    assert effect_counts(steps_app.engine, "k") == {"one": 1, "two": 1}
    assert _get(steps_app, "k").ctx == {"one": 1, "two": 1, "last": "two"}


def test_halt__same_step_runs_again_on_next_run(steps_app: acidic.App) -> None:
    HALT.add("two")
    steps_app.run(Pipeline(), key="k")
    HALT.clear()

    result = steps_app.run(Pipeline(), key="k")

    assert [(s.step, s.attempt) for s in SEEN] == [
        ("one", 1),
        ("two", 1),
        ("two", 2),
        ("three", 2),
        ("four", 2),
    ]
    assert effect_counts(steps_app.engine, "k") == {"one": 1, "two": 2, "four": 1}
    assert result == {"one": 1, "two": 2, "three": 2, "four": 2, "last": "four"}
    run = _get(steps_app, "k")
    assert run.status == "succeeded"
    assert _events(run)[3:6] == [("two", "halted"), ("two", "started"), ("two", "succeeded")]


def test_halt__in_a_non_transactional_step_commits_ctx_and_repeats_it(
    steps_app: acidic.App,
) -> None:
    HALT.add("three")
    assert steps_app.run(Pipeline(), key="k") is None
    run = _get(steps_app, "k")
    assert (run.status, run.recovery_point) == ("halted", "three")
    assert run.ctx == {"one": 1, "two": 1, "three": 1, "last": "three"}
    HALT.clear()

    steps_app.run(Pipeline(), key="k")

    assert CALLS == {"three": 2}
    assert [s.ctx.get("three") for s in SEEN if s.step == "three"] == [None, 1]


# -- RecoveryPoint ---------------------------------------------------------------------


def test_recovery_point__jumps_forward_over_a_step(steps_app: acidic.App) -> None:
    assert steps_app.run(Jumper(), key="j") == "finished"

    assert [s.step for s in SEEN] == ["start", "finish"]
    assert effect_counts(steps_app.engine, "j") == {"start": 1, "finish": 1}
    assert _events(_get(steps_app, "j")) == [
        ("start", "started"),
        ("start", "succeeded"),
        ("finish", "started"),
        ("finish", "succeeded"),
    ]


def test_recovery_point__loops_back_until_done(steps_app: acidic.App) -> None:
    assert steps_app.run(Looper(times=3), key="loop") == 3

    assert [s.step for s in SEEN] == ["init", "body", "body", "body", "done"]
    assert [s.ctx["i"] for s in SEEN if s.step == "body"] == [0, 1, 2]
    assert effect_counts(steps_app.engine, "loop") == {"init": 1, "body": 3, "done": 1}
    run = _get(steps_app, "loop")
    assert run.ctx["i"] == 3
    assert [e for e in _events(run) if e[0] == "body"] == [
        ("body", "started"),
        ("body", "succeeded"),
    ] * 3


def test_recovery_point__loop_resumes_at_the_iteration_that_failed(
    steps_app: acidic.App,
) -> None:
    LOOP_FAIL_AT.add(3)
    with pytest.raises(Boom):
        steps_app.run(Looper(times=3), key="loop")
    run = _get(steps_app, "loop")
    assert (run.recovery_point, run.ctx["i"]) == ("body", 2)
    assert effect_counts(steps_app.engine, "loop") == {"init": 1, "body": 2}
    LOOP_FAIL_AT.clear()
    SEEN.clear()

    assert steps_app.run(Looper(times=3), key="loop") == 3

    assert [(s.step, s.ctx["i"]) for s in SEEN] == [("body", 2), ("done", 3)]
    assert effect_counts(steps_app.engine, "loop") == {"init": 1, "body": 3, "done": 1}


def test_recovery_point__unknown_step_raises_unknown_recovery_point_error(
    steps_app: acidic.App,
) -> None:
    with pytest.raises(acidic.UnknownRecoveryPointError) as caught:
        steps_app.run(LostJump(), key="lost")

    assert "nowhere" in str(caught.value)
    run = _get(steps_app, "lost")
    assert run.status == "failed"
    assert run.recovery_point == "jump"
    assert run.error is not None
    assert run.error.step == "jump"
    assert run.error.type == "acidic._errors.UnknownRecoveryPointError"
    assert effect_counts(steps_app.engine, "lost") == {"first": 1}  # jump's writes undone
    assert run.ctx == {"first": 1, "last": "first"}


# -- Response and other return values --------------------------------------------------


def test_response__finishes_early_and_later_steps_never_run(steps_app: acidic.App) -> None:
    assert steps_app.run(Early(), key="e") == "early"
    assert steps_app.run(Early(), key="e") == "early"

    assert [s.step for s in SEEN] == ["first"]
    assert effect_counts(steps_app.engine, "e") == {"first": 1}
    run = _get(steps_app, "e")
    assert run.status == "succeeded"
    assert run.result == "early"
    assert run.recovery_point is None
    assert _events(run) == [("first", "started"), ("first", "succeeded")]


@pytest.mark.parametrize("transactional", [True, False])
def test_response__other_return_value_raises_job_definition_error(
    steps_app: acidic.App, transactional: bool
) -> None:
    step = "bad" if transactional else "bad_foreign"

    with pytest.raises(acidic.JobDefinitionError) as caught:
        steps_app.run(BadReturn(transactional=transactional), key="b")

    assert step in str(caught.value)
    run = _get(steps_app, "b")
    assert run.status == "failed"
    assert run.recovery_point == step
    assert run.error is not None
    assert run.error.step == step
    assert run.error.type == "acidic._errors.JobDefinitionError"
    expected_effects = {"bad": 1} if not transactional else {}
    assert effect_counts(steps_app.engine, "b") == expected_effects


def test_response__tagged_values_round_trip_through_stored_result(steps_app: acidic.App) -> None:
    first = steps_app.run(Valued(), key="v")
    later = steps_app.run(Valued(), key="v")
    stored = _get(steps_app, "v").result

    assert first == later == stored
    assert [s.step for s in SEEN] == ["respond"]
    expected = {**RESPONSE_VALUE, "pair": [1, "two"]}
    assert first == expected
    for result in (first, later, stored):
        for name, value in expected.items():
            assert type(result[name]) is type(value), name
        assert str(result["amount"]) == "12.50"
        assert str(result["tiny"]) == str(RESPONSE_VALUE["tiny"])
        assert result["aware"].utcoffset() == dt.timedelta(hours=5, minutes=30)
        assert result["utc"].utcoffset() == dt.timedelta(0)
        assert result["naive"].tzinfo is None
        assert str(result["nested"]["list"][0]) == "1.10"


# -- step_key --------------------------------------------------------------------------


def test_step_key__stable_across_attempts_of_a_step(steps_app: acidic.App) -> None:
    _fail_once(steps_app, "two")
    _fail_once(steps_app, "two")  # resumes at two: a second failed attempt
    steps_app.run(Pipeline(), key="k")

    keys_of_two = {s.step_key for s in SEEN if s.step == "two"}
    assert len([s for s in SEEN if s.step == "two"]) == 3
    assert len(keys_of_two) == 1


def test_step_key__differs_per_step_and_per_key(steps_app: acidic.App) -> None:
    steps_app.run(Pipeline(), key="k1")
    steps_app.run(Pipeline(), key="k2")

    by_key: dict[str, dict[str, str]] = {}
    for s in SEEN:
        by_key.setdefault(s.key, {})[s.step] = s.step_key
    assert set(by_key) == {"k1", "k2"}
    all_keys = [sk for steps in by_key.values() for sk in steps.values()]
    assert len(all_keys) == 8
    assert len(set(all_keys)) == 8
    for sk in all_keys:
        assert sk.startswith("acidic-")
        assert len(sk) == len("acidic-") + 48
        int(sk.removeprefix("acidic-"), 16)


def test_step_key__same_in_another_app_on_the_same_key(
    steps_app: acidic.App, database_url: str
) -> None:
    _fail_once(steps_app, "three")
    other = acidic.App(database_url)
    other.job(name="steps.Pipeline")(Pipeline)
    try:
        other.run(Pipeline(), key="k")
    finally:
        other.close()

    keys_of_three = [s.step_key for s in SEEN if s.step == "three"]
    assert len(keys_of_three) == 2
    assert keys_of_three[0] == keys_of_three[1]


# -- step attributes outside steps -----------------------------------------------------

STEP_ATTRIBUTES = ("key", "ctx", "attempt", "step_key", "retrying")


@pytest.mark.parametrize("attribute", STEP_ATTRIBUTES)
def test_not_in_step__attribute_on_a_fresh_job_raises(attribute: str) -> None:
    job = Pipeline()

    with pytest.raises(acidic.NotInStepError):
        getattr(job, attribute)


def test_not_in_step__attributes_raise_again_after_the_run(steps_app: acidic.App) -> None:
    job = Pipeline()
    steps_app.run(job, key="k")
    FAIL.add("one")
    failing = Pipeline(n=2)
    with pytest.raises(Boom):
        steps_app.run(failing, key="k2")

    for finished in (job, failing):
        for attribute in STEP_ATTRIBUTES:
            with pytest.raises(acidic.NotInStepError):
                getattr(finished, attribute)
