"""The manager: the one entry point to runs for the App and every adapter.

It claims a run by its key (creating it, taking it over, or answering with its stored
result), hands claimed runs to the :class:`~._runner.Runner`, and offers the operations
adapters need (enqueue, claim due runs, renew locks, wake, cancel, prune) as methods
named after what they do. It reaches the database only through the storage port
(:class:`acidic._storage.Store`), and decides what to write with the pure functions of
:mod:`._transitions`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .._encoding import check_key, default_key, dumps, encode_value, loads
from .._errors import (
    AcidicError,
    ArgumentMismatchError,
    ContentionError,
    DefinitionMismatchError,
    KeyLockedError,
    RunCancelledError,
    StorageError,
    UnknownRecoveryPointError,
)
from .._job import Job, JobDefinition
from .._run import RunStatus
from .._storage import EventRow, Fence, NewRun, RunRow, Store
from .._storage._checks import check_row
from . import _transitions as t
from ._runner import Claim, Runner, error_json
from ._transitions import Ended

__all__ = ["Claim", "Clock", "Finished", "Manager", "check_same_call", "utcnow"]

log = logging.getLogger("acidic.run")

#: How many times a race on a key (deadlock, serialization failure, busy SQLite,
#: a row created or claimed under our feet) is retried before ContentionError.
RACE_RETRIES = 8

_CLAIMABLE = tuple(
    s.value
    for s in (
        RunStatus.PENDING,
        RunStatus.SCHEDULED,
        RunStatus.RUNNING,
        RunStatus.HALTED,
        RunStatus.FAILED,
    )
)

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC: the default clock."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Finished:
    """The key's run had already succeeded: its decoded stored result."""

    result: Any


