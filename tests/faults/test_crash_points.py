"""Every crash point of the ride (transactional, foreign, transactional step): crashed
there, by an exception or by SIGKILL, then resumed, each run succeeds with each step's
database work done exactly once and a coherent history.

The points come from ``acidic.testing.crash_points``: before every write (acidic's and
the step's own), before every COMMIT, and after every COMMIT took effect but before the
client heard back.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import sqlalchemy as sa

import acidic
from acidic.testing import CrashPoint, assert_each_step_succeeded_once, crash_points
from tests.support import jobs

#: Every test once per flavour of step (sync, async, ORM session, async ORM session).
pytestmark = pytest.mark.usefixtures("flavour")


def _assert_coherent(history: Sequence[acidic.StepEvent]) -> None:
    """Every end event closes a start of the same step and attempt; a step's start is
    unmatched only where an execution crashed (then a later attempt runs it again)."""
    open_start: tuple[str, int] | None = None
    for event in history:
        if event.event == "started":
            open_start = (event.step, event.attempt)
            continue
        assert open_start == (event.step, event.attempt), history
        open_start = None
    assert open_start is None, history


def _rides(app: acidic.App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(jobs.rides)).scalar_one())


def _check_every_point(app: acidic.App, mode: acidic.testing.CrashMode) -> list[CrashPoint]:
    ride = jobs.CreateRide(user_id=7, origin="Paris", target="Lyon")
    points = []
    for crashed in crash_points(app, ride, mode=mode, app_factory="tests.support.jobs:make_app"):
        where = f"crashed at {crashed.point}"
        assert crashed.crashed, where
        run = crashed.run
        assert_each_step_succeeded_once(run)
        assert jobs.effect_counts(app.engine, crashed.key) == {
            "create_ride": 1,
            "send_receipt": 1,
        }, where
        assert run.result == {"ride_id": run.ctx["ride_id"], "charge_id": run.ctx["charge_id"]}
        with app.engine.connect() as conn:
            charge = conn.execute(
                sa.select(jobs.rides.c.charge_id).where(jobs.rides.c.id == run.ctx["ride_id"])
            ).scalar_one()
        assert charge == run.ctx["charge_id"], where
        _assert_coherent(run.history)
        points.append(crashed.point)
    # One ride per run: the recording run's and one per crash point, none doubled.
    assert _rides(app) == 1 + len(points)
    return points


def test_crash_points__every_point_of_the_ride_resumes_to_exactly_once(app: acidic.App) -> None:
    points = _check_every_point(app, "raise")
    kinds = {(p.step, p.kind) for p in points}
    # The claim's and each step's lost acknowledgement are among the points (on
    # PostgreSQL one-statement writes commit on their own: no separate COMMIT point).
    assert {
        (None, "acknowledgement"),
        ("create_ride", "commit"),
        ("create_ride", "acknowledgement"),
        ("charge", "acknowledgement"),
        ("send_receipt", "commit"),
        ("send_receipt", "acknowledgement"),
    } <= kinds, points
    # The step's own statements are points too, not only acidic's.
    assert any(p.kind == "write" and p.statement == "INSERT INTO rides" for p in points), points
    assert any(p.kind == "write" and p.statement == "UPDATE rides" for p in points), points


# A process per point: the two ends of the flavours (sync; async with an ORM session).
@pytest.mark.parametrize("flavour", ["sync", "async_session"], indirect=True)
@pytest.mark.slow
@pytest.mark.storm
def test_crash_points__sigkill_at_every_point_of_the_ride_resumes_to_exactly_once(
    app: acidic.App,
) -> None:
    points = _check_every_point(app, "kill")
    assert len(points) >= 12


def test_crash_points__a_foreign_step_crashed_after_its_call_runs_again(
    app: acidic.App, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At-least-once, as documented: the foreign call of a run crashed between the call
    # and the commit of its progress is made again on resume, and only then.
    calls = tmp_path / "calls"  # type: ignore[operator]
    monkeypatch.setenv("ACIDIC_TEST_CALLS", str(calls))
    ride = jobs.CreateRide(user_id=8, origin="Paris", target="Nice")
    twice = set()
    for crashed in crash_points(app, ride):
        assert_each_step_succeeded_once(crashed.run)
        made = calls.read_text().splitlines().count(f"{crashed.key}\tcharge")
        assert made in (1, 2), crashed.point
        if made == 2:
            twice.add(crashed.point.step)
            assert crashed.point.step == "charge", crashed.point
            assert crashed.point.kind in ("write", "commit"), crashed.point
    assert twice == {"charge"}
