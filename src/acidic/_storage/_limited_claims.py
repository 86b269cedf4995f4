"""Claims under limits: a run whose job has a concurrency ``Limit``, or any run of a
queue with a concurrency or rate limit.

One transaction per claim. The claim first locks the queue's row of ``acidic_limits``
(a limited queue), counts what the queue holds and started in the rate window, then
picks due runs (SKIP LOCKED) and, for each run with a concurrency key, locks that key's
row and counts the runs of the key that hold a live lock. A key's row is locked with
SKIP LOCKED: a claimer that finds a key being decided by another skips that run and
looks at the next. The queue's row is waited for (claims of a limited queue take turns;
a claimer that skipped would sit idle until its next poll); it is always locked first,
so no two claimers wait for each other in a cycle. Two claimers never both see the last
free slot, because each counts only while it holds the row lock, and the count sees
every claim committed before (READ COMMITTED, or SQLite's single writer).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._claims import StepwiseClaimer
from ._fleet import not_paused
from ._rows import RunRow
from ._schema import limits, runs, starts
from ._statements import RUN_COLUMNS, run_row

if TYPE_CHECKING:
    from ._connected import Connected

__all__ = ["LimitedClaimer", "QueueLimits"]

#: How many due runs a limited claim looks at per free slot: runs of a saturated key
#: ahead in the queue must not hide the runs behind them.
LOOKAHEAD = 10


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A queue's limits, as the claim enforces them (None: no such limit)."""

    concurrency: int | None = None
    rate_count: int | None = None
    rate_per: dt.timedelta | None = None


class LimitedClaimer:
    """Claims due runs while respecting concurrency and rate limits (every dialect)."""

    def __init__(self, store: Connected) -> None:
        self.store = store
        self.dialect = store.dialect
        #: Takes a picked run as the stepwise claim does (the same UPDATE).
        self._stepwise = StepwiseClaimer(store)

    def claim_due(
        self,
        queue: str,
        jobs: Sequence[str],
        limit: int,
        *,
        clock: Callable[[], dt.datetime],
        lock_timeout: Callable[[str], float],
        queue_limits: QueueLimits | None,
        owner: str | None = None,
    ) -> list[RunRow]:
        """Claim up to ``limit`` runs of ``queue`` whose job is one of ``jobs``, as
        :meth:`Store.claim_due` does (nothing from a paused queue; ``owner`` recorded on
        the runs), within the queue's and the runs' limits."""
        if not jobs or limit < 1:
            return []
        claimed: list[int] = []
        stale_ids: set[int] = set()
        with self.store.transaction() as conn:
            if conn.execute(sa.select(~not_paused(sa.literal(queue)))).scalar():
                return []
            now = clock()
            budget = limit
            queue_name = f"queue:{queue}"
            if queue_limits is not None:
                # Waited for, not skipped: a claimer that skipped would sit idle until
                # its next poll. Claims of the queue queue up for the length of a claim.
                self._lock(conn, queue_name, wait=True)
                budget = min(budget, self._queue_budget(conn, queue, queue_name, queue_limits, now))
                if budget < 1:
                    return []
            for run_id, job, key, key_max, stale in self._candidates(
                conn, queue, jobs, now, budget
            ):
                if len(claimed) >= budget:
                    break
                if key is not None and not self._slot_free(conn, key, key_max or 1, run_id, now):
                    continue
                self._stepwise.take(conn, run_id, job, now, lock_timeout(job), owner)
                if queue_limits is not None and queue_limits.rate_count is not None:
                    conn.execute(starts.insert().values(name=queue_name, at=now))
                claimed.append(run_id)
                if stale:
                    stale_ids.add(run_id)
            if not claimed:
                return []
            rows = conn.execute(
                sa.select(*RUN_COLUMNS).where(runs.c.id.in_(claimed)).order_by(runs.c.id)
            ).all()
        order = {run_id: i for i, run_id in enumerate(claimed)}
        return sorted(
            (run_row(r, taken_over=r[0] in stale_ids) for r in rows), key=lambda r: order[r.id]
        )

    # -- parts -------------------------------------------------------------------------

    def _lock(self, conn: Connection, name: str, *, wait: bool = False) -> bool:
        """Lock the limit row ``name`` (created if missing); False if another claimer
        holds it (unless ``wait``: then wait for it)."""
        row = sa.select(limits.c.name).where(limits.c.name == name)
        select = row.with_for_update() if wait else self.dialect.lock_rows_skip_locked(row)
        if conn.execute(select).first() is not None:
            return True
        if not wait and conn.execute(row).first() is not None:
            return False  # it exists: another claimer holds it
        conn.execute(self.dialect.insert_ignore(limits, {"name": name}))
        return conn.execute(select).first() is not None

    def _queue_budget(
        self, conn: Connection, queue: str, name: str, q: QueueLimits, now: dt.datetime
    ) -> int:
        """How many runs the queue may still start now."""
        budget = 1 << 30
        if q.concurrency is not None:
            held = conn.execute(
                sa.select(sa.func.count()).where(
                    runs.c.queue == queue,
                    runs.c.status == "running",
                    runs.c.lock_expires_at > now,
                )
            ).scalar_one()
            budget = min(budget, q.concurrency - int(held))
        if q.rate_count is not None and q.rate_per is not None:
            window_start = now - q.rate_per
            conn.execute(starts.delete().where(starts.c.name == name, starts.c.at <= window_start))
            started = conn.execute(
                sa.select(sa.func.count()).where(starts.c.name == name, starts.c.at > window_start)
            ).scalar_one()
            budget = min(budget, q.rate_count - int(started))
        return budget

    def _candidates(
        self, conn: Connection, queue: str, jobs: Sequence[str], now: dt.datetime, budget: int
    ) -> list[tuple[int, str, str | None, int | None, bool]]:
        """Runs whose owner's lock expired (marked True), then due runs in claim order,
        each locked (SKIP LOCKED) for this transaction."""
        n = budget * LOOKAHEAD
        base = sa.select(
            runs.c.id, runs.c.job, runs.c.concurrency_key, runs.c.concurrency_limit
        ).where(runs.c.queue == queue, runs.c.job.in_(list(jobs)))
        stale = (
            base.where(runs.c.status == "running", runs.c.lock_expires_at <= now)
            .order_by(runs.c.lock_expires_at)
            .limit(n)
        )
        due = (
            base.where(runs.c.status.in_(("pending", "scheduled")), runs.c.run_at <= now)
            .order_by(runs.c.priority.desc(), runs.c.run_at, runs.c.id)
            .limit(n)
        )
        found: list[tuple[int, str, str | None, int | None, bool]] = []
        for query in (stale, due):
            for row in conn.execute(self.dialect.lock_rows_skip_locked(query)):
                found.append((int(row[0]), str(row[1]), row[2], row[3], query is stale))
        return found

    def _slot_free(
        self, conn: Connection, key: str, key_max: int, run_id: int, now: dt.datetime
    ) -> bool:
        """Whether the run ``run_id`` may take a slot of ``key`` (locked while counting)."""
        if not self._lock(conn, key):
            return False
        held = conn.execute(
            sa.select(sa.func.count()).where(
                runs.c.concurrency_key == key,
                runs.c.status == "running",
                runs.c.lock_expires_at > now,
                runs.c.id != run_id,
            )
        ).scalar_one()
        return int(held) < key_max
