"""Operator actions refused by a run's status raise one typed error, and bad arguments
raise errors that are also the built-in ValueError/TypeError."""

from __future__ import annotations

import datetime as dt

import pytest

import acidic
from acidic._engine._actions import ACTIONS
from tests.support.queue.jobs import Gate, Note, get

#: Every test once per flavour of step (sync, async, ORM session, async ORM session).
pytestmark = pytest.mark.usefixtures("flavour")


def test_retry__of_a_pending_run_raises_run_state_error_naming_what_it_accepts(
    app: acidic.App,
) -> None:
    app.enqueue(Note(tag="a"), key="waiting")
    with pytest.raises(acidic.RunStateError) as caught:
        app.retry("waiting")
    error = caught.value
    assert (error.key, error.action, error.status, error.accepted) == (
        "waiting",
        "retry",
        "pending",
        ("failed",),
    )
    assert "cannot retry key 'waiting': it is pending" in str(error)
    assert get(app, "waiting").status == "pending"  # left as it was


def test_resume__of_a_succeeded_run_is_refused_and_changes_nothing(app: acidic.App) -> None:
    assert app.run(Note(tag="done"), key="done") == "done"
    with pytest.raises(acidic.RunStateError, match="it is succeeded; resume accepts"):
        app.resume("done")
    with pytest.raises(acidic.RunStateError, match="halted or scheduled or awaiting or failed"):
        app.resume("done", from_step="note")
    run = get(app, "done")
    assert (run.status, run.result) == ("succeeded", "done")


def test_actions__accept_exactly_the_statuses_of_the_table(app: acidic.App) -> None:
    """Each action succeeds on a run in a status the table lists, and is refused on one
    it does not: the App checks against the table the CLI and dashboard show."""
    app.enqueue(Gate(), key="gate")
    app.drain()
    assert get(app, "gate").status == "halted"
    assert acidic.RunStatus.HALTED in ACTIONS["resume"]
    assert app.resume("gate").status == "pending"
    assert acidic.RunStatus.PENDING not in ACTIONS["resume"]
    with pytest.raises(acidic.RunStateError):
        app.resume("gate")
    assert acidic.RunStatus.PENDING in ACTIONS["cancel"]
    assert app.cancel("gate").status == "cancelled"
    with pytest.raises(acidic.RunStateError, match="it is cancelled"):
        app.retry("gate")


def test_cancel__of_a_finished_run_leaves_it_and_signal_of_a_finished_run_is_stored(
    app: acidic.App,
) -> None:
    app.run(Note(tag="x"), key="fin")
    assert app.cancel("fin").status == "succeeded"
    assert app.signal("fin", "late", 1).status == "succeeded"


@pytest.mark.parametrize(
    "call",
    [
        lambda app: app.enqueue(Note(), queue="nowhere"),
        lambda app: app.enqueue(Note(), run_at=dt.datetime(2030, 1, 1)),  # naive
        lambda app: app.enqueue(Note(), priority="high"),
        lambda app: app.prune(-1),
        lambda app: app.prune("a week"),
        lambda app: app.worker(concurrency=0),
        lambda app: app.worker(queues=["nowhere"]),
        lambda app: app.signal("k", ""),
    ],
    ids=["queue", "run_at", "priority", "prune<0", "prune-type", "concurrency", "queues", "name"],
)
def test_bad_arguments__raise_invalid_argument_error_that_is_value_and_type_error(
    app: acidic.App, call: object
) -> None:
    with pytest.raises(acidic.InvalidArgumentError) as caught:
        call(app)  # type: ignore[operator]
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, acidic.AcidicError)


def test_app__bad_constructor_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="lock_timeout"):
        acidic.App("sqlite:///x.sqlite3", lock_timeout=0)
    with pytest.raises(ValueError, match="queues"):
        acidic.App("sqlite:///x.sqlite3", queues=[""])
    with pytest.raises(ValueError, match="unusable database URL"):
        acidic.App("nonsense://")
