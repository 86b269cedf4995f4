"""The App's methods for background execution: workers, draining, pausing queues
(mixed into :class:`acidic.App`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from ._errors import InvalidArgumentError
from ._worker import Worker

if TYPE_CHECKING:
    from ._app import App

__all__ = ["WorkerMethods"]


def _app(mixin: WorkerMethods) -> App:
    return cast("App", mixin)


def _queue_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise InvalidArgumentError(f"a queue name is a str of 1 to 100 characters, not {name!r}")
    return name


class WorkerMethods:
    """``app.worker``, ``app.drain``, ``app.pause_queue`` and ``app.resume_queue``."""

    def pause_queue(self, name: str) -> bool:
        """Stop workers claiming from queue ``name`` (within a second: at their next
        claim); enqueueing to it still works and running runs go on. False if it was
        paused already. The pause is stored, so it holds for every worker and App."""
        return _app(self)._manager.fleet.pause(_queue_name(name), _app(self)._manager.clock())

    def resume_queue(self, name: str) -> bool:
        """Let workers claim from queue ``name`` again; False if it was not paused."""
        return _app(self)._manager.fleet.resume(_queue_name(name))

    def worker(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        grace: float = 30.0,
        heartbeat: float | None = None,
    ) -> Worker:
        """A :class:`acidic.Worker` executing this App's runs; call ``.run()`` on it."""
        return Worker(
            _app(self),
            queues=queues,
            concurrency=concurrency,
            poll_interval=poll_interval,
            grace=grace,
            heartbeat=heartbeat,
        )

    def drain(self, *, queues: Sequence[str] | None = None) -> int:
        """Execute every due run inline, one after another, until none is due; return
        how many executions there were.

        A test's worker: runs that are enqueued, woken, or due by ``run_at``, ``Sleep``
        or a retry's backoff execute in the calling thread. Errors of steps are recorded
        as a worker records them (retried later or failed), not raised: read the runs
        with :meth:`get`. Runs that are not due yet stay; with an
        :class:`acidic.testing.Clock`, advance it and drain again.
        """
        return self.worker(queues=queues).drain()
