"""The run transitions, without a database: what a run becomes after each outcome."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import acidic
from acidic._engine import _transitions as t
from acidic._run import RunStatus
from acidic._storage import KEEP, EventRow, RunRow

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
STEPS = ["reserve", "charge", "notify"]


def row(**fields: object) -> RunRow:
    values: dict[str, object] = {
        "id": 7,
        "key": "ride-1",
        "job": "rides.Ride",
        "args": "{}",
        "steps": json.dumps(STEPS),
        "status": "running",
        "recovery_point": "reserve",
        "ctx": "{}",
        "result": None,
        "error": None,
        "attempts": 1,
        "lock_token": "t0k",
        "locked_at": NOW,
        "created_at": NOW,
        "last_run_at": NOW,
        "finished_at": None,
    }
    values.update(fields)
    return RunRow(**values)  # type: ignore[arg-type]


def decide(step: str, returned: object) -> t.Decision:
    return t.decide(STEPS, "Ride", "ride-1", step, returned, NOW)


def after(
    run: RunRow, decision: t.Decision, *, stopping: bool = False, start_next: bool = False
) -> t.Transition:
    return t.after_step(
        run,
        decision,
        step="reserve",
        ctx_json='{"a": 1}',
        attempt=1,
        started=NOW - dt.timedelta(seconds=1),
        now=NOW,
        lock_expires_at=NOW + dt.timedelta(seconds=90),
        stopping=stopping,
        default_queue="default",
        start_next=start_next,
    )


# -- decide -------------------------------------------------------------------------------


def test_decide__none_continues_at_the_next_step_and_finishes_after_the_last() -> None:
    assert decide("reserve", None) == t.Decision(RunStatus.RUNNING, "charge")
    assert decide("notify", None) == t.Decision(RunStatus.SUCCEEDED, None)


def test_decide__response_finishes_with_its_encoded_value() -> None:
    decision = decide("reserve", acidic.Response({"ride": 3}))
    assert decision.status is RunStatus.SUCCEEDED
    assert decision.result_json is not None
    assert json.loads(decision.result_json) == {"ride": 3}


def test_decide__recovery_point_jumps_and_an_unknown_one_is_refused() -> None:
    assert decide("notify", acidic.RecoveryPoint("reserve")).next == "reserve"
    with pytest.raises(acidic.UnknownRecoveryPointError, match="'refund'"):
        decide("notify", acidic.RecoveryPoint("refund"))


def test_decide__halt_stays_at_the_step_and_sleep_wakes_at_the_next() -> None:
    assert decide("charge", acidic.Halt()) == t.Decision(RunStatus.HALTED, "charge")
    slept = decide("reserve", acidic.Sleep(30))
    assert (slept.status, slept.next) == (RunStatus.SCHEDULED, "charge")
    assert slept.wake_at == NOW + dt.timedelta(seconds=30)


def test_decide__sleep_in_the_last_step_and_other_values_are_definition_errors() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="last step"):
        decide("notify", acidic.Sleep(1))
    with pytest.raises(acidic.JobDefinitionError, match="returned 42"):
        decide("reserve", 42)


# -- after a step -------------------------------------------------------------------------


def test_after_step__continuing_renews_the_lock_and_moves_the_point() -> None:
    transition = after(row(), decide("reserve", None))
    change = transition.change
    assert transition.ended is None
    assert change.recovery_point == "charge"
    assert change.ctx == '{"a": 1}'
    assert (change.renewed_at, change.renew_until) == (NOW, NOW + dt.timedelta(seconds=90))
    assert not change.release
    assert change.status is KEEP  # still running
    assert [e.event for e in transition.events] == ["started", "succeeded"]


def test_after_step__start_next_records_the_next_steps_start_in_the_same_write() -> None:
    transition = after(row(), decide("reserve", None), start_next=True)

    assert [(e.step, e.event, e.at) for e in transition.events] == [
        ("reserve", "started", NOW - dt.timedelta(seconds=1)),
        ("reserve", "succeeded", NOW),
        ("charge", "started", NOW),
    ]
    assert transition.change.recovery_point == "charge"


def test_after_step__start_next_is_ignored_when_the_run_does_not_go_on() -> None:
    for decision, stopping in (
        (decide("reserve", None), True),  # handed back by a stopping worker
        (decide("reserve", acidic.Sleep(30)), False),
        (decide("charge", acidic.Halt()), False),
        (decide("notify", None), False),  # the last step: succeeded
    ):
        transition = after(row(), decision, stopping=stopping, start_next=True)
        assert transition.ended is not None
        assert [e.step for e in transition.events if e.event == "started"] == [
            transition.events[0].step
        ]


def test_after_step__success_stores_the_result_releases_and_ends_with_its_value() -> None:
    transition = after(row(), decide("reserve", acidic.Response([1, 2])))
    values = transition.change.values()
    assert values["status"] == "succeeded"
    assert values["finished_at"] == NOW
    assert values["lock_token"] is None
    assert values["recovery_point"] is None
    assert transition.ended == t.Ended(RunStatus.SUCCEEDED, [1, 2])


def test_after_step__a_graceful_stop_hands_the_run_back_without_using_an_attempt() -> None:
    transition = after(row(attempt_limit=5), decide("reserve", None), stopping=True)
    values = transition.change.values()
    assert values["status"] == "pending"
    assert values["recovery_point"] == "charge"
    assert values["run_at"] == NOW
    assert values["attempt_limit"] == 6
    assert values["lock_token"] is None
    assert transition.ended == t.Ended(RunStatus.PENDING)


def test_after_step__a_parked_inline_run_joins_the_default_queue() -> None:
    halted = after(row(queue=None), decide("reserve", acidic.Halt())).change.values()
    assert halted["status"] == "halted"
    assert halted["queue"] == "default"
    assert "recovery_point" not in halted  # the halted step runs again
    slept = after(row(queue="mail"), decide("reserve", acidic.Sleep(5))).change.values()
    assert (slept["status"], slept["queue"], slept["recovery_point"]) == (
        "scheduled",
        "mail",
        "charge",
    )
    assert slept["run_at"] == NOW + dt.timedelta(seconds=5)


# -- failures -----------------------------------------------------------------------------


def status_after_error(run: RunRow, *, retry: bool = False, **kw: object) -> tuple[object, ...]:
    options: dict[str, object] = {
        "attempt": run.attempts,
        "retry": retry,
        "retry_after": None,
        "discarded": False,
        "backoff": lambda attempt: 10.0 * attempt,
        "now": NOW,
    }
    options.update(kw)
    return t.failure_status(run, **options)  # type: ignore[arg-type]


def test_failure_status__inline_runs_fail_at_once() -> None:
    assert status_after_error(row(attempt_limit=None)) == (RunStatus.FAILED, None)


def test_failure_status__enqueued_runs_back_off_while_attempts_are_left() -> None:
    assert status_after_error(row(attempts=2, attempt_limit=3)) == (
        RunStatus.SCHEDULED,
        NOW + dt.timedelta(seconds=20),
    )
    assert status_after_error(row(attempts=3, attempt_limit=3)) == (RunStatus.FAILED, None)


def test_failure_status__discarded_errors_fail_and_retry_uses_its_delay() -> None:
    assert status_after_error(row(attempt_limit=3), discarded=True) == (RunStatus.FAILED, None)
    assert status_after_error(row(attempt_limit=None), retry=True, retry_after=2.5) == (
        RunStatus.SCHEDULED,
        NOW + dt.timedelta(seconds=2.5),
    )


def failure(*, started: dt.datetime | None, cancel_requested: bool) -> t.Transition:
    """A scheduled retry of step ``charge``, as :func:`after_failure` records it."""
    return t.after_failure(
        row(),
        status=RunStatus.SCHEDULED,
        wake_at=NOW,
        step="charge",
        error_json='{"type": "x"}',
        attempt=1,
        started=started,
        now=NOW,
        cancel_requested=cancel_requested,
        default_queue="default",
    )


def test_after_failure__records_the_error_and_a_requested_cancel_wins() -> None:
    failed = failure(started=NOW, cancel_requested=False)
    assert [e.event for e in failed.events] == ["started", "errored"]
    assert failed.change.values()["queue"] == "default"
    cancelled = failure(started=None, cancel_requested=True)
    values = cancelled.change.values()
    assert (values["status"], values["run_at"], values["finished_at"]) == ("cancelled", None, NOW)
    assert cancelled.ended == t.Ended(RunStatus.CANCELLED)
    assert [e.event for e in cancelled.events] == ["errored"]


# -- claims and operator actions ----------------------------------------------------------


def test_claimable__finished_cancelled_not_due_locked_or_claim() -> None:
    assert t.claimable(row(status="succeeded"), NOW) == "finished"
    assert t.claimable(row(status="cancelled"), NOW) == "cancelled"
    later = NOW + dt.timedelta(minutes=1)
    assert t.claimable(row(status="scheduled", lock_token=None, run_at=later), NOW) == "not due"
    assert t.claimable(row(lock_expires_at=later), NOW) == "locked"
    assert t.claimable(row(lock_expires_at=NOW), NOW) == "claim"  # stale at its expiry
    assert t.claimable(row(status="failed", lock_token=None), NOW) == "claim"


def test_retrying__only_when_the_recovery_point_started_without_succeeding() -> None:
    run = row(recovery_point="charge")
    assert not t.retrying(run, None)
    assert t.retrying(run, EventRow("charge", "started", NOW, 1))
    assert t.retrying(run, EventRow("charge", "errored", NOW, 1))
    assert not t.retrying(run, EventRow("reserve", "succeeded", NOW, 1))


def test_claim_releases__hand_back_and_fail_before_start_do_not_count_an_attempt() -> None:
    back = t.handed_back(row(attempts=4), NOW).values()
    assert (back["status"], back["attempts"], back["run_at"]) == ("pending", 3, NOW)
    failed = t.failed_before_start(row(attempts=4), "{}").values()
    assert (failed["status"], failed["attempts"], failed["lock_token"]) == ("failed", 3, None)


def test_woken__joins_the_default_queue_and_keeps_what_it_is_not_given() -> None:
    values = t.woken(row(queue=None), NOW, "default").values()
    assert values == {"status": "pending", "run_at": NOW, "queue": "default"}
    moved = t.woken(row(queue="q"), NOW, "default", recovery_point="charge", attempt_limit=9)
    assert moved.values()["recovery_point"] == "charge"
    assert moved.values()["attempt_limit"] == 9
