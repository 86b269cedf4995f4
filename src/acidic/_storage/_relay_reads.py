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
    ) -> list[tuple[int, str]]:
        """(id, key) of up to ``limit`` runs of ``executor`` that should have been
        delivered by ``cutoff`` and were not republished since: waiting runs due at or
        before ``cutoff``, running runs whose owner's lock expired."""
        not_recent = sa.or_(runs.c.published_at.is_(None), runs.c.published_at <= cutoff)
        stmt = (
            sa.select(runs.c.id, runs.c.idempotency_key)
            .where(
                runs.c.executor == executor,
                not_recent,
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
        return [(int(r[0]), str(r[1])) for r in rows]

    def mark_published(self, run_id: int, now: dt.datetime, cutoff: dt.datetime) -> bool:
        """Mark the run republished now, unless another relay did since ``cutoff``:
        True for the one relay that is to publish it."""
        stmt = (
            runs.update()
            .where(
                runs.c.id == run_id,
                sa.or_(runs.c.published_at.is_(None), runs.c.published_at <= cutoff),
            )
            .values(published_at=now)
        )
        with self.transaction() as conn:
            return conn.execute(stmt).rowcount == 1