class Manager:
    """The one manager of runs: claims, executes, releases; every adapter calls it.

    ``jobs`` is the App's registry (name -> class), shared, not copied: a job registered
    later is known here too.
    """

    def __init__(
        self,
        store: Store,
        *,
        lock_timeout: float,
        clock: Clock = utcnow,
        default_queue: str = "default",
        jobs: Mapping[str, type[Job]] | None = None,
    ) -> None:
        self.store = store
        self.lock_timeout = lock_timeout
        self.clock = clock
        #: Where an inline run goes when it parks, so that a worker can continue it.
        self.default_queue = default_queue
        self.jobs: Mapping[str, type[Job]] = {} if jobs is None else jobs
        self.runner = Runner(self)

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

    def run(self, name: str, job: Job, key: str | None) -> Any:
        """Run ``job`` under ``key`` to its end: its result, or None if it halted."""
        definition = type(job).__acidic_definition__
        encoded_args = definition.encode_args(job)
        # A key derived from unique_by() identifies the run by that value alone: other
        # arguments may differ between calls, and the first call's arguments are used.
        same_args = key is not None or type(job).unique_by is Job.unique_by
        key = self.key_for(name, job, encoded_args) if key is None else check_key(key)
        claim = self.claim(name, definition, key, encoded_args, same_args=same_args)
        if isinstance(claim, Finished):
            return claim.result
        if not same_args:  # the run keeps the arguments it was created with
            job = definition.instantiate(json.loads(claim.row.args))
        ended = self.execute(job, definition, claim)
        return ended.value

    def claim(
        self,
        name: str,
        definition: JobDefinition,
        key: str,
        encoded_args: dict[str, Any],
        *,
        same_args: bool = True,
    ) -> Claim | Finished:
        """Create the key's run or take it over, or return its stored result."""
        self.store.check_schema()
        dialect = self.store.dialect
        for attempt in range(RACE_RETRIES):
            try:
                # The first try does not wait for SQLite's write lock: if the lock is held
                # by a racer that just created this key, the next try finds its row and
                # reports KeyLockedError at once instead of queueing behind its step.
                outcome = self._try_claim(
                    name, definition, key, encoded_args, same_args, patient=attempt > 0
                )
            except sa.exc.DBAPIError as exc:
                if not (dialect.is_retryable(exc) or dialect.is_unique_violation(exc)):
                    raise StorageError(
                        f"database error while claiming key {key!r} (job {name}): {exc.orig!r}"
                    ) from exc
                outcome = None
            if outcome is not None:
                return outcome
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - jitter, not crypto
        raise ContentionError(
            f"key {key!r} (job {name}): could not create or claim the run after "
            f"{RACE_RETRIES} attempts because of concurrent writers"
        )

    def _try_claim(
        self,
        name: str,
        definition: JobDefinition,
        key: str,
        encoded_args: dict[str, Any],
        same_args: bool,
        *,
        patient: bool,
    ) -> Claim | Finished | None:
        """One attempt; None when a concurrent writer changed the row under us."""
        store = self.store
        # Most calls create their key: where inserting costs one statement in autocommit
        # (PostgreSQL), insert first and read the row only if the key exists. Not where
        # the insert would take a write lock even for a replay (SQLite).
        insert_first = not patient and store.dialect.autocommit_writes
        row = None if insert_first else store.find(key)
        if row is not None:
            check_row(row)
        token = uuid.uuid4().hex
        now = self.clock()
        timeout = self.lock_timeout_for(definition)
        expires = now + dt.timedelta(seconds=timeout)
        if row is None:
            new = store.insert_claimed(
                NewRun(
                    key=key,
                    job=name,
                    args=dumps(encoded_args),
                    steps=dumps(definition.step_names),
                    status=RunStatus.RUNNING,
                    recovery_point=definition.steps[0].name,
                    created_at=now,
                    attempts=1,
                    lock_token=token,
                    locked_at=now,
                    lock_expires_at=expires,
                    last_run_at=now,
                ),
                patient=patient,
            )
            if new is not None:
                return Claim(new, token, retrying=False)
            if not insert_first:
                return None  # created meanwhile: the next attempt reads it
            row = store.find(key)
            if row is None:
                return None  # gone again (pruned): the next attempt starts over
            check_row(row)
        check_same_call(row, name, encoded_args if same_args else None)
        verdict = t.claimable(row, now)
        if verdict == "finished":
            return Finished(None if row.result is None else loads(row.result))
        if verdict == "cancelled":
            raise RunCancelledError(f"key {key!r} (job {name}) was cancelled; it does not run")
        if verdict == "not due":
            return Finished(None)  # asleep (Sleep, a retry's backoff) or run_at ahead
        if verdict == "locked":
            raise _locked(row)
        _check_definition(row, name, definition)
        claimed = store.claim(
            row.id,
            token=token,
            clock=self.clock,
            lock_timeout=timeout,
            steps=dumps(definition.step_names),
            claimable=_CLAIMABLE,
        )
        if claimed is not None:
            return Claim(claimed, token, retrying=self._retrying(claimed))
        fresh = store.find(key)
        if fresh is not None and fresh.status == RunStatus.SUCCEEDED:
            return None  # finished meanwhile: the next attempt returns its result
        raise _locked(fresh or row)

    def claimed(self, row: RunRow) -> Claim:
        """A run claimed by a worker, ready for :meth:`execute`."""
        assert row.lock_token is not None
        # Claimed for the first time (attempts just became 1): no step has started, so
        # there is no history to read.
        return Claim(row, row.lock_token, retrying=row.attempts > 1 and self._retrying(row))

    def _retrying(self, row: RunRow) -> bool:
        return t.retrying(row, self.store.last_event(row.id))

    def execute(
        self,
        job: Job,
        definition: JobDefinition,
        claim: Claim,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Ended:
        """Drive a claimed run until it ends, parks or is released (see :class:`Runner`)."""
        return self.runner.execute(job, definition, claim, should_stop=should_stop)

    def execute_claimed(self, row: RunRow, *, should_stop: Callable[[], bool]) -> Ended | None:
        """Execute a run an executor claimed (by :meth:`claim_due`). A run that cannot
        execute (its stored fields unreadable, its job changed incompatibly, its budget
        used up by executions that kept dying) is failed without running a step, and
        None is returned. A step's exception propagates as from :meth:`execute`."""
        cls = self.jobs[row.job]
        definition = cls.__acidic_definition__
        try:
            if row.attempt_limit is not None and row.attempts > row.attempt_limit:
                # Only takeovers get here: the run's executions kept dying.
                raise AcidicError(
                    f"run {row.key!r} used its {row.attempt_limit} attempts: its "
                    "executions kept ending without recording an outcome (crashed workers)"
                )
            check_row(row)
            _check_definition(row, row.job, definition)
            job = definition.instantiate(json.loads(row.args))
        except AcidicError as exc:
            self.fail_claimed(row, exc)
            log.warning("run %s failed before any step: %s", row.key, exc)
            return None
        return self.execute(job, definition, self.claimed(row), should_stop=should_stop)

    def fail_claimed(self, row: RunRow, exc: BaseException) -> None:
        """Fail a claimed run that cannot execute (changed job code, used-up budget).
        The claim does not count as an attempt: nothing was executed."""
        assert row.lock_token is not None
        self.store.release(
            Fence(row.id, row.lock_token),
            t.failed_before_start(row, error_json(exc, row.recovery_point)),
        )

    def release_claimed(self, row: RunRow) -> None:
        """Hand back a claimed run before any step of it ran (its worker is stopping):
        due at once, for any worker, without using up an attempt."""
        assert row.lock_token is not None
        self.store.release(Fence(row.id, row.lock_token), t.handed_back(row, self.clock()))

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
    ) -> RunRow:
        """Store a pending run for a worker (in ``connection``'s transaction when given)
        and wake the workers of its queue; an existing key returns its run, or raises
        :class:`acidic.ArgumentMismatchError` for other arguments."""
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

    def claim_due(self, queue: str, jobs: Sequence[str], limit: int) -> list[RunRow]:
        """Claim up to ``limit`` due runs of ``queue`` (runs whose owner's lock expired
        first, then by priority, due time and enqueue order); each gets a token."""
        return self.store.claim_due(
            queue, jobs, limit, clock=self.clock, lock_timeout=self.lock_timeout_of
        )

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
        return self.store.dialect.notifies

    def is_contention(self, exc: BaseException) -> bool:
        """Whether a claim's error is contention between claimers (a deadlock, a busy
        database), to retry at once rather than back off from."""
        return isinstance(exc, sa.exc.DBAPIError) and self.store.dialect.is_retryable(exc)

    def notifications(
        self, queues: Sequence[str], stopped: Callable[[], bool]
    ) -> Iterator[str] | None:
        """The names of ``queues`` as runs are enqueued to them, while not ``stopped()``
        (LISTEN/NOTIFY on PostgreSQL); None where the database cannot notify (poll)."""
        return self.store.notifications(queues, stopped)

    # -- operators --------------------------------------------------------------------

    def find(self, key: str, *, doing: str = "reading") -> RunRow | None:
        """The run of ``key`` as last committed, or None."""
        key = check_key(key)
        self.store.check_schema()
        with self.store.translated(f"{doing} key {key!r}"):
            return self.store.find(key)

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
            return self.store.cancel(
                row.id, [s.value for s in parked], t.cancelled_at_once(self.clock())
            )

    def delete_expired(self, job: str, older_than: float, *, key: str | None = None) -> int:
        """Delete the ended, unlocked runs of ``job`` last active more than
        ``older_than`` seconds ago (only ``key``'s, when given); how many."""
        self.store.check_schema()
        now = self.clock()
        with self.store.translated(f"expiring runs of {job}"):
            return self.store.delete_expired(
                job, now - dt.timedelta(seconds=older_than), now, key=key
            )

    def prune(self, older_than: float) -> int:
        """Delete succeeded and cancelled runs finished more than ``older_than`` seconds
        ago, with their history; how many."""
        self.store.check_schema()
        with self.store.translated("pruning runs"):
            return self.store.delete_finished(self.clock() - dt.timedelta(seconds=older_than))


