"""A worker paused (SIGSTOP: its executor and its heartbeat both stop) past its lock
timeout in the middle of a step; another worker takes the run over and finishes it;
the first is then continued (SIGCONT): its commit is refused (fencing), it logs
LockLostError, no effect is doubled, and it goes on working.

tests/test_takeover.py proves fencing for inline ``app.run`` owners (transactional
step on PostgreSQL and MariaDB, non-transactional step on all three); this is the same
for worker processes, on all three databases. On SQLite the pause is in the
non-transactional step only: a worker paused inside a transactional step holds
SQLite's only write lock, so no other process can take anything over (or write at
all) until it continues; that is SQLite's documented one-writer design, not fencing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from acidic._storage._schema import runs
from tests.support import worker_app as wa
from tests.support.flavours import PROCESS_FLAVOURS
from tests.support.jobs import get_run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("flavour", PROCESS_FLAVOURS, indirect=True),
]

#: The worker's jobs, swapped by the ``flavour`` fixture (async and ORM-session steps run
#: in scripts/test-flavours); its worker processes take the flavour from the environment.
JOBS = wa.JOBS

#: Long enough that the healthy worker's heartbeat (every third of it) never misses it on
#: a loaded machine, SQLite's single writer included.
LOCK_TIMEOUT = 3.0
#: How long the first attempt's step sleeps (the pause covers it and the lock timeout).
STEP = 3.0


@pytest.fixture
def worker_app(database_url: str) -> Iterator[acidic.App]:
    with wa.migrated(database_url) as application:
        yield application


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _row_locked(app: acidic.App, key: str) -> bool:
    """Whether another session holds a lock that would keep a claimer from the run's
    row: SQLite's write lock, or a row lock on PostgreSQL and MariaDB."""
    engine = wa.reader(app)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout = 0")
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                if engine.dialect.name == "mysql":
                    conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
                conn.execute(
                    sa.select(runs.c.id)
                    .where(runs.c.idempotency_key == key)
                    .with_for_update(nowait=engine.dialect.name == "postgresql")
                ).all()
            conn.rollback()
    except sa.exc.OperationalError:
        return True
    return False


def _pause(pid: int, app: acidic.App, key: str) -> None:
    """SIGSTOP the worker at a moment when none of its threads holds a lock that would
    keep a claimer from the run (its heartbeat renews locks in short transactions: a
    process paused inside one would block the takeover, which is not what is tested)."""
    for _ in range(50):
        os.kill(pid, signal.SIGSTOP)
        wa.wait_for(lambda: _stopped(pid), "the worker to stop", 10)
        if not _row_locked(app, key):
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the worker always held a lock on the run when paused")


@pytest.mark.parametrize(
    ("backend", "step"),
    [
        ("postgresql", "hold_step"),
        ("mysql", "hold_step"),
        ("postgresql", "wait_step"),
        ("mysql", "wait_step"),
        ("sqlite", "wait_step"),  # not hold_step: see above
    ],
)
def test_fencing__paused_worker_cannot_commit_after_a_takeover(
    worker_app: acidic.App, database_url: str, tmp_path: Path, step: str, flavour: str
) -> None:
    app = worker_app
    key = f"fenced-{step}"
    job = wa.Napper(hold=STEP) if step == "hold_step" else wa.Napper(wait=STEP)
    options: dict[str, Any] = {"poll_interval": 0.2, "lock_timeout": LOCK_TIMEOUT}
    with wa.worker_processes() as started:
        first = wa.spawn_worker(database_url, tmp_path / "first.log", **options)
        started.append(first)
        first.wait_started(60)
        app.enqueue(job, key=key)
        wa.wait_for(lambda: (f"{step}:1", first.pid) in wa.markers(app, key), f"{step}:1", 30)
        _pause(first.pid, app, key)
        paused = get_run(app, key)
        assert (paused.status, paused.attempts, paused.recovery_point) == ("running", 1, step)

        # Another worker takes the run over once the lock is stale, and finishes it.
        second = wa.spawn_worker(database_url, tmp_path / "second.log", **options)
        started.append(second)
        done = wa.wait_for(
            lambda: (r := app.get(key)) is not None and r.status == "succeeded" and r,
            "the takeover to finish the run",
            60,
            0.05,
            detail=lambda: (app.get(key), second.output()[-3000:]),
        )

        def logs() -> str:
            return f"first:\n{first.output()[-3000:]}\nsecond:\n{second.output()[-3000:]}"

        assert (done.attempts, done.result) == (2, 2), (done, logs())
        assert _stopped(first.pid)  # the first never ran meanwhile

        # The first worker continues: its step ends, its commit is refused.
        os.kill(first.pid, signal.SIGCONT)
        wa.wait_for(
            lambda: "LockLostError" in first.output() or "lock went stale" in first.output(),
            "the first worker to report its lost lock",
            30,
            0.05,
            detail=first.output,
        )
        assert first.alive(), first.output()
        assert wa.effect_steps(app, key) == {"hold_step": 1, "finish": 1}, logs()
        after = get_run(app, key)
        assert (after.status, after.attempts, after.result, after.error) == (
            "succeeded",
            2,
            2,
            None,
        )
        assert after.history == done.history  # the refused commit wrote nothing

        # The first worker's loop survived: alone now, it executes a new run.
        second.signal_group(signal.SIGTERM)
        assert second.wait(30) == 0, second.output()
        app.enqueue(wa.Stamp(n=1), key=f"{key}-next")
        wa.wait_for(lambda: wa.effects(app, f"{key}-next"), "the first worker's next run", 30)
        (row,) = wa.effects(app, f"{key}-next")
        assert row["pid"] == first.pid
        first.signal_group(signal.SIGTERM)
        assert first.wait(30) == 0, first.output()

    effects = wa.effects(app, key)
    if step == "hold_step":  # the paused attempt's write was rolled back
        assert [(e["step"], e["attempt"], e["pid"]) for e in effects] == [
            ("hold_step", 2, second.pid),
            ("finish", 2, second.pid),
        ]
        marked = [("hold_step:1", first.pid), ("hold_step:2", second.pid)]
    else:  # hold_step committed by the first; the foreign step ran on both (at-least-once)
        assert [(e["step"], e["attempt"], e["pid"]) for e in effects] == [
            ("hold_step", 1, first.pid),
            ("finish", 2, second.pid),
        ]
        marked = [("hold_step:1", first.pid), ("wait_step:1", first.pid)]
    assert wa.markers(app, key) == [*marked, ("wait_step:2", second.pid)]
