"""Child runs and ``Await``: fan-out and fan-in, children created in the step's
transaction, a failed child seen by its parent, and a parent woken even when the
process that finished its last child died before waking it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from acidic._storage._schema import runs
from tests.support import family_jobs
from tests.support.worker_app import ROOT, spawn_worker, wait_for, worker_processes


@pytest.fixture
def app(database_url: str) -> Iterator[acidic.App]:
    application = family_jobs.make_app(database_url)
    application.migrate()
    family_jobs.metadata.create_all(application.engine)
    try:
        yield application
    finally:
        application.close()


def drain_until_finished(app: acidic.App, key: str, rounds: int = 20) -> acidic.Run:
    for _ in range(rounds):
        app.drain()
        run = app.get(key)
        assert run is not None
        if run.status in (acidic.RunStatus.SUCCEEDED, acidic.RunStatus.FAILED):
            return run
    raise AssertionError(f"{key} did not finish: {app.get(key)}")


def steps_done(app: acidic.App, key: str) -> list[str]:
    with app.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(family_jobs.family_steps.c.step)
                .where(family_jobs.family_steps.c.run_key == key)
                .order_by(family_jobs.family_steps.c.id)
            ).scalars()
        )


def count_runs(app: acidic.App, **where: object) -> int:
    with app.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(runs)
        for column, value in where.items():
            query = query.where(runs.c[column] == value)
        return int(conn.execute(query).scalar_one())


def test_fan_out_and_fan_in__the_parent_continues_once_after_the_last_child(
    app: acidic.App,
) -> None:
    app.enqueue(family_jobs.FanOut(count=100), key="parent")
    run = drain_until_finished(app, "parent")
    assert run.status == acidic.RunStatus.SUCCEEDED
    assert run.result == {"total": sum(i * i for i in range(100)), "errors": [], "count": 100}
    assert steps_done(app, "parent") == ["fan_out", "fan_in"]
    assert count_runs(app, job="Square", status="succeeded") == 100
    child = app.get("parent/Square-" + run.ctx["children"][0].rsplit("-", 1)[1])
    assert child is not None
    assert child.result == 0


def test_await__parks_the_parent_as_awaiting_without_a_worker_until_children_finish(
    app: acidic.App,
) -> None:
    assert app.run(family_jobs.FanOut(count=3), key="parent") is None
    parent = app.get("parent")
    assert parent is not None
    assert parent.status == acidic.RunStatus.AWAITING
    assert parent.recovery_point == "fan_in"
    assert count_runs(app, job="Square", status="pending") == 3
    run = drain_until_finished(app, "parent")
    assert run.result["total"] == 0 + 1 + 4


def test_a_failed_child_is_seen_by_the_parent_which_decides(app: acidic.App) -> None:
    app.enqueue(family_jobs.FanOut(count=5, failing=2), key="parent")
    run = drain_until_finished(app, "parent")
    assert run.status == acidic.RunStatus.SUCCEEDED
    assert run.result == {"total": 0 + 1 + 9 + 16, "errors": ["cannot square 2"], "count": 5}


def test_spawn__in_a_transactional_step_that_fails_leaves_no_child(app: acidic.App) -> None:
    with pytest.raises(RuntimeError, match="after the spawn"):
        app.run(family_jobs.SpawnThenFail(), key="parent")
    assert count_runs(app, job="Square") == 0


def test_spawn__a_retried_non_transactional_step_finds_the_same_child(app: acidic.App) -> None:
    app.enqueue(family_jobs.ForeignSpawn(), key="parent")
    run = drain_until_finished(app, "parent")
    assert run.status == acidic.RunStatus.SUCCEEDED
    assert run.result == [9]
    assert count_runs(app, job="Square") == 1


def test_await__of_a_key_with_no_run_fails_the_step(app: acidic.App) -> None:
    with pytest.raises(acidic.UnknownKeyError, match="no-such-key"):
        app.run(family_jobs.AwaitNobody(), key="lonely")
    run = app.get("lonely")
    assert run is not None
    assert run.status == acidic.RunStatus.FAILED
    assert run.recovery_point == "wait"


def test_cancelling_the_last_child_wakes_the_parent(app: acidic.App) -> None:
    assert app.run(family_jobs.FanOut(count=2), key="parent") is None
    first, second = (c.key for c in _children(app, "parent"))
    app.run(family_jobs.Square(n=0), key=first)
    app.cancel(second)
    parent = app.get("parent")
    assert parent is not None
    assert parent.status == acidic.RunStatus.PENDING
    assert app.run(family_jobs.FanOut(count=2), key="parent") == {
        "total": 0,
        "errors": [],
        "count": 2,
    }


def _children(app: acidic.App, key: str) -> list[acidic.Run]:
    parent = app.get(key)
    assert parent is not None
    found = [app.get(k) for k in parent.ctx["children"]]
    assert all(found)
    return [c for c in found if c is not None]


@pytest.mark.slow
def test_a_parent_whose_last_child_died_before_waking_it_is_woken_by_a_worker(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    """The process that finishes the last child is SIGKILLed between the child's commit
    and the parent's wake-up; a worker's housekeeping wakes and finishes the parent."""
    assert app.run(family_jobs.FanOut(count=1), key="parent") is None
    (child,) = _children(app, "parent")
    script = textwrap.dedent(
        f"""
        import os, signal
        from acidic._engine._manager import Manager
        from tests.support import family_jobs
        Manager.wake_awaiting = lambda self, run_id: os.kill(os.getpid(), signal.SIGKILL)
        family_jobs.app.run(family_jobs.Square(n=0), key={child.key!r})
        """
    )
    env = dict(os.environ, ACIDIC_TEST_URL=database_url, PYTHONPATH=str(ROOT))
    died = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, timeout=60, check=False
    )
    assert died.returncode == -9
    assert app.get(child.key).status == acidic.RunStatus.SUCCEEDED  # type: ignore[union-attr]
    assert app.get("parent").status == acidic.RunStatus.AWAITING  # type: ignore[union-attr]
    with worker_processes() as workers:
        workers.append(
            spawn_worker(
                database_url,
                tmp_path / "worker.log",
                poll_interval=0.2,
                app_ref="tests.support.family_jobs:app",
            )
        )
        workers[0].wait_started()
        finished = wait_for(
            lambda: (
                (r := app.get("parent")) is not None
                and r.status == acidic.RunStatus.SUCCEEDED
                and r
            ),
            "the parent to be woken and finished",
            timeout=20,
            detail=workers[0].output,
        )
    assert finished.result == {"total": 0, "errors": [], "count": 1}
    assert steps_done(app, "parent") == ["fan_out", "fan_in"]


@pytest.mark.slow
def test_fan_out_through_two_worker_processes(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    app.enqueue(family_jobs.FanOut(count=40), key="parent")
    with worker_processes() as workers:
        for n in range(2):
            workers.append(
                spawn_worker(
                    database_url,
                    tmp_path / f"worker-{n}.log",
                    concurrency=2,
                    poll_interval=0.2,
                    app_ref="tests.support.family_jobs:app",
                )
            )
        finished = wait_for(
            lambda: (
                (r := app.get("parent")) is not None
                and r.status == acidic.RunStatus.SUCCEEDED
                and r
            ),
            "the parent to finish",
            timeout=60,
            detail=lambda: workers[0].output() + workers[1].output(),
        )
    assert finished.result["total"] == sum(i * i for i in range(40))
    assert steps_done(app, "parent") == ["fan_out", "fan_in"]
