"""Issue 12: Ctrl-C (KeyboardInterrupt) or SystemExit during an inline ``app.run`` step
records the run as ``interrupted``: released, not a failure (no ``errored`` event, so
not in failure rates), continued by the next ``app.run``, ``resume`` or ``retry``; the
exception still propagates. Proven with a real process sent SIGINT.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from acidic._admin import Admin, RunFilter
from tests.support.interrupt_job import Interruptible, make_app
from tests.support.worker_app import ROOT, wait_for


@pytest.fixture
def app(database_url: str) -> Iterator[acidic.App]:
    application = make_app(database_url)
    application.migrate()
    try:
        yield application
    finally:
        application.close()


def _interrupt(url: str, key: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    marker = tmp_path / f"{key}.started"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.interrupt_job", url, key, str(marker)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, "the step", 120, 0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c__the_run_is_interrupted_not_failed_and_the_next_app_run_continues_it(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    done = _interrupt(database_url, "ctrl-c", tmp_path)
    # The KeyboardInterrupt propagated out of app.run, as Python reports it.
    assert done.returncode != 0
    assert "KeyboardInterrupt" in done.stderr
    run = app.get("ctrl-c")
    assert run is not None
    assert run.status == "interrupted"
    assert run.recovery_point == "wait"
    assert run.error is None
    assert [(e.step, e.event) for e in run.history] == [
        ("first", "started"),
        ("first", "succeeded"),
        ("wait", "started"),
    ]
    admin = Admin(app)
    stats = admin.stats(dt.timedelta(hours=1))
    assert stats.errors == 0
    assert stats.failure_rate is None
    assert stats.by_status["interrupted"] == 1
    assert stats.by_status["failed"] == 0
    (summary,) = admin.list_runs(RunFilter(statuses=("interrupted",))).runs
    assert summary.reason is not None
    assert "interrupted" in summary.reason
    timeline = admin.detail("ctrl-c").timeline  # type: ignore[union-attr]
    assert [(s.step, s.outcome) for s in timeline] == [
        ("first", "succeeded"),
        ("wait", "interrupted"),
    ]
    # Released: the next app.run continues at the interrupted step.
    assert app.run(Interruptible(marker=str(tmp_path / "ctrl-c.started")), key="ctrl-c") == {
        "attempt": 2,
        "first": 1,
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_interrupted__resume_and_retry_accept_it(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    for key in ("to-resume", "to-retry"):
        assert _interrupt(database_url, key, tmp_path).returncode != 0
    assert app.resume("to-resume").status == "pending"
    assert app.retry("to-retry").status == "pending"
    with pytest.raises(acidic.RunStateError):
        app.retry("to-retry")  # pending now


def test_system_exit__in_a_step_is_recorded_as_interrupted_and_propagates(app: acidic.App) -> None:
    class Exits(acidic.Job):
        @acidic.step
        def leave(self, tx: sa.Connection) -> None:
            if self.attempt == 1:
                raise SystemExit(3)

    app.job(name="Exits")(Exits)
    with pytest.raises(SystemExit):
        app.run(Exits(), key="exits")
    run = app.get("exits")
    assert run is not None
    assert run.status == "interrupted"
    assert app.run(Exits(), key="exits") is None
    assert app.get("exits").status == "succeeded"  # type: ignore[union-attr]
