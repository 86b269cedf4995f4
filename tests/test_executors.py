"""Runs handed to another queue (Celery, RQ, Dramatiq) through its stock worker
command, on a real broker (RabbitMQ, Redis) and a real database: every outcome of a
step maps onto the queue's own delayed deliveries, and the relay republishes what a
broker lost or a crash never published."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from tests.support.cli import invoke_cli
from tests.support.dashboard.helpers import free_port
from tests.support.executors import app as support
from tests.support.executors.harness import KINDS, QueueWorld, broker_available
from tests.support.procs import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(params=("postgresql", pytest.param("mysql", marks=pytest.mark.storm)))
def backend(request: pytest.FixtureRequest) -> str:
    """PostgreSQL, and MariaDB in CI's second phase (the tests run the queues' real
    workers: seconds each). SQLite is refused: the queues' workers fork."""
    return str(request.param)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    broker_available(str(request.param))
    return str(request.param)


@pytest.fixture
def world(kind: str, database_url: str, tmp_path: Path) -> Iterator[QueueWorld]:
    w = QueueWorld(kind, database_url, tmp_path)
    try:
        yield w
    finally:
        w.close()


def test_outcomes__map_onto_the_queue(world: QueueWorld) -> None:
    """A ride, Sleep, Retry(after), Halt + resume, Halt + signal, cancel midway and
    max_attempts, all through the queue's worker; the executor is named on each run."""
    app = world.app
    world.start_worker()
    ride = app.enqueue(support.Ride(rider="ann"), "ride")
    assert ride.executor == world.kind
    napper = app.enqueue(support.Napper(seconds=1.0), "napper")
    retrier = app.enqueue(support.Retrier(after=1.0), "retrier")
    resumed = app.enqueue(support.Waiter(), "resumed")
    signalled = app.enqueue(support.Waiter(), "signalled")
    failer = app.enqueue(support.Failer(), "failer")
    slow = app.enqueue(support.Slow(pause=0.4), "slow")

    runs = world.wait_for([ride.key])
    assert runs[ride.key].result == "ann"
    assert world.effects(ride.key) == {"book": 1, "confirm": 1}
    assert (
        world.all_calls()[ride.key] == {f"{ride.key}:charge"}
        or len(world.all_calls()[ride.key]) == 1
    )

    # cancel at the next step boundary: the run started, then stops
    world.wait_for([slow.key], lambda r: r.status == "running" and r.recovery_point != "s1")
    app.cancel(slow.key)
    world.wait_for([slow.key], lambda r: r.status == "cancelled")
    assert world.effects(slow.key).get("s5") is None

    halted = world.wait_for([resumed.key, signalled.key], lambda r: r.status == "halted")
    assert all(r.executor == world.kind for r in halted.values())
    time.sleep(0.5)  # nothing wakes a halted run by itself
    assert app.get(resumed.key).status == "halted"  # type: ignore[union-attr]
    app.signal(signalled.key, "go", "green")

    runs = world.wait_for([napper.key, retrier.key, signalled.key], timeout=60)
    assert runs[napper.key].result == "awake"
    # Sleep(1) parked it: the second step came at least a second after the first.
    events = {(e.step, e.event): e.time for e in runs[napper.key].history}
    assert events["after", "started"] - events["before", "succeeded"] >= dt.timedelta(seconds=0.9)
    assert runs[retrier.key].result == 2
    assert runs[retrier.key].attempts == 2
    errored = [e for e in runs[retrier.key].history if e.event == "errored"]
    assert [e.time for e in runs[retrier.key].history if e.event == "started"][-1] - errored[
        0
    ].time >= dt.timedelta(seconds=0.9)
    assert runs[signalled.key].result == "green"

    # resume: the halted step runs again (still no "go" signal: it halts again)
    app.resume(resumed.key)
    world.wait_for([resumed.key], lambda r: r.status == "halted" and r.attempts >= 2)
    app.signal(resumed.key, "go", "late")
    assert world.wait_for([resumed.key])[resumed.key].result == "late"

    failed = world.wait_for([failer.key], lambda r: r.status == "failed")[failer.key]
    assert failed.attempts == 2
    assert failed.max_attempts == 2
    assert failed.error is not None
    assert "failing attempt 2" in failed.error.message