def _locked(row: RunRow) -> KeyLockedError:
    expiry = row.lock_expires_at.isoformat() if row.lock_expires_at else "soon"
    return KeyLockedError(
        f"key {row.key!r} (job {row.job}) is held by a live run at step "
        f"{row.recovery_point!r}; unless its owner renews the lock, it becomes claimable "
        f"at {expiry}"
    )


def check_same_call(row: RunRow, name: str, encoded_args: dict[str, Any] | None) -> None:
    if row.job != name:
        raise ArgumentMismatchError(
            f"key {row.key!r} belongs to job {row.job}, not {name}; use another key"
        )
    if encoded_args is None:
        return
    stored = json.loads(row.args)
    if stored != encoded_args:
        fields = sorted(set(stored) | set(encoded_args))
        diffs = [
            f"{f}: stored {stored.get(f, '<absent>')!r}, given {encoded_args.get(f, '<absent>')!r}"
            for f in fields
            if stored.get(f, ...) != encoded_args.get(f, ...)
        ]
        raise ArgumentMismatchError(
            f"key {row.key!r} (job {name}) was first used with other arguments: " + "; ".join(diffs)
        )


def _check_definition(row: RunRow, job: str, definition: JobDefinition) -> None:
    names = definition.step_names
    if row.recovery_point not in definition.steps_by_name:
        raise UnknownRecoveryPointError(
            f"key {row.key!r}: the stored recovery point {row.recovery_point!r} is not a step "
            f"of job {job}, whose steps are {names}"
        )
    stored = json.loads(row.steps)
    if names[: len(stored)] != stored:
        raise DefinitionMismatchError(
            f"key {row.key!r}: job {job} was started with steps {stored}, but its steps are now "
            f"{names}; steps may only be appended at the end while runs are unfinished"
        )
