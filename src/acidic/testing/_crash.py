"""Crash points: run a job, crash it at each point where a crash can happen, resume it.

A crash point is a moment of a run at which a process can die with a different
outcome: before each statement that writes (the job's own statements in its steps
included), before each COMMIT, and after each COMMIT took effect but before the client
heard back. The points are recorded by running the job once; then, for each point, a
fresh run of the job (its own key) is crashed exactly there and resumed to its end, as a
restarted process would resume it, and the test checks its invariants.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from .._engine import current_step
from .._errors import AcidicError
from .._job import Job
from .._run import Run, RunStatus
from .._storage import in_autocommit
from ._clock import Clock

if TYPE_CHECKING:
    from .._app import App

__all__ = ["CrashMode", "CrashPoint", "CrashedRun", "InjectedCrash", "crash_points"]

#: ``"raise"``: the crash is an :class:`InjectedCrash` raised in this process;
#: ``"kill"``: the job runs in a child process that is killed with SIGKILL.
CrashMode = Literal["raise", "kill"]
PointKind = Literal["write", "commit", "acknowledgement"]

#: How many times a crashed run is resumed before crash_points gives up on it.
MAX_RESUMES = 50

_WRITE = re.compile(
    # An optional WITH clause (acidic's progress is an UPDATE in a CTE on PostgreSQL).
    r"^\s*(?:WITH\b.*?\)\s*)?"
    r"(INSERT\s+(?:IGNORE\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+([^\s(]+)",
    re.IGNORECASE | re.DOTALL,
)


class InjectedCrash(BaseException):
    """The crash injected at a crash point (mode ``"raise"``).

    A ``BaseException``, like ``KeyboardInterrupt``: no ``except Exception`` of the job
    or of acidic records it, and once it is raised every further statement of the
    crashed execution raises it too, so nothing more reaches the database, as if the
    process had died there.
    """


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """A moment of a run at which a crash was injected."""

    #: Its position among the run's crash points (0 is the first).
    index: int
    #: The step executing at that moment; None while the key is being claimed.
    step: str | None
    #: ``write``: before a statement that writes; ``commit``: before a COMMIT is sent;
    #: ``acknowledgement``: the COMMIT (or a statement in autocommit) took effect, but
    #: the client crashed before it heard back.
    kind: PointKind
    #: For ``write`` points, the statement's verb and table (``INSERT INTO rides``); for
    #: an ``acknowledgement`` of a statement that committed on its own (acidic writes
    #: one-statement progress in autocommit on PostgreSQL), that statement.
    statement: str | None = None

    def __str__(self) -> str:
        where = "claiming the key" if self.step is None else f"step {self.step}"
        what = {
            "write": f"before {self.statement}",
            "commit": "before COMMIT",
            # A statement is named when it committed on its own (autocommit).
            "acknowledgement": f"after {self.statement or 'the COMMIT'} took effect, before the "
            "client heard back",
        }[self.kind]
        return f"#{self.index} {where}: {what}"


@dataclass(frozen=True, slots=True)
class CrashedRun:
    """A run crashed at :attr:`point`, then resumed to its end."""

    point: CrashPoint
    #: The run's idempotency key (one per crash point).
    key: str
    #: Whether the execution reached the point and crashed there (False if this run took
    #: another path, e.g. because the job is not deterministic).
    crashed: bool
    #: The run after resuming: ``succeeded`` for a job that can finish, else where it
    #: stopped (``failed``, ``halted``).
    run: Run


class _Injector:
    """Counts the crash points of one execution in this thread, and crashes at one."""

    def __init__(
        self,
        engine: sa.Engine,
        crash_at: int | None,
        crash: Callable[[CrashPoint, sa.Connection], None],
    ) -> None:
        self._engine = engine
        self._crash_at = crash_at
        self._crash = crash
        self._thread = threading.get_ident()
        self._active = False
        self.points: list[CrashPoint] = []
        self.crashed: CrashPoint | None = None
        # Bound once: sa.event.remove needs the very objects that were listened with.
        self._on_execute_listener = self._on_execute
        self._on_commit_listener = self._on_commit
        self._after_execute_listener = self._after_execute

    # Listened on every Engine: an async job's statements go through the asyncio engine
    # of the App (one per event loop, made while the job runs), not ``app.engine``;
    # :meth:`_mine` keeps those of this thread on the App's database.

    def __enter__(self) -> _Injector:
        sa.event.listen(sa.Engine, "before_cursor_execute", self._on_execute_listener)
        sa.event.listen(sa.Engine, "commit", self._on_commit_listener)
        sa.event.listen(sa.Engine, "after_cursor_execute", self._after_execute_listener)
        self._active = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._active = False
        sa.event.remove(sa.Engine, "before_cursor_execute", self._on_execute_listener)
        sa.event.remove(sa.Engine, "commit", self._on_commit_listener)
        sa.event.remove(sa.Engine, "after_cursor_execute", self._after_execute_listener)

    def _mine(self, conn: sa.Connection) -> bool:
        if not self._active or threading.get_ident() != self._thread:
            return False
        engine = conn.engine
        return engine is self._engine or _database(engine.url) == _database(self._engine.url)

    def _dead(self) -> None:
        if self.crashed is not None:
            raise InjectedCrash(f"the execution crashed at {self.crashed}")

    def _reached(self, conn: sa.Connection, kind: PointKind, statement: str | None = None) -> None:
        point = CrashPoint(len(self.points), current_step.get(), kind, statement)
        self.points.append(point)
        if point.index == self._crash_at:
            self.crashed = point
            self._crash(point, conn)

    def _on_execute(
        self,
        conn: sa.Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if not self._mine(conn):
            return
        self._dead()
        write = _WRITE.match(statement)
        if write is not None:
            self._reached(conn, "write", _describe(write))

    def _after_execute(
        self,
        conn: sa.Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        # A write in autocommit took effect when it returned: that is its commit.
        if not self._mine(conn) or not in_autocommit(conn):
            return
        write = _WRITE.match(statement)
        if write is not None:
            self._reached(conn, "acknowledgement", _describe(write))

    def _on_commit(self, conn: sa.Connection) -> None:
        if not self._mine(conn) or in_autocommit(conn):  # nothing left to commit
            return
        self._dead()
        self._reached(conn, "commit")
        if self._crash_at == len(self.points):
            # The next point crashes after the COMMIT: make it take effect first.
            dbapi_connection = conn.connection.dbapi_connection
            assert dbapi_connection is not None
            dbapi_connection.commit()
        self._reached(conn, "acknowledgement")


def _database(url: sa.URL) -> str:
    """The database ``url`` names, whichever driver (sync or asyncio) it goes through."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=False)


