"""The App: one database, the jobs registered with it, and the calls users make."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

import sqlalchemy as sa

from ._encoding import MAX_KEY_LENGTH, check_key, loads
from ._engine import Engine, utcnow
from ._errors import AcidicError, JobDefinitionError, SerializationError, UnknownJobError
from ._job import Job
from ._run import Run, RunError, RunStatus, StepEvent
from ._storage import Store

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


class App:
    """An acidic application: a database for runs and the jobs that may run there.

    ``database`` is a SQLAlchemy URL (``postgresql://…`` uses psycopg 3,
    ``mysql://…``/``mariadb://…`` PyMySQL, ``sqlite:///path`` the standard library) or
    an existing SQLAlchemy ``Engine``. Without one, ``$ACIDIC_DATABASE_URL`` is used,
    else the SQLite file ``./acidic.sqlite3``.

    ``lock_timeout`` (seconds) is how long a run's lock stays valid after its owner
    last renewed it (at each step boundary) before another caller may take the run
    over; a job's ``lock_timeout`` class attribute overrides it.

    Use it as a context manager, or call :meth:`close`, to release its connections.
    """

    def __init__(
        self,
        database: str | sa.URL | sa.Engine | None = None,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if database is None:
            database = os.environ.get("ACIDIC_DATABASE_URL") or DEFAULT_DATABASE_URL
        if (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, int | float)
            or lock_timeout <= 0
        ):
            raise AcidicError(
                f"lock_timeout must be a positive number of seconds, not {lock_timeout!r}"
            )
        self._owns_engine = not isinstance(database, sa.Engine)
        try:
            self._store = Store(database)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
            raise AcidicError(f"unusable database URL {_shown(database)!r}: {exc}") from exc
        except ImportError as exc:
            raise AcidicError(
                f"unusable database URL {_shown(database)!r}: its database driver is not "
                f"installed ({exc}); install acidic[postgresql] or acidic[mysql]"
            ) from exc
        self._engine = Engine(self._store, lock_timeout=float(lock_timeout), clock=utcnow)
        self._jobs: dict[str, type[Job]] = {}
        self._names: dict[type[Job], str] = {}

    # -- set-up -----------------------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine acidic uses (for your own tables in steps, use ``tx``)."""
        return self._store.engine

    @property
    def jobs(self) -> Mapping[str, type[Job]]:
        """The registered jobs by name."""
        return dict(self._jobs)

    def migrate(self) -> list[str]:
        """Create or upgrade acidic's tables; return the migrations applied.

        Safe to call repeatedly and from concurrent processes. Raises
        :class:`acidic.SchemaVersionError` if the database was migrated by a newer acidic.
        """
        return self._store.migrate()

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
        return self._engine.run(self.name_of(job), job, key)

    def get(self, key: str) -> Run | None:
        """The run stored under ``key``, with its history; None if there is none."""
        key = check_key(key)
        store = self._store
        store.check_schema()
        with store.translated(f"reading key {key!r}"):
            row = store.find(key)
            if row is None:
                return None
            events = store.history(row.id)
        job_cls = self._jobs.get(row.job)
        args: dict[str, Any] = json.loads(row.args)
        if job_cls is not None:
            # If the class changed since, show the arguments as stored.
            with contextlib.suppress(SerializationError):
                args = job_cls.__acidic_definition__.decode_args(args)
        return Run(
            key=row.key,
            job=row.job,
            args=args,
            status=RunStatus(row.status),
            recovery_point=row.recovery_point,
            ctx=loads(row.ctx),
            result=None if row.result is None else loads(row.result),
            error=None if row.error is None else RunError.from_json(json.loads(row.error)),
            attempts=row.attempts,
            created_at=row.created_at,
            last_run_at=row.last_run_at,
            locked_at=row.locked_at,
            finished_at=row.finished_at,
            steps=json.loads(row.steps),
            history=[
                StepEvent(
                    step=e.step,
                    event=e.event,
                    time=e.at,
                    attempt=e.attempt,
                    error=None if e.error is None else RunError.from_json(json.loads(e.error)),
                )
                for e in events
            ],
        )

    # -- life cycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close acidic's database connections (an Engine you passed in stays open)."""
        if self._owns_engine or self._store.engine.dialect.name == "sqlite":
            self._store.dispose()

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
