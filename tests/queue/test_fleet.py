"""Issue 12, the fleet: the worker registry, runs named by their owner, stuck work
(orphaned runs, due runs of a job no live worker knows), paused queues, and what
``acidic workers``, ``acidic queues`` and ``acidic runs`` print about them.

Workers run in-process in a thread, and so do the commands
(:func:`tests.support.cli.invoke_cli`). The tests with worker processes killed by
SIGKILL are in ``tests/test_fleet_processes.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from acidic._admin import Admin, RunFilter
from acidic._storage._schema import runs, workers
from acidic._worker import _registry
from tests.support.cli import invoke_cli
from tests.support.queue.jobs import (
    QUEUES,
    Note,
    Unregistered,
    background,
    wait_for,
    wait_status,
)

#: Set to let Holder runs finish.
RELEASE = threading.Event()


class Holder(acidic.Job):
    """Holds its worker until :data:`RELEASE` is set (at most ten minutes): a run that is
    running for as long as a test needs, however slow the commands it runs are."""

    @acidic.step(transactional=False)
    def hold(self) -> None:
        RELEASE.wait(600)


@pytest.fixture
def holding(app: acidic.App) -> Iterator[type[Holder]]:
    RELEASE.clear()
    app.job(name="fleet.Holder")(Holder)
    try:
        yield Holder
    finally:
        RELEASE.set()


def _cli_json(url: str, *args: str) -> Any:
    done = invoke_cli(*args, "--json", url=url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def ghost_app(database_url: str, app: acidic.App) -> Iterator[acidic.App]:
    """Another App on the same database that registers a job the workers do not know."""
    other = acidic.App(database_url, queues=QUEUES)
    other.job(name="queue.Ghost")(Unregistered)
    try:
        yield other
    finally:
        other.close()


@pytest.mark.timeout(400)  # several commands, each seconds long on a loaded machine
def test_workers__a_running_worker_is_listed_with_the_runs_it_holds_and_removed_on_stop(
    app: acidic.App, database_url: str, holding: type[Holder]
) -> None:
    with background(app, concurrency=2, queues=["default"]) as bg:
        worker_id = bg.worker.registration.id
        app.enqueue(Holder(), key="long")
        wait_for(lambda: app.manager.queries.summary("long").owner, what="the run's owner")  # type: ignore[union-attr]

        (listed,) = _cli_json(database_url, "workers")
        assert listed["id"] == worker_id
        assert listed["pid"] > 0
        assert listed["host"]
        assert listed["queues"] == ["default"]
        assert listed["concurrency"] == 2
        assert listed["runs"] == ["long"]
        assert listed["live"] is True
        assert "queue.Note" in listed["jobs"]
        assert dt.datetime.fromisoformat(listed["heartbeat_at"]) >= dt.datetime.fromisoformat(
            listed["started_at"]
        )

        table = invoke_cli("workers", url=database_url)
        assert worker_id in table.stdout, table.stdout
        assert "long" in table.stdout
        shown = _cli_json(database_url, "runs", "show", "long")
        assert shown["owner"] == worker_id, json.dumps(shown)
        assert shown["orphaned"] is False
        assert shown["takeover_at"] is None
        assert shown["warning"] is None
        assert shown["lock_expires_at"] is not None
        assert shown["owner_heartbeat_at"] is not None

        human = invoke_cli("runs", "show", "long", url=database_url)
        assert worker_id in human.stdout, human.stdout
        assert "lock expires" in human.stdout
        RELEASE.set()
        wait_status(app, "long", "succeeded", timeout=30)
        assert app.manager.queries.summary("long").owner is None  # type: ignore[union-attr]
    # A graceful stop removes the worker.
    assert _cli_json(database_url, "workers") == []


def test_workers__a_worker_that_misses_its_heartbeats_is_gone_and_its_run_orphaned(
    app: acidic.App, holding: type[Holder]
) -> None:
    with background(app, queues=["default"]) as bg:
        app.enqueue(Holder(), key="held")
        wait_for(lambda: app.manager.queries.summary("held").owner, what="the run's owner")  # type: ignore[union-attr]
        worker_id = bg.worker.registration.id
        admin = Admin(app)
        assert not admin.summary("held").orphaned  # type: ignore[union-attr]
        # As if the worker had stopped heartbeating: its row is past gone_at.
        with app.engine.begin() as conn:
            conn.execute(
                workers.update()
                .where(workers.c.id == worker_id)
                .values(gone_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            )
        held = admin.summary("held")
        assert held is not None
        assert held.orphaned
        assert held.owner == worker_id
        assert held.takeover_at == held.lock_expires_at
        assert held.warning is not None
        assert "stopped heartbeating" in held.warning
        (gone,) = admin.workers()
        assert gone.live is False
        assert gone.runs == ["held"]
        assert [r.key for r in admin.list_runs(RunFilter(orphaned=True)).runs] == ["held"]
        assert admin.count_runs(RunFilter(orphaned=True)) == 1
        RELEASE.set()
        wait_status(app, "held", "succeeded", timeout=10)


def test_workers__rows_of_workers_gone_long_ago_are_pruned_at_registration(
    app: acidic.App,
) -> None:
    old = dt.datetime.now(dt.UTC) - _registry.PRUNE_GONE_AFTER - dt.timedelta(minutes=1)
    app.manager.fleet.register(
        "dead:1:abcdef",
        host="dead",
        pid=1,
        queues=["default"],
        concurrency=1,
        version="0",
        jobs=[],
        now=old,
        gone_at=old,
    )
    assert [w.id for w in Admin(app).workers()] == ["dead:1:abcdef"]
    with background(app) as bg:
        wait_for(
            lambda: [w.id for w in Admin(app).workers()] == [bg.worker.registration.id],
            what="the old row pruned and the new one registered",
        )


@pytest.mark.timeout(400)  # several commands, each seconds long on a loaded machine
def test_unknown_job__a_due_run_no_live_worker_knows_is_flagged_and_filtered(
    app: acidic.App, ghost_app: acidic.App, database_url: str
) -> None:
    ghost_app.enqueue(Unregistered(), key="ghost")
    app.enqueue(
        Note(tag="later"), key="later", run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    )
    warning = "no live worker knows job 'queue.Ghost' on queue 'default'"
    listed = _cli_json(database_url, "runs", "list")["runs"]
    by_key = {r["key"]: r for r in listed}
    assert by_key["ghost"]["warning"] == warning
    assert by_key["ghost"]["due"] is True
    assert by_key["later"]["warning"] is None
    assert by_key["later"]["due"] is False
    assert by_key["later"]["run_at"] is not None
    assert by_key["later"]["reason"].startswith("due at ")
    assert [r["key"] for r in _cli_json(database_url, "runs", "list", "--unknown-job")["runs"]] == [
        "ghost"
    ]
    assert [r["key"] for r in _cli_json(database_url, "runs", "list", "--due")["runs"]] == ["ghost"]
    human = invoke_cli("runs", "list", url=database_url)
    assert warning in human.stdout
    assert "due (UTC)" in human.stdout
    # A live worker that knows the job on that queue clears the warning.
    with background(ghost_app, queues=["other"]):
        wait_for(lambda: Admin(app).workers(), what="the worker's registration")
        assert Admin(app).summary("ghost").warning == warning  # type: ignore[union-attr]
    (unknown,) = Admin(app).unknown_jobs()
    assert (unknown.queue, unknown.job, unknown.count) == ("default", "queue.Ghost", 1)


def test_unknown_job__an_idle_worker_logs_the_warning_once_per_job_and_again_after_it_cleared(
    app: acidic.App,
    ghost_app: acidic.App,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_registry, "UNKNOWN_CHECK_INTERVAL", 0.1)
    caplog.set_level(logging.WARNING, logger="acidic.worker")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "no live worker knows" in r.getMessage()]

    ghost_app.enqueue(Unregistered(), key="ghost-1")
    ghost_app.enqueue(Unregistered(), key="ghost-2")
    with background(app, heartbeat=0.05, queues=["default"]) as bg:
        wait_for(warnings, timeout=10, what="the warning")
        wait_for(lambda: bg.worker.registration._beats >= 8, timeout=15, what="more beats")
        assert len(warnings()) == 1
        assert "'queue.Ghost' on queue 'default'" in warnings()[0]
        # Cleared (the runs were cancelled), then back: one warning more.
        app.cancel("ghost-1")
        app.cancel("ghost-2")
        wait_for(lambda: not bg.worker.registration.warned, timeout=10, what="cleared")
        ghost_app.enqueue(Unregistered(), key="ghost-3")
        wait_for(lambda: len(warnings()) == 2, timeout=10, what="the second warning")


@pytest.mark.timeout(400)  # several commands, each seconds long on a loaded machine
def test_pause__workers_stop_claiming_and_enqueue_still_works_resume_claims_again(
    app: acidic.App, database_url: str
) -> None:
    assert invoke_cli("queues", "pause", "default", url=database_url).returncode == 0
    queues = {q["name"]: q for q in _cli_json(database_url, "queues")}
    assert queues["default"]["paused"] is True
    again = invoke_cli("queues", "pause", "default", url=database_url)
    assert "already paused" in again.stdout
    with background(app, queues=["default", "other"]):
        app.enqueue(Note(tag="waits"), key="waits")
        app.enqueue(Note(tag="runs"), key="elsewhere", queue="other")
        wait_status(app, "elsewhere", "succeeded")
        queues = {q["name"]: q for q in _cli_json(database_url, "queues")}
        assert queues["default"] | {"oldest_due_age_s": None} == {
            "name": "default",
            "depth": 1,
            "due": 1,
            "running": 0,
            "oldest_due_age_s": None,
            "paused": True,
            "paused_at": queues["default"]["paused_at"],
            "declared": True,
            "workers": 1,
        }
        assert queues["default"]["oldest_due_age_s"] >= 0
        assert app.get("waits").status == "pending"  # type: ignore[union-attr]
        assert Admin(app).summary("waits").warning == "queue 'default' is paused"  # type: ignore[union-attr]
        assert invoke_cli("queues", "resume", "default", url=database_url).returncode == 0
        wait_status(app, "waits", "succeeded")
    assert app.resume_queue("default") is False


def test_claim__keeps_one_statement_and_the_owner_is_written_by_it(app: acidic.App) -> None:
    """The owner costs no statement: a claim still returns the claimed rows, and the
    stored owner is the worker's id."""
    app.enqueue(Note(tag="x"), key="x")
    rows = app.manager.claim_due("default", list(app.jobs), 1, owner="w:1:abc")
    assert [r.key for r in rows] == ["x"]
    with app.engine.connect() as conn:
        owner = conn.execute(sa.select(runs.c.owner).where(runs.c.idempotency_key == "x")).scalar()
    assert owner == "w:1:abc"
    app.manager.release_claimed(rows[0])
    with app.engine.connect() as conn:
        owner = conn.execute(sa.select(runs.c.owner).where(runs.c.idempotency_key == "x")).scalar()
    assert owner is None


def test_pause_queue__bad_names_are_refused(app: acidic.App) -> None:
    for bad in ("", "x" * 101, 3):
        with pytest.raises(acidic.InvalidArgumentError, match="queue name"):
            app.pause_queue(bad)  # type: ignore[arg-type]