def _describe(write: re.Match[str]) -> str:
    verb = " ".join(write.group(1).upper().split())
    table = write.group(2).strip('`"')
    return f"{verb} {table}"


def _raise(point: CrashPoint, conn: sa.Connection) -> None:
    # A dead process's connections are closed and the server rolls back what they
    # had not committed: close this one, so that no open transaction goes back to the
    # pool (SQLAlchemy would not roll back a transaction it believes was committing).
    conn.invalidate()
    raise InjectedCrash(f"crash injected at {point}")


def _kill(point: CrashPoint, conn: sa.Connection) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _record_nothing(point: CrashPoint, conn: sa.Connection) -> None:  # pragma: no cover
    raise AssertionError(point)


class _ClockShift:
    """Moves the App's time forward (to make a crashed run's lock stale, or a parked
    run due) without sleeping: through its :class:`Clock`, or by an offset."""

    def __init__(self, app: App) -> None:
        self._manager = app.manager
        self._base = self._manager.clock
        self._offset = dt.timedelta(0)
        if not isinstance(self._base, Clock):
            self._manager.clock = self._now

    def _now(self) -> dt.datetime:
        return self._base() + self._offset

    def until(self, when: dt.datetime) -> None:
        if isinstance(self._base, Clock):
            if when > self._base():
                self._base.set(when)
            return
        now = self._now()
        if when > now:
            self._offset += when - now

    def restore(self) -> None:
        self._manager.clock = self._base