def test_resume__publishes_the_halted_run(world: QueueWorld) -> None:
    app = world.app
    world.start_worker()
    run = app.enqueue(support.Waiter(), "w")
    world.wait_for([run.key], lambda r: r.status == "halted")
    app.signal(run.key, "go", "x")  # stored; the run is woken and published
    assert world.wait_for([run.key])[run.key].result == "x"
    again = app.enqueue(support.Waiter(), "w2")
    world.wait_for([again.key], lambda r: r.status == "halted")
    app.resume(again.key)  # runs the step again: no signal, halts again
    world.wait_for([again.key], lambda r: r.status == "halted" and r.attempts >= 2, timeout=30)


def test_lost_messages__the_relay_republishes_them(world: QueueWorld) -> None:
    """The broker's queue purged after enqueueing: nothing runs until a relay pass
    republishes the due runs; then every run completes."""
    app = world.app
    keys = [app.enqueue(support.Ride(rider=f"r{i}"), f"lost-{i}").key for i in range(5)]
    world.purge()
    world.start_worker()
    time.sleep(world.grace + 0.5)
    assert all(app.get(k).status == "pending" for k in keys)  # type: ignore[union-attr]
    done = world.relay_once()
    assert done.returncode == 0, done.stderr.decode()
    assert b"republished 5 run(s)" in done.stdout
    again = world.relay_once()  # within the grace: published once
    assert b"republished 0 run(s)" in again.stdout
    world.wait_for(keys)
    assert all(world.effects(k) == {"book": 1, "confirm": 1} for k in keys)


# RQ has no scheduler of its own for the relay (`acidic relay` or `rq cron`, see
# docs/executors.md): this test is for the two queues that do.
@pytest.mark.parametrize("kind", ["celery", "dramatiq"], indirect=True)
def test_periodic_relay__scheduled_by_the_queue_itself(world: QueueWorld) -> None:
    """Lost messages come back without `acidic relay`: Celery beat runs the executor's
    relay task, Dramatiq's workers run the relay middleware."""
    app = world.app
    keys = [app.enqueue(support.Ride(rider=f"p{i}"), f"periodic-{i}").key for i in range(3)]
    world.purge()
    world.start_worker(ACIDIC_EXEC_RELAY_EVERY="0.5")
    if world.kind == "celery":
        world.start_beat(0.5)
    world.wait_for(keys, timeout=60)


def test_crash_between_commit_and_publish__the_relay_covers_it(
    world: QueueWorld, tmp_path: Path
) -> None:
    """A process SIGKILLed right after its enqueue committed, before it published:
    the run is in the database only; the long-running relay republishes it."""
    script = (
        "import os, signal\n"
        "from tests.support.executors import app as m\n"
        "ex = m.app.executor\n"
        "ex.send = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "m.app.enqueue(m.Ride(rider='crash'), 'crashed')\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=world.env(), timeout=60, check=False
    )
    assert child.returncode == -signal.SIGKILL
    assert world.app.get("crashed").status == "pending"  # type: ignore[union-attr]
    world.start_worker()
    relay = world.start_relay()
    assert world.wait_for(["crashed"])["crashed"].result == "crash"
    relay.send_signal(signal.SIGTERM)
    assert relay.wait(15) == 0


def test_enqueue_in_a_transaction__published_after_commit_only(world: QueueWorld) -> None:
    app = world.app
    world.start_worker()
    with app.engine.connect() as conn:
        with conn.begin():
            app.enqueue(support.Ride(rider="tx"), "in-tx", connection=conn)
            time.sleep(0.5)  # not published yet: nothing can run it
            row = conn.execute(
                sa.text("SELECT COUNT(*) FROM exec_effects WHERE run_key = 'in-tx'")
            ).scalar()
            assert row == 0
        with conn.begin():
            app.enqueue(support.Ride(rider="rolled back"), "rolled-back", connection=conn)
            conn.rollback()
    assert world.wait_for(["in-tx"])["in-tx"].result == "tx"
    assert app.get("rolled-back") is None


