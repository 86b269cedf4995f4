"""Child runs and ``Await``: the keys an awaiting run waits for, and its wake-up once
they are all finished.

A run parks as ``awaiting`` with one ``acidic_awaits`` row per awaited key, in the
transaction of the step that returned ``Await``. It becomes due again through
:meth:`Family.wake_awaiting`, which holds the run's row lock while it checks that every
awaited run is finished, so that the parent's park and a child's finish, racing, cannot
both conclude "not yet": whichever commits second sees the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._connected import Connected
from ._rows import RunChange, RunRow
from ._schema import awaits, runs
from ._statements import RUN_COLUMNS, run_row

__all__ = ["Family"]

_FINISHED = ("succeeded", "failed", "cancelled")


def _unfinished_awaited(run_id: sa.ColumnElement[int] | int) -> sa.Exists:
    child = runs.alias("awaited_run")
    return sa.exists().where(
        awaits.c.run_id == run_id,
        child.c.idempotency_key == awaits.c.awaited_key,
        child.c.status.not_in(_FINISHED),
    )


class Family(Connected):
    """Statements of child runs and ``Await`` (see :class:`Store`)."""

    def set_awaits(self, conn: Connection, run_id: int, keys: Sequence[str]) -> list[str]:
        """In ``conn``'s transaction, record that run ``run_id`` awaits ``keys`` (in place
        of what it awaited before); the keys that have no run (nothing written then)."""
        found = set(
            conn.execute(
                sa.select(runs.c.idempotency_key).where(runs.c.idempotency_key.in_(keys))
            ).scalars()
        )
        missing = [k for k in keys if k not in found]
        if missing:
            return missing
        conn.execute(awaits.delete().where(awaits.c.run_id == run_id))
        conn.execute(awaits.insert(), [{"run_id": run_id, "awaited_key": k} for k in keys])
        return []

    def set_awaits_alone(self, run_id: int, keys: Sequence[str]) -> list[str]:
        """:meth:`set_awaits` in a transaction of its own."""
        with self.transaction() as conn:
            return self.set_awaits(conn, run_id, keys)

    def wake_awaiting(self, run_id: int, change: RunChange) -> bool:
        """Make run ``run_id`` due (``change``) if it is awaiting and every run it awaits
        is finished, and wake the workers of its queue; whether it did."""
        with self.transaction() as conn:
            row = conn.execute(
                sa.select(runs.c.status, runs.c.queue).where(runs.c.id == run_id).with_for_update()
            ).first()
            if row is None or row.status != "awaiting":
                return False
            if conn.execute(sa.select(_unfinished_awaited(run_id))).scalar():
                return False
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.status == "awaiting")
                .values(change.values())
            )
            conn.execute(awaits.delete().where(awaits.c.run_id == run_id))
            if row.queue is not None:
                self.dialect.notify(conn, row.queue)
        return True

    def ready_awaiting(self, limit: int = 100) -> list[int]:
        """Ids of awaiting runs whose awaited runs are all finished (a wake-up that a
        crash between a child's commit and its parent's wake-up left undone)."""
        query = (
            sa.select(runs.c.id)
            .where(runs.c.status == "awaiting", ~_unfinished_awaited(runs.c.id))
            .limit(limit)
        )
        return self._read(lambda conn: list(conn.execute(query).scalars()))

    def children(self, parent_id: int, conn: Connection | None = None) -> list[RunRow]:
        """The runs spawned by run ``parent_id``, oldest first (read on ``conn`` when
        given: a step's own transaction, which on SQLite holds the only write lock)."""
        query = sa.select(*RUN_COLUMNS).where(runs.c.parent_id == parent_id).order_by(runs.c.id)
        if conn is not None:
            return [run_row(r) for r in conn.execute(query)]
        return self._read(lambda c: [run_row(r) for r in c.execute(query)])
