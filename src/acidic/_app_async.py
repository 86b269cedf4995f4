"""The App's awaitable twins (``run_async``, ``get_async``, ...).

Each is its sync method, run on the event loop's manager (see
:mod:`acidic._engine._aio`): the same validation, semantics and errors, the database
reached through the asyncio driver without a thread per call. ``run_async`` of a sync
job runs it in a worker thread instead (a sync step may block).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import typing
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ._engine._aio import in_greenlet
from ._engine._manager import Manager
from ._errors import AcidicError, UnknownJobError
from ._job import Job
from ._run import Run

if TYPE_CHECKING:
    from ._app import App

__all__ = ["AsyncMethods", "run_on_own_loop", "set_session_factory"]


class AsyncMethods:
    """The App's ``*_async`` methods (mixed into :class:`acidic.App`)."""

    async def run_async(self, job: Job, key: str | None = None) -> Any:
        """Awaitable :meth:`run`: run ``job`` now under ``key``, with the same semantics
        and errors. An async job runs on the running loop (its steps awaited, ``tx`` an
        ``AsyncConnection``); a sync job runs in a worker thread (``asyncio.to_thread``)."""
        if not isinstance(job, Job):
            raise UnknownJobError(f"app.run_async() takes a job instance, not {job!r}")
        name = _app(self).name_of(job)
        if not type(job).__acidic_definition__.is_async:
            return await asyncio.to_thread(_app(self).run, job, key)
        view = await _app(self)._on_loop()
        return await in_greenlet(view.manager.run, name, job, key)

    async def get_async(self, key: str) -> Run | None:
        """Awaitable :meth:`get`."""
        view = await _app(self)._on_loop()
        return await in_greenlet(view.get, key)  # type: ignore[no-any-return]

    async def enqueue_async(
        self,
        job: Job,
        key: str | None = None,
        *,
        run_at: dt.datetime | None = None,
        queue: str = "default",
        priority: int = 0,
        connection: Any = None,
    ) -> Run:
        """Awaitable :meth:`enqueue`; ``connection`` is an ``AsyncConnection`` or an
        ``AsyncSession`` in your transaction (the run exists only if it commits)."""
        sync_connection = None
        if connection is not None:
            if hasattr(connection, "sync_session"):  # an AsyncSession: its connection
                connection = await connection.connection()
            sync_connection = getattr(connection, "sync_connection", connection)
        view = await _app(self)._on_loop()
        return await in_greenlet(  # type: ignore[no-any-return]
            view.enqueue,
            job,
            key,
            run_at=run_at,
            queue=queue,
            priority=priority,
            connection=sync_connection,
        )

    async def resume_async(self, key: str, *, from_step: str | None = None) -> Run:
        """Awaitable :meth:`resume`."""
        view = await _app(self)._on_loop()
        return await in_greenlet(view.resume, key, from_step=from_step)  # type: ignore[no-any-return]

    async def signal_async(self, key: str, name: str, payload: Any = None) -> Run:
        """Awaitable :meth:`signal`."""
        view = await _app(self)._on_loop()
        return await in_greenlet(view.signal, key, name, payload)  # type: ignore[no-any-return]

    async def retry_async(self, key: str) -> Run:
        """Awaitable :meth:`retry`."""
        view = await _app(self)._on_loop()
        return await in_greenlet(view.retry, key)  # type: ignore[no-any-return]

    async def cancel_async(self, key: str) -> Run:
        """Awaitable :meth:`cancel`."""
        view = await _app(self)._on_loop()
        return await in_greenlet(view.cancel, key)  # type: ignore[no-any-return]

    async def migrate_async(self) -> list[str]:
        """Awaitable :meth:`migrate`."""
        view = await _app(self)._on_loop()
        return await in_greenlet(view.migrate)  # type: ignore[no-any-return]


def _app(methods: AsyncMethods) -> App:
    return typing.cast("App", methods)


def run_on_own_loop(start: Callable[[], Coroutine[Any, Any, Any]], cls: type[Job]) -> Any:
    """``app.run`` of an async job: on an event loop of its own, if none is running in
    this thread; else refuse before anything is written (no run, no lock)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(start())
    raise AcidicError(
        f"job {cls.__qualname__} is async and an event loop is running in this thread: "
        "use `await app.run_async(job)` instead of app.run(job)"
    )


def set_session_factory(manager: Manager, factory: Callable[..., Any] | None) -> None:
    """``App(session_factory=...)``: a sessionmaker for sync steps, or an
    async_sessionmaker for async ones."""
    if factory is None:
        return
    if type(factory).__name__ == "async_sessionmaker":
        manager.async_session_factory = factory
    else:
        manager.session_factory = factory
