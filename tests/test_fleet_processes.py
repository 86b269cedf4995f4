"""Issue 12 with real worker processes: a worker killed by SIGKILL leaves its run
reported orphaned (with the dead worker and the takeover time) until another worker
takes it over; a run of a job no worker knows is flagged and logged once; a database
outage costs one log line per failed claim, with a back-off that keeps growing.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from acidic._admin import Admin
from acidic._storage._schema import runs
from tests.support import worker_app as wa
from tests.support.cli import invoke_cli
from tests.support.pg_cluster import PrivateCluster

pytestmark = pytest.mark.slow

#: Short locks: the dead worker's run is taken over within seconds.
LOCK_TIMEOUT = 6.0
UNKNOWN = "no live worker knows job 'Ghost' on queue 'default'"
#: Seconds between the idle second worker's checks for such runs (5 s in production).
UNKNOWN_CHECK = 1.0


class Ghost(acidic.Job):
    """A job that no worker of these tests registers."""

    @acidic.step
    def nothing(self, tx: sa.Connection) -> None:
        pass


@pytest.fixture
def app(database_url: str) -> Iterator[acidic.App]:
    with wa.migrated(database_url) as application:
        yield application


def _cli_json(url: str, *args: str) -> Any:
    done = invoke_cli(*args, "--json", url=url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.timeout(400)
def test_sigkill__run_orphaned_with_the_dead_worker_then_taken_over_unknown_job_warned_once(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    ghosts = acidic.App(database_url)
    ghosts.job(name="Ghost")(Ghost)
    with wa.worker_processes() as workers:
        first = wa.spawn_worker(database_url, tmp_path / "first.log", lock_timeout=LOCK_TIMEOUT)
        workers.append(first)
        first.wait_started(timeout=120)
        app.enqueue(wa.Napper(wait=600.0), key="victim")
        wa.wait_for(
            lambda: ("wait_step:1", first.pid) in wa.markers(app, "victim"),
            "the run to be in its long step",
            120,
            0.05,
        )
        (dead,) = _cli_json(database_url, "workers")
        assert dead["pid"] == first.pid
        assert dead["runs"] == ["victim"]
        first.kill()  # SIGKILL to its process group

        admin = Admin(app)
        wa.wait_for(lambda: admin.summary("victim").orphaned, "the run orphaned", 60, 0.1)  # type: ignore[union-attr]
        shown = _cli_json(database_url, "runs", "show", "victim")
        assert shown["status"] == "running"
        assert shown["orphaned"] is True
        assert shown["owner"] == dead["id"]
        assert shown["takeover_at"] == shown["lock_expires_at"]
        assert shown["takeover_at"] is not None
        assert "orphaned" in shown["warning"]
        orphans = _cli_json(database_url, "runs", "list", "--orphaned")["runs"]
        assert [r["key"] for r in orphans] == ["victim"]

        # A run of a job no live worker knows: flagged in the CLI.
        ghosts.enqueue(Ghost(), key="ghost")
        listed = {r["key"]: r for r in _cli_json(database_url, "runs", "list")["runs"]}
        assert listed["ghost"]["warning"] == UNKNOWN

        second = wa.spawn_worker(
            database_url,
            tmp_path / "second.log",
            lock_timeout=LOCK_TIMEOUT,
            extra_env={wa.UNKNOWN_CHECK_ENV: repr(UNKNOWN_CHECK)},
        )
        workers.append(second)
        second.wait_started(timeout=120)
        wa.wait_for(
            lambda: wa.status_counts(app).get("succeeded", 0) == 1,
            "the takeover to finish the run",
            120,
            0.1,
            second.output,
        )
        taken = _cli_json(database_url, "runs", "show", "victim")
        assert taken["status"] == "succeeded"
        assert taken["attempts"] == 2
        assert taken["orphaned"] is False
        assert taken["owner"] is None

        # The idle second worker logs the warning once, however many polls follow.
        wa.wait_for(lambda: UNKNOWN in second.output(), "the warning", 60, 0.2, second.output)
        time.sleep(3 * UNKNOWN_CHECK + 0.5)  # more than two checks
        assert second.output().count("no live worker knows job") == 1
        still = {r["key"]: r for r in _cli_json(database_url, "runs", "list")["runs"]}
        assert still["ghost"]["status"] == "pending"
        second.signal_group(signal.SIGTERM)
        assert second.wait(60) == 0
    ghosts.close()
    # Stopped gracefully: gone from the registry; the killed one is shown as gone.
    (left,) = _cli_json(database_url, "workers")
    assert left["id"] == dead["id"]
    assert left["live"] is False


_FAILED = re.compile(r"claiming failed: (.*); retrying in ([0-9.]+) s")


@pytest.mark.private_postgresql
@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", ["postgresql"])
def test_outage__one_line_per_failed_claim_no_traceback_and_the_back_off_keeps_growing(
    app: acidic.App, database_url: str, private_postgresql: PrivateCluster, tmp_path: Path
) -> None:
    with wa.worker_processes() as workers:
        worker = wa.spawn_worker(database_url, tmp_path / "worker.log", poll_interval=0.2)
        workers.append(worker)
        worker.wait_started(timeout=120)
        try:
            private_postgresql.stop()
            time.sleep(6)
            private_postgresql.start()
            private_postgresql.ensure_running()
            time.sleep(3)  # it claims (nothing) again meanwhile
            private_postgresql.stop()
            time.sleep(6)
        finally:
            private_postgresql.ensure_running()
        wa.wait_for(
            lambda: "claiming works again" in worker.output().rsplit("retrying", 1)[-1],
            "recovery",
            60,
            0.2,
            worker.output,
        )
        log = worker.output()
    failed = [(m[1], float(m[2])) for m in _FAILED.finditer(log)]
    assert failed, log
    assert "Traceback" not in log
    # The connection cut by the shutdown (with the server's notice, or, when the cut
    # comes first, without it), then the server refusing new ones.
    cut = ("cannot connect", "terminating connection", "server closed the connection")
    assert all(any(c in reason for c in cut) for reason, _ in failed), "\n".join(
        f"{d} {r}" for r, d in failed
    )
    delays = [d for _, d in failed]
    # Growing, capped, and not reset by the short recovery in between.
    assert delays == sorted(delays), delays
    assert max(delays) <= 5.0
    assert len(failed) <= 20, log
    # Every line about the outage is one of a few kinds, one line each.
    outage_lines = [
        line for line in log.splitlines() if "failed" in line or "lost" in line or "Error" in line
    ]
    assert len(outage_lines) <= len(failed) + 6, "\n".join(outage_lines)


#: Runs of 0.2 s each, four at a time: far more than the test lets the workers finish.
RUNS = 1000


def _claimed(app: acidic.App) -> int:
    """Runs claimed at least once (attempts count claims)."""
    with wa.reader(app).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(runs.c.attempts > 0)).scalar_one())


@pytest.mark.timeout(400)
def test_pause__two_busy_workers_claim_nothing_from_it_after_one_second_and_resume_claims_again(
    app: acidic.App, database_url: str, tmp_path: Path
) -> None:
    # SQLite has one writer, and its waiters get no turn in order: steps holding the
    # write lock back to back could starve the pause's transaction, so there steps are
    # shorter and fewer at once.
    sqlite = database_url.startswith("sqlite")
    with wa.worker_processes() as workers:
        for i in range(2):
            log = tmp_path / f"w{i}.log"
            workers.append(wa.spawn_worker(database_url, log, concurrency=1 if sqlite else 2))
        for worker in workers:
            worker.wait_started(timeout=120)
        pause = 0.05 if sqlite else 0.2
        with app.engine.begin() as conn:
            for i in range(RUNS):
                app.enqueue(wa.Drain(n=i, pause=pause), key=f"busy-{i:04d}", connection=conn)
        wa.wait_for(lambda: _claimed(app) >= 8, "both workers busy", 120, 0.05)
        assert app.pause_queue("default") is True
        time.sleep(1.0)
        at_one_second = _claimed(app)
        time.sleep(3.0)
        assert _claimed(app) == at_one_second
        assert at_one_second < RUNS
        # Enqueueing still works on a paused queue.
        app.enqueue(wa.Drain(n=1000), key="while-paused")
        assert app.get("while-paused").status == "pending"  # type: ignore[union-attr]
        app.resume_queue("default")
        wa.wait_for(lambda: _claimed(app) > at_one_second, "claims again", 60, 0.05)
