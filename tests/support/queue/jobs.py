"""Jobs and helpers for the worker tests (``test_queue.py``, ``test_schedules.py``).

Workers run in-process, in a thread (:func:`background`), against a fresh database
per backend. Every step notes when it began in ``TIMES`` (key, step) and, when it is
transactional, records one row in ``effects`` through its ``tx`` (so counting rows
proves its database work committed exactly once, and the row ids give the order in
which runs executed); non-transactional steps count their executions in ``CALLS``.
The autouse fixture of each test module clears both.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import sqlalchemy as sa

import acidic
from tests.support.jobs import create_tables, effects

T = TypeVar("T")

#: The App's lock timeout in these tests (seconds): no test here relies on a lock
#: expiring (leave_as_crashed writes an expired lock), and a short one would let a
#: heavily loaded machine starve heartbeats into takeovers of live runs.
LOCK_TIMEOUT = 5.0
#: The workers' poll interval (seconds): short, so that tests are quick everywhere.
POLL = 0.05
#: Queues declared by the test App.
QUEUES = ("default", "busy", "quiet", "other")

#: When each execution of a step began: (key, step) -> [aware UTC datetimes].
TIMES: defaultdict[tuple[str, str], list[dt.datetime]] = defaultdict(list)
#: Executions of non-transactional steps: (key, step) -> count.
CALLS: Counter[tuple[str, str]] = Counter()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: Racy's handshake: it sets READ once it read no signal, then waits for SENT.
READ = threading.Event()
SENT = threading.Event()


def reset() -> None:
    TIMES.clear()
    CALLS.clear()
    READ.clear()
    SENT.clear()


class Boom(Exception):
    """What the failing steps raise."""


def _mark(job: acidic.Job, step: str, tx: sa.Connection | None = None) -> None:
    TIMES[job.key, step].append(utcnow())
    if tx is None:
        CALLS[job.key, step] += 1
    else:
        tx.execute(effects.insert().values(run_key=job.key, step=step))


class Note(acidic.Job):
    """One transactional step: records its effect, pauses ``pause`` s, returns ``tag``."""

    tag: str = ""
    pause: float = 0.0

    @acidic.step
    def note(self, tx: sa.Connection) -> acidic.Response:
        _mark(self, "note", tx)
        if self.pause:
            time.sleep(self.pause)
        return acidic.Response(self.tag)


class Other(acidic.Job):
    """Another job, to reuse a key across jobs."""

    tag: str = ""

    @acidic.step
    def only(self, tx: sa.Connection) -> None:
        _mark(self, "only", tx)


class Napper(acidic.Job):
    """``before`` parks the run with a Sleep (``how``: seconds, timedelta or until),
    ``after`` finishes it."""

    how: str = "seconds"
    seconds: float = 0.5
    until: str = ""  # ISO 8601, for how == "until"

    @acidic.step
    def before(self, tx: sa.Connection) -> acidic.Sleep:
        _mark(self, "before", tx)
        if self.how == "until":
            return acidic.Sleep(until=dt.datetime.fromisoformat(self.until))
        if self.how == "timedelta":
            return acidic.Sleep(dt.timedelta(seconds=self.seconds))
        return acidic.Sleep(self.seconds)

    @acidic.step
    def after(self, tx: sa.Connection) -> acidic.Response:
        _mark(self, "after", tx)
        return acidic.Response("awake")


class SleepLast(acidic.Job):
    """Returns a Sleep from its only (hence last) step."""

    max_attempts = 1

    @acidic.step
    def only(self, tx: sa.Connection) -> acidic.Sleep:
        _mark(self, "only", tx)
        return acidic.Sleep(0.1)


class Gate(acidic.Job):
    """``wait`` halts on its first pass unless the signal ``approved`` was delivered;
    it stores what ``self.signal`` returned in the context."""

    @acidic.step
    def prepare(self, tx: sa.Connection) -> None:
        _mark(self, "prepare", tx)

    @acidic.step
    def wait(self, tx: sa.Connection) -> acidic.Halt | None:
        _mark(self, "wait", tx)
        self.ctx["passes"] = self.ctx.get("passes", 0) + 1
        self.ctx["unknown"] = self.signal("never-sent")
        approval = self.signal("approved")
        self.ctx["approval"] = approval
        if approval is None and self.ctx["passes"] == 1:
            return acidic.Halt()
        return None

    @acidic.step
    def finish(self, tx: sa.Connection) -> acidic.Response:
        _mark(self, "finish", tx)
        return acidic.Response(dict(self.ctx))


class Flaky(acidic.Job):
    """Fails its first ``failures`` attempts, then returns the attempt number; backs
    off ``delay`` seconds."""

    failures: int = 2
    delay: float = 0.05

    def backoff(self, attempt: int) -> float:
        return self.delay

    @acidic.step
    def work(self, tx: sa.Connection) -> acidic.Response:
        _mark(self, "work", tx)
        if self.attempt <= self.failures:
            raise Boom(f"attempt {self.attempt} failed")
        return acidic.Response(self.attempt)


class Doomed(acidic.Job):
    """Always fails; two attempts."""

    max_attempts = 2

    def backoff(self, attempt: int) -> float:
        return 0.05

    @acidic.step
    def work(self, tx: sa.Connection) -> None:
        _mark(self, "work", tx)
        raise Boom(f"attempt {self.attempt} failed")


class Picky(acidic.Job):
    """Raises a ValueError, which it discards on."""

    discard_on = (ValueError,)

    def backoff(self, attempt: int) -> float:
        return 0.05

    @acidic.step
    def work(self, tx: sa.Connection) -> None:
        _mark(self, "work", tx)
        raise ValueError("bad input")


class Later(acidic.Job):
    """Asks for a retry after ``after`` seconds on its first attempt."""

    after: float = 0.2

    @acidic.step
    def work(self, tx: sa.Connection) -> acidic.Response:
        _mark(self, "work", tx)
        if self.attempt == 1:
            raise acidic.Retry(after=self.after)
        return acidic.Response(self.attempt)


class Insistent(acidic.Job):
    """Always asks for a retry; two attempts."""

    max_attempts = 2

    @acidic.step
    def work(self, tx: sa.Connection) -> None:
        _mark(self, "work", tx)
        raise acidic.Retry(after=0.01)


class Lingering(acidic.Job):
    """first (tx), linger (no tx, sleeps ``seconds``), finish (tx, returns the attempt)."""

    seconds: float = 0.5

    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        _mark(self, "first", tx)

    @acidic.step(transactional=False)
    def linger(self) -> None:
        _mark(self, "linger")
        time.sleep(self.seconds)

    @acidic.step
    def finish(self, tx: sa.Connection) -> acidic.Response:
        _mark(self, "finish", tx)
        return acidic.Response(self.attempt)


class Stubborn(acidic.Job):
    """A non-transactional step that works ``seconds`` and then fails; short backoff.
    (Not transactional: on SQLite a step's transaction would hold the write lock, and
    app.cancel would wait for the step to end.)"""

    seconds: float = 0.4

    def backoff(self, attempt: int) -> float:
        return 0.3

    @acidic.step(transactional=False)
    def work(self) -> None:
        _mark(self, "work")
        time.sleep(self.seconds)
        raise Boom(f"attempt {self.attempt} failed")


class Racy(acidic.Job):
    """``wait`` reads the signal ``go``; if there is none, it tells the test (READ),
    waits until the test sent it (SENT), and halts. No transaction is open meanwhile."""

    @acidic.step(transactional=False)
    def wait(self) -> acidic.Halt | None:
        _mark(self, "wait")
        if self.signal("go") is None:
            READ.set()
            SENT.wait(5)
            return acidic.Halt()
        return None

    @acidic.step
    def finish(self, tx: sa.Connection) -> acidic.Response:
        _mark(self, "finish", tx)
        return acidic.Response(self.signal("go"))


class ParkThenFlaky(acidic.Job):
    """``park`` sleeps (``how`` = "sleep") or halts (``how`` = "halt") once; ``work``
    fails the first time it runs, then succeeds. Two attempts: enough for one error."""

    max_attempts = 2
    how: str = "sleep"

    def backoff(self, attempt: int) -> float:
        return 0.05

    @acidic.step
    def park(self, tx: sa.Connection) -> acidic.Sleep | acidic.Halt | None:
        _mark(self, "park", tx)
        if self.how == "sleep":
            return acidic.Sleep(0.05)
        if len(TIMES[self.key, "park"]) == 1:
            return acidic.Halt()
        return None

    @acidic.step
    def work(self, tx: sa.Connection) -> acidic.Response:
        _mark(self, "work", tx)
        if len(TIMES[self.key, "work"]) == 1:
            raise Boom("first try of work")
        return acidic.Response(self.attempt)


class Anything(acidic.Job):
    """Takes any value as its argument."""

    payload: Any = None

    @acidic.step
    def keep(self, tx: sa.Connection) -> None:
        _mark(self, "keep", tx)


class Unregistered(acidic.Job):
    """Never registered with the App."""

    @acidic.step
    def nothing(self, tx: sa.Connection) -> None:
        _mark(self, "nothing", tx)


JOBS: dict[str, type[acidic.Job]] = {
    "queue.Note": Note,
    "queue.Other": Other,
    "queue.Napper": Napper,
    "queue.SleepLast": SleepLast,
    "queue.Gate": Gate,
    "queue.Flaky": Flaky,
    "queue.Doomed": Doomed,
    "queue.Picky": Picky,
    "queue.Later": Later,
    "queue.Insistent": Insistent,
    "queue.Lingering": Lingering,
    "queue.Anything": Anything,
    "queue.Stubborn": Stubborn,
    "queue.Racy": Racy,
    "queue.ParkThenFlaky": ParkThenFlaky,
}


def build_app(database_url: str) -> acidic.App:
    """A migrated App with short locks, the test queues and the jobs above."""
    app = acidic.App(database_url, lock_timeout=LOCK_TIMEOUT, queues=QUEUES)
    app.migrate()
    create_tables(app.engine)
    for name, cls in JOBS.items():
        app.job(name=name)(cls)
    return app


# -- workers in a thread -------------------------------------------------------------


class Background:
    """A worker running in a thread of this process."""

    def __init__(self, app: acidic.App, **options: Any) -> None:
        options.setdefault("poll_interval", POLL)
        self.worker = app.worker(**options)
        self.code: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="test-worker", daemon=True)

    def _main(self) -> None:
        try:
            self.code = self.worker.run(install_signal_handlers=False)
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = 10.0) -> int:
        """Stop gracefully and wait; the worker's exit code."""
        self.worker.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        if self.error is not None:
            raise self.error
        assert self.code is not None
        return self.code