def crash_points(
    app: App,
    job: Job,
    *,
    mode: CrashMode = "raise",
    app_factory: str | None = None,
    key_prefix: str | None = None,
    timeout: float = 60.0,
    where: Callable[[CrashPoint], bool] | None = None,
) -> Iterator[CrashedRun]:
    """Crash a run of ``job`` at each of its crash points in turn, resume it, yield it.

    First ``job`` runs once (key ``<prefix>-record``) while every crash point is
    recorded: before each statement that writes, before each COMMIT, and after each
    COMMIT took effect but before the client heard back, each labelled with its step.
    Then, per point, a new run of ``job`` (key ``<prefix>-<index>``) crashes exactly
    there and is resumed as a restarted process resumes it (a stale lock taken over,
    a parked run run when due: the App's time is moved forward instead of waited for),
    until it succeeds, fails or halts; the :class:`CrashedRun` is then yielded for the
    test to check its invariants, e.g. with :func:`assert_each_step_succeeded_once`
    and counts of the job's own rows.

    ``mode="raise"`` crashes by raising :class:`InjectedCrash` in this process;
    ``mode="kill"`` runs each crashing execution in a child process killed with
    SIGKILL at the point, which needs ``app_factory``: ``"module:attribute"`` naming a
    callable that takes the database URL and returns the App with the job registered
    (the child imports it). ``where``: crash only at the points it accepts (e.g. the
    commits of one step: each SIGKILL costs a process). While iterating, the App's
    clock runs ahead of real time.
    """
    if mode not in ("raise", "kill"):
        raise AcidicError(f"mode must be 'raise' or 'kill', not {mode!r}")
    if mode == "kill" and not app_factory:
        raise AcidicError(
            "mode='kill' runs the job in a child process, which builds its App from "
            "app_factory='module:attribute' (a callable taking the database URL)"
        )
    name = app.name_of(job)
    prefix = key_prefix or f"crash-{uuid.uuid4().hex[:12]}"
    shift = _ClockShift(app)
    try:
        with _Injector(app.engine, None, _record_nothing) as recorder:
            app.run(job, key=f"{prefix}-record")
        for point in recorder.points:
            if where is not None and not where(point):
                continue
            key = f"{prefix}-{point.index:03d}"
            if mode == "raise":
                crashed = _crash_here(app, job, key, point.index)
            else:
                assert app_factory is not None
                crashed = _crash_in_child(app, name, job, key, point.index, app_factory, timeout)
            yield CrashedRun(point, key, crashed, _resume(app, job, key, shift))
    finally:
        shift.restore()


def _crash_here(app: App, job: Job, key: str, index: int) -> bool:
    injector = _Injector(app.engine, index, _raise)
    try:
        with injector:
            app.run(job, key=key)
    except InjectedCrash:
        pass
    return injector.crashed is not None


def _crash_in_child(
    app: App, name: str, job: Job, key: str, index: int, app_factory: str, timeout: float
) -> bool:
    payload = {
        "app_factory": app_factory,
        "url": app.engine.url.render_as_string(hide_password=False),
        "job": name,
        "args": type(job).__acidic_definition__.encode_args(job),
        "key": key,
        "crash_at": index,
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    child = subprocess.run(
        [sys.executable, "-m", "acidic.testing._child"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if child.returncode == -signal.SIGKILL:
        return True
    if child.returncode == 0:
        return False  # it ended without reaching the point
    raise AcidicError(
        f"the child process running key {key!r} (crash point #{index}) exited with "
        f"{child.returncode} instead of being killed:\n{child.stderr[-3000:]}"
    )


def _resume(app: App, job: Job, key: str, shift: _ClockShift) -> Run:
    run = app.get(key)
    for _ in range(MAX_RESUMES):
        if run is not None:
            if run.status in (
                RunStatus.SUCCEEDED,
                RunStatus.FAILED,
                RunStatus.HALTED,
                RunStatus.CANCELLED,
            ):
                return run
            due = run.lock_expires_at if run.status is RunStatus.RUNNING else run.run_at
            if due is not None:
                shift.until(due)
        # run is None: the crash came before the key's row was committed; running the
        # key again creates it, as a client's retry would.
        with contextlib.suppress(Exception):  # stored with the run, which is returned
            app.run(job, key=key)
        run = app.get(key)
    raise AcidicError(f"key {key!r} did not end after {MAX_RESUMES} resumes: {run}")
