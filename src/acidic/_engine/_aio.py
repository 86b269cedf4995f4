"""The asyncio side of the engine: the same :class:`Manager` and :class:`Runner`, on an
asyncio engine, driven from SQLAlchemy's greenlet bridge.

SQLAlchemy's asyncio extension runs its sync core in a greenlet: a sync ``Connection``
of an ``AsyncEngine``'s ``sync_engine`` works in code called through ``greenlet_spawn``,
and each round trip to the database suspends that greenlet while the event loop awaits
the driver (psycopg's async connection, aiosqlite, aiomysql). acidic uses that bridge for
its own code: the manager and the runner run unchanged in a greenlet, on a store whose
engine is the asyncio engine's ``sync_engine``; an async step's coroutine is awaited on
the loop (:mod:`._calls`). So there is one implementation of the semantics and of the
I/O, and an edit to the runner or the store serves both sides.

Connections of an asyncio driver belong to the event loop that opened them, and an App
may be used from several loops in turn (``asyncio.run`` twice, ``app.run`` of an async
job on a loop of its own, a worker's loop): each loop gets a store and engine of its own,
disposed when the loop shuts down (``asyncio.run`` closes async generators before it
closes the loop, which is when :func:`_keeper` disposes the engine).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._storage import Store
from ._manager import Manager

__all__ = ["AsyncSides", "in_greenlet"]

_T = TypeVar("_T")


def in_greenlet(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in SQLAlchemy's greenlet bridge: an awaitable of its result."""
    from sqlalchemy.util import greenlet_spawn  # noqa: PLC0415 - needs greenlet installed

    return greenlet_spawn(fn, *args, **kwargs)


@dataclass(eq=False)
class _Side:
    loop: asyncio.AbstractEventLoop
    manager: Manager
    keeper: AsyncIterator[None] | None = field(default=None)


class AsyncSides:
    """The asyncio managers of one App, one per event loop; their settings (clock, jobs,
    lock timeout, session factories) are the sync manager's.

    A loop's manager outlives the loop: once the loop ended and its engine's connections
    were closed, the manager (its engine, whose dialect knows the server already, and its
    rendered statements) serves the next loop. So ``app.run`` of an async job, which runs
    on a loop of its own, pays for a connection, not for a new engine."""

    def __init__(self, base: Manager, database: Any, given: Any = None) -> None:
        self._base = base
        self._database = database
        #: A user's AsyncEngine, until a manager uses it.
        self._given: Any = given
        #: Whether the App was given an AsyncEngine: its managers keep it, pool included.
        self._users_engine = given is not None
        self._sides: dict[int, _Side] = {}
        #: Managers whose loop ended, their engines disposed: for the next loops.
        self._free: list[Manager] = []
        self._lock = threading.Lock()

    @property
    def engine(self) -> Any:
        """The ``AsyncEngine`` of the running loop (else the one the next loop gets)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            with self._lock:
                if not self._free:
                    self._free.append(self._new_manager())
                return self._free[-1].store.async_engine
        return self._side().manager.store.async_engine

    async def manager(self, pool: dict[str, Any] | None = None) -> Manager:
        """The manager of the running loop (its engine is disposed with the loop).
        ``pool``: options of its engine's pool, if the loop has no manager yet (the
        worker's loop: sized for its concurrency)."""
        side = self._side(pool)
        if side.keeper is None:
            side.keeper = _keeper(self, side)
            await side.keeper.__anext__()  # registered with the loop's async generators
        return side.manager

    def _new_manager(self, pool: dict[str, Any] | None = None) -> Manager:
        """(Under _lock.)"""
        from .._storage._engines import make_async_engine  # noqa: PLC0415

        given = self._given
        engine = make_async_engine(given or self._database, None if given else pool)
        self._given = None
        base = self._base
        store = Store(engine, asynchronous=True)
        store.sync_twin = base.store
        manager = Manager(
            store,
            lock_timeout=base.lock_timeout,
            # Read through: crash_points and tests swap the App's clock.
            clock=lambda: base.clock(),  # noqa: PLW0108
            default_queue=base.default_queue,
            jobs=base.jobs,
        )
        manager.session_factory = base.session_factory
        manager.async_session_factory = base.async_session_factory
        return manager

    def _side(self, pool: dict[str, Any] | None = None) -> _Side:
        loop = asyncio.get_running_loop()
        # The common case first, without the lock or the sweep (a worker's loop asks once
        # per run): a running loop's side is never removed by another thread's sweep.
        side = self._sides.get(id(loop))
        if side is not None and side.loop is loop:
            return side
        with self._lock:
            for key, other in list(self._sides.items()):
                if other.loop.is_closed():
                    # Closed without shutting down: its connections are the dead loop's;
                    # the engine starts a new pool without touching them.
                    del self._sides[key]
                    other.manager.store.engine.dispose(close=False)
                    self._free.append(other.manager)
            side = self._sides.get(id(loop))
            if side is not None and side.loop is loop:
                return side
            # A free manager's engine has the default pool: a new one for ``pool`` (but
            # a user's AsyncEngine is kept as it is).
            reuse = bool(self._free) and (pool is None or self._users_engine)
            manager = self._free.pop() if reuse else self._new_manager(pool)
            side = self._sides[id(loop)] = _Side(loop, manager)
            return side

    async def _ended(self, side: _Side) -> None:
        """``side``'s loop is shutting down: close its connections while it still runs."""
        with self._lock:
            if self._sides.get(id(side.loop)) is not side:
                return
            del self._sides[id(side.loop)]
        await side.manager.store.async_engine.dispose()
        with self._lock:
            self._free.append(side.manager)

    async def aclose(self) -> None:
        """Dispose of the running loop's engine (the next use opens new connections)."""
        side = self._sides.get(id(asyncio.get_running_loop()))
        if side is not None:
            await self._ended(side)

    def close(self) -> None:
        """Dispose of the engines of loops that are not running (a running loop's is
        disposed when it shuts down, or by ``await app.close_async()``)."""
        with self._lock:
            sides = list(self._sides.values())
        for side in sides:
            loop = side.loop
            if loop.is_closed():
                with self._lock:
                    self._sides.pop(id(loop), None)
            elif not loop.is_running():
                loop.run_until_complete(self._ended(side))


async def _keeper(sides: AsyncSides, side: _Side) -> AsyncIterator[None]:
    # Closed by the loop's shutdown_asyncgens() (asyncio.run does it), on the loop.
    try:
        yield
    finally:
        await sides._ended(side)
