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
import functools
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .._encoding import check_key, dumps, loads
from .._errors import (
    AcidicError,
    ContentionError,
    RunCancelledError,
    StorageError,
)
from .._job import Job, JobDefinition
from .._run import RunStatus
from .._storage import Fence, NewRun, RunRow
from .._storage._checks import check_row
from .._storage._queries import Queries
from . import _transitions as t
from ._base import Clock, utcnow
from ._checks import check_definition, check_same_call, concurrency_of, locked
from ._observe import current_executor
from ._operations import Operations
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
        RunStatus.INTERRUPTED,
    )
)


@dataclass(frozen=True, slots=True)
class Finished:
    """The key's run had already succeeded: its decoded stored result."""

    result: Any


class Manager(Operations):
    """The one manager of runs: claims, executes, releases; every adapter calls it.

    ``jobs`` is the App's registry (name -> class), shared, not copied: a job registered
    later is known here too.
    """

    @functools.cached_property
    def runner(self) -> Runner:
        """Executes the steps of the runs this manager claims."""
        return Runner(self)

    @property
    def queries(self) -> Queries:
        """The read-only queries of the CLI and the dashboard, on this manager's store."""
        return Queries(self.store)

    def run(self, name: str, job: Job, key: str | None) -> Any:
        """Run ``job`` under ``key`` to its end: its result, or None if it halted."""
        definition = type(job).__acidic_definition__
        encoded_args = definition.encode_args(job)
        # A key derived from unique_by() identifies the run by that value alone: other
        # arguments may differ between calls, and the first call's arguments are used.
        same_args = key is not None or type(job).unique_by is Job.unique_by
        key = self.key_for(name, job, encoded_args) if key is None else check_key(key)
        claim = self.claim(
            name,
            definition,
            key,
            encoded_args,
            same_args=same_args,
            concurrency=concurrency_of(job),
            flushed_later=True,  # the run's steps flush before any effect: see insert_claimed
        )
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
        concurrency: dict[str, Any] | None = None,
        flushed_later: bool = False,
    ) -> Claim | Finished:
        """Create the key's run or take it over, or return its stored result
        (``concurrency``: the new run's limit columns, see :func:`concurrency_of`;
        ``flushed_later``: the caller's next write of the run is flushed and makes
        no effect depend on the run before it, see ``Store.insert_claimed``)."""
        self.store.check_schema()
        for attempt in range(RACE_RETRIES):
            try:
                # The first try does not wait for SQLite's write lock: if the lock is held
                # by a racer that just created this key, the next try finds its row and
                # reports KeyLockedError at once instead of queueing behind its step.
                outcome = self._try_claim(
                    name,
                    definition,
                    key,
                    encoded_args,
                    same_args,
                    patient=attempt > 0,
                    concurrency=concurrency,
                    flushed_later=flushed_later,
                )
            except sa.exc.DBAPIError as exc:
                if not self.store.is_race(exc):
                    raise StorageError(
                        f"database error while claiming key {key!r} (job {name}): "
                        + self.store.describe(exc)
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
        concurrency: dict[str, Any] | None = None,
        flushed_later: bool = False,
    ) -> Claim | Finished | None:
        """One attempt; None when a concurrent writer changed the row under us."""
        store = self.store
        # Most calls create their key: where inserting costs one statement in autocommit
        # (PostgreSQL), insert first and read the row only if the key exists. Not where
        # the insert would take a write lock even for a replay (SQLite).
        insert_first = not patient and store.inserts_in_one_statement
        row = None if insert_first else store.find(key)
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
                    **(concurrency or {}),
                ),
                patient=patient,
                flushed_later=flushed_later,
            )
            if new is not None:
                return Claim(new, token, retrying=False)
            if not insert_first:
                return None  # created meanwhile: the next attempt reads it
            row = store.find(key)
            if row is None:
                return None  # gone again (pruned): the next attempt starts over
        check_same_call(row, name, encoded_args if same_args else None)
        verdict = t.claimable(row, now)
        if verdict == "finished":
            return Finished(None if row.result is None else loads(row.result))
        if verdict == "cancelled":
            raise RunCancelledError(f"key {key!r} (job {name}) was cancelled; it does not run")
        if verdict == "not due":
            return Finished(None)  # asleep (Sleep, a retry's backoff) or run_at ahead
        if verdict == "locked":
            raise locked(row)
        check_definition(row, name, definition)
        claimed = store.claim_seen(
            row,
            token=token,
            clock=self.clock,
            lock_timeout=timeout,
            steps=dumps(definition.step_names),
            claimable=_CLAIMABLE,
        )
        if claimed is not None:
            if row.lock_token is not None:  # claimable though locked: the lock was stale
                self.observer.takeover(claimed)
            return Claim(claimed, token, retrying=self._retrying(claimed))
        fresh = store.find(key)
        if fresh is not None and fresh.status == RunStatus.SUCCEEDED:
            return None  # finished meanwhile: the next attempt returns its result
        raise locked(fresh or row)

    def claimed(self, row: RunRow) -> Claim:
        """A run claimed by a worker, ready for :meth:`execute`."""
        assert row.lock_token is not None
        # Claimed for the first time (attempts just became 1): no step has started, so
        # there is no history to read.
        return Claim(
            row,
            row.lock_token,
            retrying=row.attempts > 1 and self._retrying(row),
            # Executed under a heartbeat (a worker's, an executor delivery's).
            heartbeat=True,
        )

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
            check_row(row)  # claimed among others: not read by key
            check_definition(row, row.job, definition)
            job = definition.instantiate(json.loads(row.args))
        except AcidicError as exc:
            self.fail_claimed(row, exc)
            log.warning("run %s failed before any step: %s", row.key, exc)
            return None
        # A run claimed from the queue: acidic's worker, unless another executor said so.
        executor = current_executor.set(
            "acidic" if current_executor.get() == "inline" else current_executor.get()
        )
        try:
            return self.execute(job, definition, self.claimed(row), should_stop=should_stop)
        finally:
            current_executor.reset(executor)

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
