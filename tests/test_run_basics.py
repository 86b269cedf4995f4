"""A run whose steps all succeed: each step runs once, in order, the run's result is
stored, and a finished key returns that result without running anything again."""

from __future__ import annotations

import pytest

import acidic
from tests.support.jobs import CreateRide, effect_counts

#: Every test once per flavour of step (sync, async, ORM session, async ORM session).
pytestmark = pytest.mark.usefixtures("flavour")


def test_run__all_steps_succeed_once_in_order(app: acidic.App) -> None:
    result = app.run(CreateRide(user_id=1, origin="a", target="b"), key="ride-42")

    assert result == {"ride_id": 1, "charge_id": result["charge_id"]}
    run = app.get("ride-42")
    assert run is not None
    assert run.status == "succeeded"
    assert run.recovery_point is None
    assert run.result == result
    assert run.error is None
    assert run.attempts == 1
    assert run.locked_at is None
    assert run.finished_at is not None
    assert [(e.step, e.event) for e in run.history] == [
        ("create_ride", "started"),
        ("create_ride", "succeeded"),
        ("charge", "started"),
        ("charge", "succeeded"),
        ("send_receipt", "started"),
        ("send_receipt", "succeeded"),
    ]
    assert effect_counts(app.engine, "ride-42") == {"create_ride": 1, "send_receipt": 1}


def test_run__finished_key_returns_stored_result_without_running(app: acidic.App) -> None:
    job = CreateRide(user_id=1, origin="a", target="b")
    first = app.run(job, key="k")

    for _ in range(3):
        assert app.run(CreateRide(user_id=1, origin="a", target="b"), key="k") == first

    run = app.get("k")
    assert run is not None
    assert run.attempts == 1
    assert len(run.history) == 6
    assert effect_counts(app.engine, "k") == {"create_ride": 1, "send_receipt": 1}
