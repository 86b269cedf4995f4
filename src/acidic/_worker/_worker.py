"""The worker: executes enqueued runs from the database, the run rows being the queue.

One process runs a dispatcher (claims due runs, round-robin over its queues), a pool
of executor threads (one run each), a heartbeat (renews the locks of its runs) and, on
PostgreSQL, a listener (LISTEN/NOTIFY wakes the dispatcher the moment a run is
enqueued; elsewhere it polls). SIGTERM or SIGINT stops it gracefully: no new claims,
each run stops at its next step boundary and is handed back without using up an
attempt; a second signal, or the grace period running out, stops it at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from .._engine import Ended, Manager, RunRow
from .._errors import InvalidArgumentError, LockLostError, RunCancelledError
from .._job import Job
from ._backoff import Backoff
from ._housekeeping import side_threads
from ._loop import LoopExecutor, run_inline
from ._registry import REGISTRY_MAX_INTERVAL, Registration
from ._wakeups import Wakeups, listen

if TYPE_CHECKING:
    from .._app import App

__all__ = ["Worker"]

log = logging.getLogger("acidic.worker")

#: Exit codes of :meth:`Worker.run`.
EXIT_OK = 0
EXIT_FORCED = 1
#: Longest wait of the dispatcher before it looks for a signal (seconds).
SIGNAL_CHECK_INTERVAL = 0.25


def _is_async(cls: type[Job]) -> bool:
    return cls.__acidic_definition__.is_async


@dataclass(slots=True)
class _Held:
    run_id: int
    key: str
    token: str
    lock_timeout: float


class Worker:
    """Executes due runs of an :class:`acidic.App` until stopped.

    ``queues`` (default: all of the App's) are served round-robin, so a busy queue
    cannot starve another. ``concurrency`` runs execute at once: runs of sync jobs in
    threads, runs of async jobs on the process's one event loop.
    ``poll_interval`` is how often the database is polled where no notification
    arrives; ``heartbeat`` how often locks are renewed (default: a third of the
    shortest lock timeout); ``grace`` how long a graceful stop may take.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        grace: float = 30.0,
        heartbeat: float | None = None,
    ) -> None:
        chosen = tuple(queues) if queues else app.queues
        unknown = [q for q in chosen if q not in app.queues]
        if unknown:
            raise InvalidArgumentError(
                f"queues {unknown} are not declared by the App ({list(app.queues)})"
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be an int >= 1, not {concurrency!r}")
        if not poll_interval > 0 or not grace >= 0:
            raise InvalidArgumentError(
                f"poll_interval must be > 0 and grace >= 0, not {poll_interval!r} and {grace!r}"
            )
        self.app = app
        self.queues = chosen
        self.concurrency = concurrency
        self.poll_interval = float(poll_interval)
        self.grace = float(grace)
        self.manager = manager = app.manager
        timeouts = [manager.lock_timeout_for(c.__acidic_definition__) for c in app.jobs.values()]
        shortest = min(timeouts, default=manager.lock_timeout)
        self.heartbeat = float(heartbeat) if heartbeat else max(shortest / 3, 0.05)
        #: The dispatcher's wake-ups: notifications, freed slots (see _wakeups.py).
        self._wakeups = Wakeups()
        self._wake = self._wakeups.event
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._held: dict[str, _Held] = {}  # by lock token
        #: Executor slots in use: a slot stays in use while its executor claims the next
        #: run itself, so that the dispatcher does not claim a run for it meanwhile.
        self._busy = 0
        self._lock = threading.Lock()
        self._next_queue = 0
        #: Signals received (appended by the handler), and whether the first was obeyed.
        self._signal_names: list[str] = []
        self._signal_obeyed = False
        #: How many executions ended, and how (status name, or the error's name).
        self.processed = 0
        self.outcomes: Counter[str] = Counter()
        #: This process in the worker registry (``acidic workers``); its id is the
        #: ``owner`` of the runs it claims.
        self.registration = Registration(
            manager,
            queues=self.queues,
            jobs=list(app.jobs),
            concurrency=concurrency,
            heartbeat=self.heartbeat,
        )
        self._loop = LoopExecutor(manager, self._execute, self._free_slot)  # async jobs' runs

    # -- control ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully: claim nothing more, release runs at their next step boundary."""
        self._stopping.set()
        self._wake.set()

    def run(self, *, install_signal_handlers: bool = True) -> int:
        """Execute runs until stopped; return the exit code (0 after a graceful stop)."""
        if install_signal_handlers:
            self._install_signal_handlers()
        manager = self.manager
        manager.check_schema()
        self._loop.warm(self.app.jobs.values(), self.concurrency)
        self.registration.jobs = list(self.app.jobs)
        try:
            self.registration.register()
        except Exception as exc:  # the heartbeat registers it once the database answers
            log.warning("registering the worker failed: %s", exc)
        log.info(
            "worker started",
            extra={
                "queues": list(self.queues),
                "concurrency": self.concurrency,
                "pid": os.getpid(),
            },
        )
        threads = [
            threading.Thread(target=self._heartbeat_loop, name="acidic-heartbeat", daemon=True),
            *side_threads(self.app, self._stopping, self._wake.set),
        ]
        if manager.can_notify:
            threads.append(
                threading.Thread(
                    target=listen,
                    args=(manager, self.queues, self._wakeups, self._stopped),
                    name="acidic-listener",
                    daemon=True,
                )
            )
        for thread in threads:
            thread.start()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="acidic-executor")
        # Telemetry: busy and idle executors are read from this worker while it runs.
        observed = manager.observer.worker_started(
            self.app, self.queues, self.concurrency, lambda: self.running
        )
        try:
            self._dispatch(pool)
        finally:
            pool.shutdown(wait=False)
            deadline = time.monotonic() + self.grace
            # Busy slots too: an executor may be claiming its next run (which it then
            # hands back), and must be done with the App before run() returns.
            while (self._held or self._busy) and time.monotonic() < deadline:
                time.sleep(0.01)
            self._stopped.set()
            self._loop.stop(max(deadline - time.monotonic(), 0.0))
            # Not after an expired grace: a step may still hold SQLite's write lock.
            if not self._held:
                try:
                    self.registration.unregister()
                except Exception as exc:
                    log.warning("removing the worker from the registry failed: %s", exc)
            manager.observer.worker_stopped(observed)
        if self._held:
            log.warning(
                "grace period over with runs still executing", extra={"runs": len(self._held)}
            )
            return EXIT_FORCED
        log.info("worker stopped", extra={"processed": self.processed})
        return EXIT_OK

    def drain(self) -> int:
        """Execute due runs in the calling thread, one at a time, until none is due;
        return how many executions there were.

        For tests and scripts: with an :class:`acidic.testing.Clock`, what is due is
        decided by that clock, so moving it forward makes ``run_at``, ``Sleep`` and
        backoff fall due without sleeping. A step's error is recorded as a worker would
        record it (a retry scheduled, or the run failed) and not raised.
        """
        manager = self.manager
        manager.check_schema()
        jobs = list(self.app.jobs)
        executed = 0
        while True:
            row = None
            for queue in self.queues:
                rows = manager.claim_due(queue, jobs, 1)
                if rows:
                    (row,) = rows
                    break
            if row is None:
                return executed
            self._hold(row)
            if self._is_async(row):
                run_inline(manager, self._execute, row)
            else:
                self._execute(row)
            executed += 1

    def _install_signal_handlers(self) -> None:
        # The handler runs in the main thread between two bytecodes, possibly while that
        # thread holds a lock (an Event's, inside Event.wait; a stream's, inside a log
        # call): it must take none, or the worker hangs instead of stopping. It only
        # counts; the dispatcher, which waits in short slices, acts on the count.
        def handle(signum: int, _frame: FrameType | None) -> None:
            self._signal_names.append(signal.Signals(signum).name)
            if len(self._signal_names) > 1:
                os.write(2, b"acidic worker: second signal: stopping at once\n")
                os._exit(EXIT_FORCED)

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _obey_signals(self) -> None:
        """In the dispatcher: act on a signal the handler counted."""
        if self._signal_names and not self._signal_obeyed:
            self._signal_obeyed = True
            log.info("signal %s: stopping gracefully", self._signal_names[0])
            self.stop()

    def _pause(self, event: threading.Event, seconds: float) -> None:
        """``event.wait(seconds)`` in the dispatcher, in slices short enough that a
        signal is obeyed within a quarter of a second."""
        deadline = time.monotonic() + seconds
        while True:
            self._obey_signals()
            left = deadline - time.monotonic()
            if left <= 0 or event.wait(min(left, SIGNAL_CHECK_INTERVAL)):
                return

    # -- dispatching ------------------------------------------------------------------

    def _dispatch(self, pool: ThreadPoolExecutor) -> None:
        backoff = Backoff()
        while True:
            self._obey_signals()
            if self._stopping.is_set():
                return
            free = self.concurrency - self._busy
            claimed = 0
            # An executor that just found nothing to claim freed this slot: claiming
            # again now would find nothing either (unless a notification came since).
            if free > 0 and not self._wakeups.take_drained():
                try:
                    claimed = self._claim(free, pool)
                    if backoff.succeeded():
                        log.info("claiming works again")
                except Exception as exc:
                    if self.manager.is_contention(exc):
                        # A deadlock between claimers (seen on MariaDB): plain contention.
                        log.debug("claim contention: %s", exc)
                        self._pause(self._stopping, random.uniform(0, 0.02))  # noqa: S311
                        continue
                    # Anything else (the database restarting, the network): keep the worker
                    # alive and try again, backing off.
                    # One line per failure (the traceback at DEBUG), the delay growing
                    # across reconnects (see Backoff).
                    delay = backoff.failed()
                    log.warning(
                        "claiming failed: %s; retrying in %.1f s",
                        self.manager.describe_failure(exc),
                        delay,
                    )
                    log.debug("claiming failed", exc_info=True)
                    self._pause(self._stopping, delay)
                    continue
            if claimed and self._busy < self.concurrency:
                continue  # there may be more due runs
            self._wait(free > 0 and not claimed)

    def _claim(self, free: int, pool: ThreadPoolExecutor) -> int:
        """Claim up to ``free`` runs and hand each to an executor as soon as it is
        claimed; return how many."""
        app = self.app
        jobs = list(app.jobs)
        claimed = 0
        # Round-robin: start with the next queue each time, a share per queue per turn
        # (with one queue, every free slot at once). A notification only wakes the
        # dispatcher: putting the notified queues first starved a quiet queue behind one
        # that kept receiving runs.
        with self._lock:
            order = self._queue_order()
        share = max(1, free // len(order))
        while claimed < free:
            got_any = False
            for queue in order:
                if claimed >= free:
                    break
                rows = self.manager.claim_due(
                    queue, jobs, min(share, free - claimed), owner=self.registration.id
                )
                for row in rows:
                    self._hold(row, new_slot=True)
                    if self._is_async(row):
                        self._loop.submit(row)
                    else:
                        pool.submit(self._execute_and_continue, row)
                    claimed += 1
                    got_any = True
            if not got_any:
                break
        return claimed

    def _queue_order(self) -> list[str]:
        """Round-robin: the queues, starting with the next one each time (under _lock)."""
        order = list(self.queues[self._next_queue :] + self.queues[: self._next_queue])
        self._next_queue = (self._next_queue + 1) % len(self.queues)
        return order

    def _claim_for_executor(self) -> RunRow | None:
        """In an executor that just finished a run: claim one more for itself, the
        queues taken round-robin; None when nothing is due (or the claim failed: the
        dispatcher, woken, claims and backs off as usual)."""
        # Sync jobs only: an async run goes to the loop, through the dispatcher.
        jobs = [name for name, cls in self.app.jobs.items() if not _is_async(cls)]
        with self._lock:
            order = self._queue_order()
        heard = self._wakeups.heard
        for queue in order if jobs else ():
            try:
                rows = self.manager.claim_due(queue, jobs, 1, owner=self.registration.id)
            except Exception as exc:
                log.debug("executor claim failed: %r", exc)
                return None
            if rows:
                (row,) = rows
                assert row.lock_token is not None
                if self._stopping.is_set():
                    # The stop came while claiming: a stopping worker starts nothing.
                    with contextlib.suppress(Exception):  # else its lock goes stale
                        self.manager.release_claimed(row)
                    return None
                self._hold(row)
                return row
        if jobs:
            self._wakeups.drained(heard)
        return None

    def _hold(self, row: RunRow, *, new_slot: bool = False) -> None:
        """Record a claimed run as held (the heartbeat renews its lock), in a new
        executor slot or in the calling executor's own."""
        assert row.lock_token is not None
        with self._lock:
            self._held[row.lock_token] = _Held(
                row.id, row.key, row.lock_token, self._lock_timeout(row.job)
            )
            if new_slot:
                self._busy += 1

    def _execute_and_continue(self, row: RunRow) -> None:
        """An executor's task: ``row``, then runs it claims itself while any is due.

        Claiming in the executor saves the hand-off through the dispatcher (waking it,
        then waiting for it to submit the next run), which cost about as much as a
        claim per run. The dispatcher still fills idle slots and is woken when this
        slot frees."""
        try:
            next_row: RunRow | None = row
            while next_row is not None:
                self._execute(next_row)
                next_row = None if self._stopping.is_set() else self._claim_for_executor()
        finally:
            self._free_slot()

    def _free_slot(self) -> None:
        with self._lock:
            self._busy -= 1
        self._wake.set()

    def _is_async(self, row: RunRow) -> bool:
        cls = self.app.jobs.get(row.job)
        return cls is not None and _is_async(cls)

    def _lock_timeout(self, job: str) -> float:
        return self.manager.lock_timeout_of(job)

    def _wait(self, idle: bool) -> None:
        timeout = self.poll_interval
        if idle:
            with contextlib.suppress(Exception):
                due = self.manager.next_due(self.queues, list(self.app.jobs))
                if due is not None:
                    timeout = min(timeout, max((due - self.manager.clock()).total_seconds(), 0.0))
        self._pause(self._wake, timeout)
        self._wake.clear()

    # -- executing --------------------------------------------------------------------

    def _execute(self, row: RunRow, manager: Manager | None = None) -> None:
        """Execute a claimed run (on ``manager``: the event loop's, for an async job)."""
        started = time.monotonic()
        token = row.lock_token
        assert token is not None
        try:
            ended = (manager or self.manager).execute_claimed(
                row, should_stop=self._stopping.is_set
            )
            if ended is not None:
                self._log_end(row, ended, started)
        except (LockLostError, RunCancelledError) as exc:
            self.outcomes[type(exc).__name__] += 1
            log.warning(
                "run %s: %s",
                row.key,
                exc,
                extra={"key": row.key, "job": row.job, "outcome": type(exc).__name__},
            )
        except Exception as exc:
            self.outcomes["errored"] += 1
            log.info(
                "run %s errored: %s: %s",
                row.key,
                type(exc).__name__,
                exc,
                extra={"key": row.key, "job": row.job, "outcome": "errored"},
            )
        finally:
            with self._lock:
                self._held.pop(token, None)
            self.processed += 1

    @property
    def running(self) -> int:
        """How many runs this worker is executing now."""
        return len(self._held)

    def _log_end(self, row: RunRow, ended: Ended, started: float) -> None:
        self.outcomes[ended.status.value] += 1
        log.info(
            "run %s %s",
            row.key,
            ended.status.value,
            extra={
                "key": row.key,
                "job": row.job,
                "attempt": row.attempts,
                "outcome": ended.status.value,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )

    # -- background threads -------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        manager = self.manager
        # Locks are renewed every `heartbeat`; the registry row at least every
        # REGISTRY_MAX_INTERVAL, so the thread may wake more often than it renews.
        renewed = time.monotonic()
        while not self._stopped.wait(min(self.heartbeat, REGISTRY_MAX_INTERVAL)):
            self._beat_registry()
            if time.monotonic() - renewed < self.heartbeat * 0.99:
                continue
            renewed = time.monotonic()
            with self._lock:
                held = list(self._held.values())
            if not held:
                continue
            try:
                lost = manager.renew_locks([(h.run_id, h.token, h.lock_timeout) for h in held])
            except Exception as exc:
                log.warning("heartbeat failed: %s", self.manager.describe_failure(exc))
                log.debug("heartbeat failed", exc_info=True)
                continue
            with self._lock:  # a run that just ended released its lock: not lost
                lost &= {h.run_id for h in self._held.values()}
            for run_id in lost:
                log.info("run id %s: lock no longer held (ended or taken over)", run_id)

    def _beat_registry(self) -> None:
        """The registry row, and (idle) the warnings about runs no live worker knows."""
        try:
            self.registration.beat()
            if not self._held and not self._busy and not self._stopping.is_set():
                self.registration.check_unknown()
        except Exception as exc:
            log.debug("registry heartbeat failed: %s", exc)