def test_killed_worker__run_taken_over_after_its_lock(world: QueueWorld) -> None:
    """A queue worker SIGKILLed mid-step: the run's lock expires, the queue's
    redelivery or the relay hands it out again, and it completes once."""
    app = world.app
    world.start_worker()
    world.start_relay()
    run = app.enqueue(support.Ride(rider="k", pause=1.5), "killed")
    world.wait_for([run.key], lambda r: r.status == "running")
    time.sleep(0.5)
    world.kill_workers()
    world.start_worker()
    done = world.wait_for([run.key], timeout=60)[run.key]
    assert done.result == "k"
    assert done.attempts >= 2
    assert world.effects(run.key) == {"book": 1, "confirm": 1}


def test_sqlite__refused_with_a_clear_error(tmp_path: Path) -> None:
    from redis import Redis

    from acidic.rq import RQExecutor

    with pytest.raises(acidic.InvalidArgumentError, match="SQLite"):
        acidic.App(f"sqlite:///{tmp_path / 'x.db'}", executor=RQExecutor(Redis()))


def test_relay_without_executor__refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "acidic",
            "relay",
            "--app",
            "tests.support.worker_app:app",
            "--once",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ACIDIC_TEST_URL": f"sqlite:///{tmp_path / 'w.db'}",
        },
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert b"has no executor" in out.stderr


@pytest.mark.parametrize("kind", ["rq"], indirect=True)
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_cli_and_dashboard__name_the_executor(world: QueueWorld, tmp_path: Path) -> None:
    """`acidic runs show` (text and JSON) and the dashboard's run page name the executor
    of a run handed to a queue (here still pending: no worker)."""
    world.app.enqueue(support.Ride(rider="shown"), "shown")
    base = ["runs", "show", "shown", "--database-url", world.url]
    text = invoke_cli(*base, cwd=ROOT)
    assert text.returncode == 0, text.stderr
    assert re.search(r"executor\s+rq", text.stdout), text.stdout
    out = invoke_cli(*base, "--json", cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["executor"] == "rq"

    port = free_port()
    argv = [sys.executable, "-m", "acidic", "dashboard", "--database-url", world.url]
    with (tmp_path / "dashboard.log").open("wb") as log:
        server = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        page = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/run?key=shown") as reply:
                    page = reply.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert re.search(r'<dd id="run-executor">rq</dd>', page), page[:2000]
    finally:
        server.terminate()
        server.wait(15)


@pytest.mark.parametrize("kind", ["rq"], indirect=True)
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_deliveries__unknown_job_dropped_missing_row_looked_at_again(world: QueueWorld) -> None:
    """What a queue's task does with odd messages, called as the RQ job function is: a
    run of a job this worker's App does not register is left to the relay (no message
    bounced every few seconds); a key with no row yet (the enqueuing commit still on its
    way) comes back shortly, a bounded number of times."""
    from redis import Redis

    from acidic.rq import RQExecutor, execute

    world.app.enqueue(support.Ride(rider="x"), "unknown-job")
    queue = world.executor.queue

    def messages() -> int:  # waiting now, or delayed (RQ's scheduled jobs)
        return int(queue.count) + int(queue.scheduled_job_registry.count)

    before = messages()
    other = RQExecutor(Redis.from_url(support.REDIS_URL), queue=world.queue, name="other")
    bare = acidic.App(world.url, executor=other)  # registers no job
    try:
        assert execute("other", "unknown-job") == "unknown job"
        assert messages() == before
        assert execute("other", "no-such-key") == "missing"
        assert messages() == before + 1  # looked at again shortly
        assert execute("other", "no-such-key", 7) == "missing"
        assert messages() == before + 1  # the last try: dropped
        assert bare.get("unknown-job").status == "pending"  # type: ignore[union-attr]
    finally:
        bare.close()
        other.redis.close()
