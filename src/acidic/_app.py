"""The App: one database, the jobs registered with it, and the calls users make."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import sqlalchemy as sa

from ._app_async import AsyncMethods, run_on_own_loop, set_session_factory
from ._app_flow import FlowMethods
from ._app_workers import WorkerMethods
from ._encoding import MAX_KEY_LENGTH, encode
from ._engine import Manager, utcnow
from ._engine._actions import ACTIONS, CANCEL_AT_ONCE, CONTINUE_INTERRUPTED, accepted
from ._engine._aio import AsyncSides
from ._engine._schedules import Schedule
from ._engine._views import to_run
from ._errors import (
    InvalidArgumentError,
    JobDefinitionError,
    RunStateError,
    UnknownJobError,
    UnknownKeyError,
    UnknownRecoveryPointError,
)
from ._job import Job
from ._limits import Queue
from ._outcomes import to_seconds
from ._run import Run, RunStatus
from ._storage import RunRow, Store
from ._telemetry import observer as telemetry_observer

if TYPE_CHECKING:
    from ._executors import Executor
from ._storage._engines import sync_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["DEFAULT_DATABASE_URL", "App"]

J = TypeVar("J", bound=type[Job])

#: Where runs are kept when neither a URL nor ``$ACIDIC_DATABASE_URL`` is given.
DEFAULT_DATABASE_URL = "sqlite:///acidic.sqlite3"
#: Default seconds after which a lock not renewed by its owner is stale.
DEFAULT_LOCK_TIMEOUT = 90.0


def _shown(database: str | sa.URL | sa.Engine) -> str:
    """The database URL as it may be printed: its password hidden."""
    if isinstance(database, sa.Engine):
        database = database.url
    try:
        return sa.make_url(database).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return str(database)


class App(FlowMethods, WorkerMethods, AsyncMethods):
    """An acidic application: a database for runs and the jobs that may run there.

    ``database`` is a SQLAlchemy URL (``postgresql://…`` uses psycopg 3,
    ``mysql://…``/``mariadb://…`` PyMySQL, ``sqlite:///path`` the standard library) or
    an existing SQLAlchemy ``Engine`` or ``AsyncEngine``. Without one,
    ``$ACIDIC_DATABASE_URL`` is used, else the SQLite file ``./acidic.sqlite3``.

    ``lock_timeout`` (seconds) is how long a run's lock stays valid after its owner
    last renewed it (at each step boundary) before another caller may take the run
    over; a job's ``lock_timeout`` class attribute overrides it.

    ``queues`` names the queues (the first is the default), or maps each name to an
    :class:`acidic.Queue` with its concurrency and rate limits.

    ``clock`` (a callable returning an aware UTC datetime) is where acidic reads the
    time for locks, ``run_at``, ``Sleep`` and backoff; tests pass an
    :class:`acidic.testing.Clock` to move time forward without sleeping.

    ``telemetry``: with ``acidic[otel]`` installed, runs are reported as OpenTelemetry
    spans and metrics (no-ops until the application configures an SDK; see
    docs/observability.md). None (the default) turns it on unless
    ``$ACIDIC_TELEMETRY`` is ``off``; False turns it off.

    ``executor`` hands enqueued runs to another queue instead of acidic's worker: an
    :class:`acidic.celery.CeleryExecutor`, :class:`acidic.rq.RQExecutor` or
    :class:`acidic.dramatiq.DramatiqExecutor` (see the executors guide).

    ``session_factory``: a ``sessionmaker`` (or ``async_sessionmaker``) that makes the
    ORM sessions of steps annotated ``Session`` (``AsyncSession``); it is called with
    ``bind=`` the step's connection.

    Every call has an awaitable twin named ``*_async`` (:meth:`run_async`, ...), which
    uses the asyncio driver of the same database (:attr:`async_engine`).

    Use it as a context manager, or call :meth:`close`, to release its connections.
    """

    def __init__(
        self,
        database: str | sa.URL | sa.Engine | AsyncEngine | None = None,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        queues: Sequence[str] | Mapping[str, Queue] = ("default",),
        clock: Callable[[], dt.datetime] | None = None,
        telemetry: bool | None = None,
        executor: Executor | None = None,
        session_factory: Callable[..., Any] | None = None,
    ) -> None:
        given_async = None
        if getattr(database, "sync_engine", None) is not None:  # an AsyncEngine
            given_async, database = database, sync_url(database.url)  # type: ignore[union-attr]
        if database is None:
            database = os.environ.get("ACIDIC_DATABASE_URL") or DEFAULT_DATABASE_URL
        if (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, int | float)
            or lock_timeout <= 0
        ):
            raise InvalidArgumentError(
                f"lock_timeout must be a positive number of seconds, not {lock_timeout!r}"
            )
        queue_limits: dict[str, Queue] = {}
        if isinstance(queues, Mapping):
            queue_limits = dict(queues)
            bad = {n: q for n, q in queue_limits.items() if not isinstance(q, Queue)}
            if bad:
                raise InvalidArgumentError(f"queues maps names to acidic.Queue(...), not {bad!r}")
        queue_names = tuple(queues)
        if not queue_names or not all(
            isinstance(q, str) and 0 < len(q) <= 100 for q in queue_names
        ):
            raise InvalidArgumentError(
                f"queues must be names of 1 to 100 characters, not {queues!r}"
            )
        self._queues = queue_names
        self._owns_engine = not isinstance(database, sa.Engine)
        try:
            self._store = Store(database)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
            raise InvalidArgumentError(
                f"unusable database URL {_shown(database)!r}: {exc}"  # type: ignore[arg-type]
            ) from exc
        self._jobs: dict[str, type[Job]] = {}
        self._names: dict[type[Job], str] = {}
        self._schedules: dict[str, Schedule] = {}
        self._manager = Manager(
            self._store,
            lock_timeout=float(lock_timeout),
            clock=clock or utcnow,
            default_queue=queue_names[0],
            jobs=self._jobs,
            queue_limits=queue_limits,
            observer=telemetry_observer(telemetry),
        )
        self._executor = executor
        if executor is not None:
            executor.attach(self)
        set_session_factory(self._manager, session_factory)
        self._manager.async_sides = AsyncSides(self._manager, database, given_async)

    # -- set-up -----------------------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine acidic uses (for your own tables in steps, use ``tx``)."""
        return self._store.engine

    @property
    def async_engine(self) -> Any:
        """The SQLAlchemy ``AsyncEngine`` acidic uses on the running event loop (one per
        loop: an asyncio driver's connections belong to their loop): the ``AsyncEngine``
        given to the App, or one derived from its URL (``postgresql+psycopg`` as it is,
        SQLite through aiosqlite, MySQL/MariaDB through aiomysql: ``acidic[async]``)."""
        return self._manager.async_sides.engine

    async def _on_loop(self) -> App:
        """This App as the running event loop uses it: the same registry and settings,
        its manager on the loop's asyncio engine (run it with ``in_greenlet``)."""
        view = copy.copy(self)
        view._manager = await self._manager.async_sides.manager()
        view._store = view._manager.store
        return view

    @property
    def manager(self) -> Manager:
        """The run manager this App drives: what acidic's adapters (worker, HTTP
        middleware, CLI, dashboard, integrations) call. Not needed for ordinary use."""
        return self._manager

    @property
    def executor(self) -> Executor | None:
        """The queue runs are handed to (``App(executor=...)``); None: acidic's worker."""
        return self._executor

    @property
    def jobs(self) -> Mapping[str, type[Job]]:
        """The registered jobs by name."""
        return dict(self._jobs)

    def migrate(self) -> list[str]:
        """Create or upgrade acidic's tables; return the migrations applied.

        Safe to call repeatedly and from concurrent processes. Raises
        :class:`acidic.SchemaVersionError` if the database was migrated by a newer acidic.
        """
        return self._manager.migrate()

    @overload
    def job(self, cls: J, /) -> J: ...
    @overload
    def job(self, cls: None = None, /, *, name: str | None = None) -> Callable[[J], J]: ...
    def job(self, cls: J | None = None, /, *, name: str | None = None) -> J | Callable[[J], J]:
        """Register a job class under a stable name (default ``module.qualname``).

        Runs store the name, not the class: pin it with ``@app.job(name="...")`` before
        moving or renaming a class that has unfinished runs.
        """

        def register(job_cls: J) -> J:
            if not (isinstance(job_cls, type) and issubclass(job_cls, Job)):
                raise JobDefinitionError(
                    f"@app.job decorates acidic.Job subclasses, not {job_cls!r}"
                )
            if not job_cls.__acidic_definition__.steps:
                raise JobDefinitionError(f"job {job_cls.__qualname__} has no steps")
            job_name = name if name is not None else f"{job_cls.__module__}.{job_cls.__qualname__}"
            if not job_name or len(job_name) > MAX_KEY_LENGTH:
                raise JobDefinitionError(
                    f"job name {job_name!r} must be 1 to {MAX_KEY_LENGTH} characters long"
                )
            existing = self._jobs.get(job_name)
            if existing is not None and existing is not job_cls:
                raise JobDefinitionError(
                    f"job name {job_name!r} is already registered for {existing.__module__}."
                    f"{existing.__qualname__}"
                )
            previous = self._names.get(job_cls)
            if previous is not None and previous != job_name:
                raise JobDefinitionError(
                    f"{job_cls.__qualname__} is already registered as {previous!r}"
                )
            self._jobs[job_name] = job_cls
            self._names[job_cls] = job_name
            return job_cls

        if cls is not None:
            return register(cls)
        return register

    def name_of(self, job: Job | type[Job]) -> str:
        """The registered name of a job (instance or class)."""
        cls = job if isinstance(job, type) else type(job)
        try:
            return self._names[cls]
        except KeyError:
            raise UnknownJobError(
                f"job {cls.__module__}.{cls.__qualname__} is not registered with this App: "
                "decorate it with @app.job"
            ) from None

    # -- running ----------------------------------------------------------------------

    def run(self, job: Job, key: str | None = None) -> Any:
        """Run ``job`` now, in this thread, under the idempotency ``key``.

        Without a key, the key is derived from the job's name and arguments (see
        :meth:`acidic.Job.unique_by`). Returns the run's result; if the key's run has
        already succeeded, returns the stored result without running anything. Returns
        None when a step halts the run. A step's exception propagates unchanged, after
        the error is stored and the lock released; running the key again resumes at
        the failed step.
        """
        if not isinstance(job, Job):
            raise UnknownJobError(f"app.run() takes a job instance, not {job!r}")
        if type(job).__acidic_definition__.is_async:
            return run_on_own_loop(lambda: self.run_async(job, key), type(job))
        return self._manager.run(self.name_of(job), job, key)

    def get(self, key: str) -> Run | None:
        """The run stored under ``key``, with its history; None if there is none."""
        row = self._manager.find(key)
        if row is None:
            return None
        return to_run(row, self._manager.history(row), self._jobs.get(row.job))

    # -- background execution ---------------------------------------------------------

    @property
    def queues(self) -> tuple[str, ...]:
        """The declared queue names."""
        return self._queues

    def enqueue(
        self,
        job: Job,
        key: str | None = None,
        *,
        run_at: dt.datetime | None = None,
        queue: str = "default",
        priority: int = 0,
        connection: sa.Connection | None = None,
    ) -> Run:
        """Store ``job`` as a ``pending`` run for a worker, and wake the workers.

        ``run_at`` (timezone-aware) delays it; within a queue, higher ``priority`` runs
        first, then earlier ``run_at``, then enqueue order. With ``connection`` (a
        SQLAlchemy Connection in your own transaction, on acidic's database) the run
        exists only if that transaction commits. Enqueueing a key that exists returns
        the existing run, or raises :class:`ArgumentMismatchError` for other arguments.
        """
        if not isinstance(job, Job):
            raise UnknownJobError(f"app.enqueue() takes a job instance, not {job!r}")
        name = self.name_of(job)
        if queue not in self._queues:
            raise InvalidArgumentError(
                f"queue {queue!r} is not declared; this App's queues are {list(self._queues)} "
                "(App(queues=[...]))"
            )
        if run_at is not None and (not isinstance(run_at, dt.datetime) or run_at.tzinfo is None):
            raise InvalidArgumentError(f"run_at must be a timezone-aware datetime, not {run_at!r}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidArgumentError(f"priority must be an int, not {priority!r}")
        row = self._manager.enqueue(
            name,
            job,
            key,
            run_at=run_at,
            queue=queue,
            priority=priority,
            connection=connection,
            executor=None if self._executor is None else self._executor.name,
        )
        if self._executor is not None and row.status in ("pending", "scheduled"):
            # After the commit: a message must not wake a worker for an uncommitted row.
            due = row.run_at or self._manager.clock()
            delay = (due - self._manager.clock()).total_seconds()
            if connection is None:
                self._executor.publish(row.key, delay=delay)
            else:
                self._executor.publish_after_commit(row.key, connection, delay)
        return to_run(row, [], type(job))

    def resume(self, key: str, *, from_step: str | None = None) -> Run:
        """Make a halted, scheduled or interrupted run due now, for a worker (or the next
        ``app.run``).

        ``from_step`` first moves the run's recovery point to that step of its job (the
        registered job's steps, else the step list stored with the run; another name
        raises :class:`UnknownRecoveryPointError`), and also accepts a failed run, which
        gets a fresh budget as :meth:`retry` gives. The context is kept as it is.
        """
        row = self._row(key)
        if from_step is None:
            return self._wake(row, "resume")
        job_cls = self._jobs.get(row.job)
        steps: list[str] = (
            job_cls.__acidic_definition__.step_names
            if job_cls is not None
            else json.loads(row.steps)
        )
        if from_step not in steps:
            raise UnknownRecoveryPointError(
                f"cannot resume key {key!r} from step {from_step!r}: job {row.job} has no "
                f"such step; its steps are {steps}"
            )
        limit = None
        if row.status == RunStatus.FAILED:
            limit = row.attempts + (job_cls.max_attempts if job_cls is not None else 1)
        return self._wake(row, "resume_from", recovery_point=from_step, attempt_limit=limit)

    def signal(self, key: str, name: str, payload: Any = None) -> Run:
        """Deliver a named signal to the run (stored: one sent before the run halts is kept
        for it) and wake it if it is halted. Steps read it with ``self.signal(name)``."""
        if not isinstance(name, str) or not name or len(name) > MAX_KEY_LENGTH:
            raise InvalidArgumentError(
                f"signal name must be 1 to {MAX_KEY_LENGTH} characters, not {name!r}"
            )
        payload_json = encode(payload, f"payload of signal {name!r}")
        row = self._row(key)
        self._manager.signal(row, name, payload_json)
        return self._wake(row, "signal")

    def retry(self, key: str) -> Run:
        """Give a failed (or interrupted) run a fresh budget of its job's
        ``max_attempts`` and make it due now; it resumes at its recovery point."""
        row = self._row(key)
        job_cls = self._jobs.get(row.job)
        budget = job_cls.max_attempts if job_cls is not None else 1
        return self._wake(row, "retry", attempt_limit=row.attempts + budget)

    def cancel(self, key: str) -> Run:
        """Cancel a run: a pending, scheduled, halted or failed run at once; a running one
        at its next step boundary (that step is not committed). A finished run is left
        as it is."""
        row = self._row(key)
        self._manager.cancel(row, tuple(CANCEL_AT_ONCE))
        return self._read(row.key)

    def prune(self, older_than: float | dt.timedelta) -> int:
        """Delete succeeded and cancelled runs finished more than ``older_than`` (seconds
        or a timedelta) ago, with their history, in batches; return how many. Unfinished
        and failed runs are never pruned."""
        try:
            seconds = to_seconds(older_than, "older_than")
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(str(exc)) from None
        return self._manager.prune(seconds)

    def _row(self, key: str) -> RunRow:
        # Unchecked: an operator may cancel (or resume) a run whose fields were edited.
        row = self._manager.find(key, checked=False)
        if row is None:
            raise UnknownKeyError(f"no run has the key {key!r}")
        return row

    def _read(self, key: str) -> Run:
        run = self.get(key)
        if run is None:  # pragma: no cover - pruned in between
            raise UnknownKeyError(f"no run has the key {key!r}")
        return run

    def _wake(
        self,
        row: RunRow,
        action: str,
        *,
        recovery_point: str | None = None,
        attempt_limit: int | None = None,
    ) -> Run:
        # A signal wakes only a halted run, and is stored whatever the status.
        statuses = (RunStatus.HALTED,) if action == "signal" else tuple(ACTIONS[action])
        if action in CONTINUE_INTERRUPTED:
            statuses += (RunStatus.INTERRUPTED,)
        verb = "resume" if action == "resume_from" else action
        woken = self._manager.wake(
            row,
            statuses,
            recovery_point=recovery_point,
            attempt_limit=attempt_limit,
            doing=verb,
        )
        if woken and self._executor is not None and row.executor == self._executor.name:
            self._executor.publish(row.key)
        run = self._read(row.key)
        if not woken and action != "signal":
            raise RunStateError(row.key, verb, run.status.value, accepted(action))
        return run

    # -- life cycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close acidic's database connections (an Engine you passed in stays open)."""
        if self._owns_engine or self._store.engine.dialect.name == "sqlite":
            self._store.dispose()
        self._manager.async_sides.close()

    def __enter__(self) -> App:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        url = self._store.engine.url.render_as_string(hide_password=True)
        return f"<acidic.App {url} jobs={sorted(self._jobs)}>"
