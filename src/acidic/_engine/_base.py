"""What every part of the manager shares: the store, the clock, the App's jobs, and the
lock timeout and default key of a job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._encoding import default_key, encode_value
from .._job import Job, JobDefinition
from .._limits import Queue
from .._storage import Store
from ._observe import NO_OBSERVER, Observer

if TYPE_CHECKING:
    from ._aio import AsyncSides

__all__ = ["Clock", "ManagerBase", "utcnow"]

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC: the default clock."""
    return dt.datetime.now(dt.UTC)


class ManagerBase:
    """The manager's state (see :class:`acidic._engine.Manager`).

    ``jobs`` is the App's registry (name -> class), shared, not copied: a job registered
    later is known here too.
    """

    #: The ``sessionmaker`` / ``async_sessionmaker`` of steps that take an ORM session
    #: (``App(session_factory=...)``); None: a plain ``Session`` / ``AsyncSession``.
    session_factory: Callable[..., Any] | None = None
    async_session_factory: Callable[..., Any] | None = None
    #: The managers of this one's database on each event loop (set by the App).
    async_sides: AsyncSides

    def __init__(
        self,
        store: Store,
        *,
        lock_timeout: float,
        clock: Clock = utcnow,
        default_queue: str = "default",
        jobs: Mapping[str, type[Job]] | None = None,
        queue_limits: Mapping[str, Queue] | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self.store = store
        self.lock_timeout = lock_timeout
        self.clock = clock
        #: Where an inline run goes when it parks, so that a worker can continue it.
        self.default_queue = default_queue
        self.jobs: Mapping[str, type[Job]] = {} if jobs is None else jobs
        #: The queues that have limits (``App(queues={name: Queue(...)})``).
        self.queue_limits: Mapping[str, Queue] = {
            name: q for name, q in (queue_limits or {}).items() if q.limited
        }
        #: Told what happens to runs (telemetry); the default does nothing.
        self.observer = observer

    def check_schema(self) -> None:
        """Raise :class:`acidic.SchemaVersionError` unless acidic's tables are current."""
        self.store.check_schema()

    def migrate(self) -> list[str]:
        """Create or upgrade acidic's tables; the migrations applied."""
        return self.store.migrate()

    # -- keys and claims --------------------------------------------------------------

    def key_for(self, name: str, job: Job, encoded_args: dict[str, Any]) -> str:
        """The default key of a job: from its name and arguments, or its ``unique_by()``."""
        if type(job).unique_by is not Job.unique_by:
            identity = encode_value(job.unique_by(), f"job {name}: unique_by()")
            return default_key(name, {"unique_by": identity})
        return default_key(name, encoded_args)

    def lock_timeout_for(self, definition: JobDefinition) -> float:
        """The job's own ``lock_timeout``, else the App's."""
        return definition.cls.lock_timeout or self.lock_timeout

    def lock_timeout_of(self, job: str) -> float:
        """:meth:`lock_timeout_for` of a registered job, by name."""
        cls = self.jobs.get(job)
        return (
            self.lock_timeout if cls is None else self.lock_timeout_for(cls.__acidic_definition__)
        )
