"""The relay's statements: runs handed to a queue (an executor) that are due but whose
wake-up message may be lost, and the mark that one relay republished them."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from ._connected import Connected
from ._schema import runs

__all__ = ["RelayReads"]

_WAITING = ("pending", "scheduled")


class RelayReads(Connected):
    """The relay's reads and marks (see :class:`Store`)."""

    def relay_candidates(
        self, executor: str, now: dt.datetime, cutoff: dt.datetime, limit: int
    ) -> list[tuple[int, str, dt.datetime, bool]]:
        """(id, key, since when it is due, whether it is running) of up to ``limit``
        runs of ``executor`` that a relay may republish now: waiting runs due at or
        before ``cutoff``, running runs whose owner's lock expired."""
        due = sa.case((runs.c.status == "running", runs.c.lock_expires_at), else_=runs.c.run_at)
        stmt = (
            sa.select(runs.c.id, runs.c.idempotency_key, due, runs.c.status)
            .where(
                runs.c.executor == executor,
                sa.or_(runs.c.relay_after.is_(None), runs.c.relay_after <= now),
                sa.or_(
                    sa.and_(runs.c.status.in_(_WAITING), runs.c.run_at <= cutoff),
                    sa.and_(runs.c.status == "running", runs.c.lock_expires_at <= now),
                ),
            )
            .order_by(runs.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            conn.rollback()
        return [(int(r[0]), str(r[1]), r[2], r[3] == "running") for r in rows]

    def mark_relayed(self, run_id: int, now: dt.datetime, until: dt.datetime) -> bool:
        """Leave the run to this relay until ``until``, unless another relay took it
        since ``now``: True for the one relay that is to publish it."""
        stmt = (
            runs.update()
            .where(
                runs.c.id == run_id,
                sa.or_(runs.c.relay_after.is_(None), runs.c.relay_after <= now),
            )
            .values(relay_after=until)
        )
        with self.transaction() as conn:
            return conn.execute(stmt).rowcount == 1
