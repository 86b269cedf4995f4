"""The manager's operations for adapters: the queue (enqueue, claim, renew, notify),
operators (find, wake, signal, cancel, prune) and owners that finish a run outside the
runner (the HTTP layer's records)."""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Iterator, Sequence

import sqlalchemy as sa

from .._encoding import check_key, dumps
from .._errors import AcidicError, UnknownKeyError
from .._job import Job
from .._run import ENDED, RunStatus
from .._storage import EventRow, Fence, NewRun, QueueLimits, RunRow
from .._storage._fleet import Fleet
from . import _transitions as t
from ._base import ManagerBase
from ._checks import check_same_call, concurrency_of

__all__ = ["Operations"]

#: Longest a waiter goes without reading its run (seconds), notifications or not.
_MAX_QUIET = 5.0


class Operations(ManagerBase):
    """The manager's operations besides claiming and executing (see :class:`Manager`)."""

    def finish_owned(
        self, fence: Fence, *, step: str, attempt: int, started: dt.datetime, result_json: str
    ) -> bool:
        """Finish a run this owner claimed, outside the runner (``step`` recorded as
        started at ``started`` and succeeded now); False if the lock was lost."""
        now = self.clock()
        events = (
            EventRow(step, "started", started, attempt),
            EventRow(step, "succeeded", now, attempt),
        )
        with self.store.translated(f"finishing run id {fence.run_id}"):
            return self.store.finish(fence, t.finished_by_owner(result_json, now), events)

    def fail_owned(
        self, fence: Fence, *, step: str, attempt: int, started: dt.datetime, error_json: str
    ) -> bool:
        """Give up a run this owner claimed, as failed with ``error_json``, outside the
        runner; a later claim resumes it. False if the lock was lost."""
        events = (
            EventRow(step, "started", started, attempt),
            EventRow(step, "errored", self.clock(), attempt, error_json),
        )
        with self.store.translated(f"releasing run id {fence.run_id}"):
            return self.store.fail(fence, t.failed_by_owner(error_json), events)

    # -- the queue --------------------------------------------------------------------

    def enqueue(
        self,
        name: str,
        job: Job,
        key: str | None,
        *,
        run_at: dt.datetime | None,
        queue: str,
        priority: int,
        connection: sa.Connection | None,
        parent_id: int | None = None,
        executor: str | None = None,
    ) -> RunRow:
        """Store a pending run for a worker (in ``connection``'s transaction when given)
        and wake the workers of its queue; an existing key returns its run, or raises
        :class:`acidic.ArgumentMismatchError` for other arguments."""
        observer = self.observer
        handle = observer.enqueue_started(name, queue)
        try:
            row = self._enqueue(
                name,
                job,
                key,
                run_at=run_at,
                queue=queue,
                priority=priority,
                connection=connection,
                parent_id=parent_id,
                executor=executor,
            )
        except BaseException as exc:
            observer.enqueue_ended(handle, None, exc)
            raise
        observer.enqueue_ended(handle, row, None)
        return row

    def _enqueue(
        self,
        name: str,
        job: Job,
        key: str | None,
        *,
        run_at: dt.datetime | None,
        queue: str,
        priority: int,
        connection: sa.Connection | None,
        parent_id: int | None,
        executor: str | None,
    ) -> RunRow:
        definition = type(job).__acidic_definition__
        encoded = definition.encode_args(job)
        same_args = key is not None or type(job).unique_by is Job.unique_by
        key = self.key_for(name, job, encoded) if key is None else check_key(key)
        store = self.store
        store.check_schema()
        now = self.clock()
        new = NewRun(
            key=key,
            job=name,
            args=dumps(encoded),
            steps=dumps(definition.step_names),
            status=RunStatus.PENDING,
            recovery_point=definition.steps[0].name,
            created_at=now,
            queue=queue,
            priority=priority,
            run_at=(run_at or now).astimezone(dt.UTC),
            attempt_limit=type(job).max_attempts,
            parent_id=parent_id,
            **concurrency_of(job),
            # The caller's trace context, which the run's spans continue.
            traceparent=self.observer.traceparent(),
            executor=executor,
        )
        with store.translated(f"enqueueing key {key!r}"):
            row = store.enqueue(new, connection)
            if row is not None:
                return row
            existing = store.find_in(connection, key) if connection is not None else store.find(key)
        if existing is None:  # pragma: no cover - deleted in between
            raise AcidicError(f"key {key!r} vanished while enqueueing")
        check_same_call(existing, name, encoded if same_args else None)
        return existing

    # -- child runs and Await ------------------------------------------------------------

    def wake_awaiting(self, run_id: int) -> bool:
        """Make an awaiting run due if every run it awaits is finished."""
        with self.store.translated(f"waking awaiting run id {run_id}"):
            return self.store.wake_awaiting(run_id, t.awaited(self.clock()))

    def wake_ready_awaiting(self) -> int:
        """Wake every awaiting run whose awaited runs are all finished (a wake-up a crash
        left undone); how many."""
        with self.store.translated("waking awaiting runs"):
            ready = self.store.ready_awaiting()
        return sum(self.wake_awaiting(run_id) for run_id in ready)

    def children(self, run_id: int, conn: sa.Connection | None = None) -> list[RunRow]:
        """The runs that run ``run_id`` spawned, oldest first (on ``conn`` when given)."""
        with self.store.translated(f"reading the children of run id {run_id}"):
            return self.store.children(run_id, conn)

    def claim_due(
        self, queue: str, jobs: Sequence[str], limit: int, *, owner: str | None = None
    ) -> list[RunRow]:
        """Claim up to ``limit`` due runs of ``queue`` (see :meth:`_claim_due`), and tell
        the observer."""
        rows = self._claim_due(queue, jobs, limit, owner=owner)
        for row in rows:
            if row.taken_over:
                self.observer.takeover(row)
            self.observer.claimed(row)
        return rows

    def _claim_due(
        self, queue: str, jobs: Sequence[str], limit: int, *, owner: str | None = None
    ) -> list[RunRow]:
        """Claim up to ``limit`` due runs of ``queue`` (runs whose owner's lock expired
        first, then by priority, due time and enqueue order); each gets a token.
        ``owner``: the claiming worker's registry id, recorded on the runs. Nothing is
        claimed from a paused queue. Runs of a limited queue, and of jobs with a
        concurrency ``Limit``, are claimed within their limits (one transaction that
        locks the limits it decides on); the others by the dialect's fastest claim."""
        store, clock, timeout = self.store, self.clock, self.lock_timeout_of
        q = self.queue_limits.get(queue)
        if q is not None:
            limits = QueueLimits(
                q.concurrency,
                None if q.rate is None else q.rate.count,
                None if q.rate is None else q.rate.per,
            )
            return store.claim_limited(
                queue,
                jobs,
                limit,
                clock=clock,
                lock_timeout=timeout,
                queue_limits=limits,
                owner=owner,
            )
        limited = [j for j in jobs if (c := self.jobs.get(j)) is not None and c.concurrency]
        if not limited:
            return store.claim_due(
                queue, jobs, limit, clock=clock, lock_timeout=timeout, owner=owner
            )
        free = [j for j in jobs if j not in limited]
        rows = (
            store.claim_due(queue, free, limit, clock=clock, lock_timeout=timeout, owner=owner)
            if free
            else []
        )
        if len(rows) < limit:
            rows += store.claim_limited(
                queue,
                limited,
                limit - len(rows),
                clock=clock,
                lock_timeout=timeout,
                queue_limits=None,
                owner=owner,
            )
        return rows

    def describe_failure(self, exc: BaseException) -> str:
        """An exception in one line for a log: a driver error as the store describes it
        (``cannot connect to URL: connection refused ...``), else its type and message."""
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, sa.exc.DBAPIError):
            cause = cause.__cause__
        text = self.store.describe(cause) if cause is not None else f"{type(exc).__name__}: {exc}"
        return " ".join(text.split())

    @functools.cached_property
    def fleet(self) -> Fleet:
        """The worker registry, paused queues and the reads about queues."""
        return Fleet(self.store)

    def next_due(self, queues: Sequence[str], jobs: Sequence[str]) -> dt.datetime | None:
        """When the earliest waiting run of ``queues`` falls due (or a lock expires)."""
        return self.store.next_due(queues, jobs)

    def renew_locks(self, held: Sequence[tuple[int, str, float]]) -> set[int]:
        """Heartbeat: renew the locks of ``(run id, token, lock timeout)``; the ids whose
        lock was lost (ended or taken over)."""
        return self.store.renew_locks(held, self.clock)

    @property
    def can_notify(self) -> bool:
        """Whether the database tells workers of new runs (else they poll)."""
        return self.store.notifies

    def is_contention(self, exc: BaseException) -> bool:
        """Whether a claim's error is contention between claimers (a deadlock, a busy
        database), to retry at once rather than back off from."""
        return self.store.is_contention(exc)

    def notifications(
        self, queues: Sequence[str], stopped: Callable[[], bool]
    ) -> Iterator[str] | None:
        """The names of ``queues`` as runs are enqueued to them, while not ``stopped()``
        (LISTEN/NOTIFY on PostgreSQL); None where the database cannot notify (poll)."""
        return self.store.notifications(queues, stopped)

    # -- operators --------------------------------------------------------------------

    def find(self, key: str, *, checked: bool = True) -> RunRow | None:
        """The run of ``key`` as last committed, or None (see :meth:`Store.find`)."""
        key = check_key(key)
        self.store.check_schema()
        with self.store.translated(f"reading key {key!r}"):
            return self.store.find(key, checked=checked)

    def wait(self, key: str, timeout: float | None, poll_interval: float) -> RunRow:
        """Block until the run of ``key`` is finished (succeeded, failed or cancelled)
        and return it. PostgreSQL wakes the waiter the moment the run's last transaction
        commits; elsewhere the run is read every ``poll_interval`` seconds. Raises
        :class:`acidic.UnknownKeyError` for a key with no run, ``TimeoutError`` after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.store.finished_runs() as heard:
            row = self.find(key)  # after LISTEN: a finish from now on is heard
            read_at = time.monotonic()
            while True:
                if row is None:
                    raise UnknownKeyError(f"no run has key {key!r}")
                if row.status in ENDED:
                    return row
                now = time.monotonic()
                left = _MAX_QUIET if deadline is None else deadline - now
                if left <= 0:
                    raise TimeoutError(f"run {key!r} did not finish within {timeout} s")
                if heard is None:
                    time.sleep(min(poll_interval, left))
                else:
                    ids = heard(min(left, _MAX_QUIET))
                    # Another run's finish: listen on, unless the run went unread too
                    # long (a notification is a hint; the row is the truth).
                    if ids and row.id not in ids and now - read_at < _MAX_QUIET:
                        continue
                row = self.find(key)
                read_at = time.monotonic()

    def history(self, row: RunRow) -> list[EventRow]:
        """The run's history, oldest first."""
        with self.store.translated(f"reading the history of key {row.key!r}"):
            return self.store.history(row.id)

    def wake(
        self,
        row: RunRow,
        statuses: Sequence[RunStatus],
        *,
        recovery_point: str | None = None,
        attempt_limit: int | None = None,
        doing: str,
    ) -> bool:
        """Make a parked run due now, if its status is one of ``statuses``."""
        change = t.woken(
            row,
            self.clock(),
            self.default_queue,
            recovery_point=recovery_point,
            attempt_limit=attempt_limit,
        )
        with self.store.translated(f"{doing} of key {row.key!r}"):
            return self.store.wake(
                row.id, [s.value for s in statuses], change, row.queue or self.default_queue
            )

    def wake_halted(self, row: RunRow) -> bool:
        """Make a halted run due now (a signal arrived while its step decided to halt)."""
        return self.wake(row, (RunStatus.HALTED,), doing="waking")

    def signal(self, row: RunRow, name: str, payload_json: str) -> None:
        """Store a signal for the run."""
        with self.store.translated(f"signalling key {row.key!r}"):
            self.store.add_signal(row.id, name, payload_json, self.clock())

    def cancel(self, row: RunRow, parked: Sequence[RunStatus]) -> str | None:
        """Cancel a run: at once if its status is one of ``parked``, else at the next step
        boundary if it is running. ``"cancelled"``, ``"requested"`` or None (finished)."""
        with self.store.translated(f"cancelling key {row.key!r}"):
            done = self.store.cancel(
                row.id, [s.value for s in parked], t.cancelled_at_once(self.clock())
            )
        if done == "cancelled" and row.parent_id is not None:
            self.wake_awaiting(row.parent_id)  # a cancelled child is finished
        return done

    def delete_expired(
        self, job: str, older_than: float, *, key: str | None = None, batch: int = 1000
    ) -> int:
        """Delete the ended, unlocked runs of ``job`` last active more than
        ``older_than`` seconds ago (only ``key``'s, when given), ``batch`` per
        transaction; how many."""
        self.store.check_schema()
        now = self.clock()
        with self.store.translated(f"expiring runs of {job}"):
            return self.store.delete_expired(
                job, now - dt.timedelta(seconds=older_than), now, key=key, batch=batch
            )

    def prune(self, older_than: float) -> int:
        """Delete succeeded and cancelled runs finished more than ``older_than`` seconds
        ago, with their history; how many."""
        self.store.check_schema()
        with self.store.translated("pruning runs"):
            return self.store.delete_finished(self.clock() - dt.timedelta(seconds=older_than))