@contextmanager
def background(app: acidic.App, **options: Any) -> Iterator[Background]:
    """Run a worker of ``app`` in a thread for the duration of the block."""
    bg = Background(app, **options)
    bg.thread.start()
    try:
        yield bg
    finally:
        bg.stop()


# -- polling and reading ---------------------------------------------------------------


def wait_for(
    predicate: Callable[[], T | Literal[False] | None], timeout: float = 5.0, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.005)


def get(app: acidic.App, key: str) -> acidic.Run:
    run = app.get(key)
    assert run is not None, f"no run {key!r}"
    return run


def wait_status(app: acidic.App, key: str, *statuses: str, timeout: float = 5.0) -> acidic.Run:
    """Wait until the run of ``key`` has one of ``statuses``; return it."""

    def check() -> acidic.Run | None:
        run = app.get(key)
        return run if run is not None and run.status in statuses else None

    return wait_for(check, timeout, f"{key!r} to be {' or '.join(statuses)}")


def events(run: acidic.Run) -> list[tuple[str, str, int]]:
    return [(e.step, e.event, e.attempt) for e in run.history]


def count_runs(app: acidic.App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM acidic_runs")).scalar_one())


def executed_keys(app: acidic.App) -> list[str]:
    """Run keys in the order their first transactional step committed."""
    with app.engine.connect() as conn:
        rows = conn.execute(sa.select(effects.c.run_key).order_by(effects.c.id)).scalars()
        return list(rows)


def leave_as_crashed(app: acidic.App, key: str, *, attempts: int) -> None:
    """Make the run of ``key`` look exactly as a worker SIGKILLed in its first step
    leaves it: running, locked by a dead owner whose lock has expired, the attempt
    counted and the step's start recorded."""
    from acidic._storage._schema import history, runs

    past = utcnow() - dt.timedelta(seconds=10)
    with app.engine.begin() as conn:
        run_id, step = conn.execute(
            sa.select(runs.c.id, runs.c.recovery_point).where(runs.c.idempotency_key == key)
        ).one()
        conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(
                status="running",
                lock_token="d" * 32,
                locked_at=past,
                lock_expires_at=past + dt.timedelta(seconds=LOCK_TIMEOUT),
                last_run_at=past,
                run_at=None,
                attempts=attempts,
            )
        )
        conn.execute(
            history.insert().values(
                run_id=run_id, step=step, event="started", at=past, attempt=attempts
            )
        )


def seconds(delta: dt.timedelta) -> float:
    return delta.total_seconds()
