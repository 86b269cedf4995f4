"""The worker's event loop: where it executes the runs of async jobs.

One loop per worker process, in a thread of its own, started when the first async run
is claimed. The dispatcher claims runs as for sync jobs (its thread, the sync engine,
the same slots: up to ``concurrency`` runs at once, sync and async together) and hands
an async run to the loop instead of an executor thread; there it executes on the loop's
manager (:mod:`acidic._engine._aio`), so hundreds of runs awaiting foreign calls need
no thread each. The heartbeat, the listener and SIGTERM draining are the worker's own
and see async runs like any other (held, renewed, stopped at a step boundary).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._engine import RunRow
from .._engine._aio import in_greenlet

if TYPE_CHECKING:
    from .._engine import Manager
    from .._job import Job

__all__ = ["LoopExecutor", "run_inline"]

log = logging.getLogger("acidic.worker")


#: How long the loop holds back the end of a run before it frees the run's slot (the
#: dispatcher, woken, claims a run for each free slot in one statement): a few ends
#: share one claim instead of one claim each, for a few milliseconds of a slot's time.
FREE_SLOTS_AFTER = 0.005
#: ... unless this many slots are waiting to be freed already.
FREE_SLOTS_AT = 16


def pool_for(concurrency: int) -> dict[str, Any]:
    """The pool of the worker loop's engine. Up to ``concurrency`` runs share it, each
    holding a connection only for a statement or a step's transaction: a few more
    connections than SQLAlchemy's default (5 + 10 overflow), not one per run (a server
    allows a hundred or so). A run waiting for a connection is back-pressure, not an
    error: on a CPU-starved machine, 200 runs queued for 15 connections waited past
    SQLAlchemy's 30 s (a TimeoutError in a step, the run retried); here they wait."""
    size = max(5, min(concurrency, 10))
    return {"pool_size": size, "max_overflow": size, "pool_timeout": 600}


class LoopExecutor:
    """An event loop in a thread, executing async runs with ``execute(row, manager)``
    (the worker's ``_execute``, run in the greenlet bridge) and calling ``done()``
    after each."""

    def __init__(
        self,
        manager: Manager,
        execute: Callable[[RunRow, Manager], None],
        done: Callable[[], None],
    ) -> None:
        self._manager = manager
        self._execute = execute
        self._done = done
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[object]] = set()
        #: Runs handed over by the dispatcher, not started yet (see submit).
        self._submitted: collections.deque[RunRow] = collections.deque()
        self._submit_lock = threading.Lock()
        self._start_scheduled = False
        #: Runs ended whose slot is not freed yet (see FREE_SLOTS_AFTER).
        self._ended = 0
        self._free_handle: asyncio.TimerHandle | None = None
        #: The options of the loop engine's pool (see warm).
        self._pool: dict[str, Any] | None = None

    def warm(self, jobs: Iterable[type[Job]], concurrency: int) -> None:
        """When the worker starts: if any of ``jobs`` is async, start the loop and open
        its engine's first connection now, while the dispatcher claims, rather than in
        the first async run (a thread, an engine, the dialect's first connect: tenths
        of a second on a loaded machine, late for a run that was due). Its pool is
        sized for ``concurrency`` runs (see :func:`pool_for`)."""
        self._pool = pool_for(concurrency)
        if any(cls.__acidic_definition__.is_async for cls in jobs):
            asyncio.run_coroutine_threadsafe(self._warm(), self._started())

    async def _warm(self) -> None:
        try:
            manager = await self._manager.async_sides.manager(self._pool)
            async with manager.store.async_engine.connect():
                pass
        except Exception as exc:  # the first run meets it again, and reports it
            log.debug("warming the worker's event loop failed: %r", exc)

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="acidic-loop", daemon=True)
            self._thread.start()
            self._ready.wait()
        assert self._loop is not None
        return self._loop

    def submit(self, row: RunRow) -> None:
        """Execute ``row`` on the loop (started on first use)."""
        self._started()
        assert self._loop is not None
        # The dispatcher hands over the runs of one claim in a row: one wake-up of the
        # loop (a write to its self-pipe) starts them all.
        with self._submit_lock:
            self._submitted.append(row)
            if self._start_scheduled:
                return
            self._start_scheduled = True
        self._loop.call_soon_threadsafe(self._start_submitted)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop once its runs are done (the worker waited for them); its
        connections are closed as it shuts down."""
        if self._thread is None or self._loop is None:
            return
        stop = self._stop
        assert stop is not None
        self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        # Runs still executing (the grace ran out) end at their step boundary and hand
        # their run back, as an executor thread's would: the loop lives until then.
        while self._tasks or self._submitted:
            await asyncio.sleep(0)  # runs submitted as the worker stopped start first
            if self._tasks:
                await asyncio.wait(set(self._tasks))
        self._free_slots()

    def _start_submitted(self) -> None:
        loop = self._loop
        assert loop is not None
        with self._submit_lock:
            rows = list(self._submitted)
            self._submitted.clear()
            self._start_scheduled = False
        for row in rows:
            task: asyncio.Task[object] = loop.create_task(self._run(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, row: RunRow) -> None:
        try:
            manager = await self._manager.async_sides.manager(self._pool)
            await in_greenlet(self._execute, row, manager)
        finally:
            self._ended += 1
            if self._ended >= FREE_SLOTS_AT:
                self._free_slots()
            elif self._free_handle is None:
                loop = asyncio.get_running_loop()
                self._free_handle = loop.call_later(FREE_SLOTS_AFTER, self._free_slots)

    def _free_slots(self) -> None:
        if self._free_handle is not None:
            self._free_handle.cancel()
            self._free_handle = None
        ended, self._ended = self._ended, 0
        for _ in range(ended):
            self._done()


def run_inline(manager: Manager, execute: Callable[[RunRow, Manager], None], row: RunRow) -> None:
    """``drain``'s execution of an async run in the calling thread: on a loop of its
    own (or, with a loop running in this thread, on a loop in another thread)."""

    async def run() -> None:
        await in_greenlet(execute, row, await manager.async_sides.manager())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()
