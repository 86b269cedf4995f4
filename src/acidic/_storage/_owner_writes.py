"""Writes by a run's owner, fenced by its lock token: a step's progress (in the step's
own transaction, or alone), a failure, a release, a finish outside any step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._connected import Connected
from ._rendered import Rendered
from ._rows import EventRow, Fence, RunChange
from ._schema import history, runs
from ._statements import fenced_update

__all__ = ["OwnerWrites"]


class OwnerWrites(Connected):
    """Fenced writes of a run's owner (see :class:`Store`)."""

    # -- progress ---------------------------------------------------------------------

    def write_progress(
        self,
        conn: Connection,
        fence: Fence,
        change: RunChange,
        events: Sequence[EventRow] = (),
    ) -> bool:
        """In ``conn``'s transaction, write a step's end (``change``) if the fence's owner
        still holds the run and no cancellation was requested, and append ``events`` to
        its history. False (nothing written) otherwise: :meth:`cancel_requested` says
        which."""
        run_id = fence.run_id
        values = change.values()
        params: dict[str, Any] = {"p_run_id": run_id, "p_token": fence.token}
        params.update({f"v_{column}": value for column, value in values.items()})
        if events and self.dialect.dml_in_cte:
            # One statement (one round trip): the fenced UPDATE in a CTE, and the events
            # inserted only for the row it returns.
            stmt = self._progress_statement(tuple(values), len(events))
            for i, e in enumerate(events):
                params.update(
                    {
                        f"e{i}_step": e.step,
                        f"e{i}_event": e.event,
                        f"e{i}_at": e.at,
                        f"e{i}_attempt": e.attempt,
                        f"e{i}_error": e.error,
                    }
                )
            return stmt.rowcount(conn, params) == len(events)
        if self._update_statement(tuple(values)).rowcount(conn, params) != 1:
            return False
        self._append(conn, run_id, events)
        return True

    def fail(self, fence: Fence, change: RunChange, events: Sequence[EventRow]) -> bool:
        """Record a step's failure (``change`` releases the lock) and its history events,
        if the fence's owner still holds the run. A requested cancellation does not stop
        this write: the change already says ``cancelled`` then."""
        return self._update_owned(fence, change, events)

    def finish(self, fence: Fence, change: RunChange, events: Sequence[EventRow]) -> bool:
        """Finish an owned run from outside a step (an HTTP record's stored response),
        if the fence's owner still holds it."""
        return self._update_owned(fence, change, events)

    def release(self, fence: Fence, change: RunChange) -> bool:
        """Release an owned run as ``change`` says: handed back, failed before any step,
        or cancelled at a step boundary (False if the owner lost it meanwhile)."""
        return self._update_owned(fence, change, ())

    def _update_owned(self, fence: Fence, change: RunChange, events: Sequence[EventRow]) -> bool:
        with self.transaction() as conn:
            updated = conn.execute(
                runs.update()
                .where(runs.c.id == fence.run_id, runs.c.lock_token == fence.token)
                .values(change.values())
            ).rowcount
            if updated != 1:
                return False
            self._append(conn, fence.run_id, events)
        return True

    def _update_statement(self, columns: tuple[str, ...]) -> Rendered:
        """The fenced UPDATE of a run's ``columns`` (progress without its events), built
        and rendered once per set of columns."""
        rendered = self._update_statements.get(columns)
        if rendered is None:
            stmt = fenced_update(columns)
            rendered = self._update_statements[columns] = Rendered.of(stmt, self.engine.dialect)
        return rendered

    def write_progress_alone(
        self, fence: Fence, change: RunChange, events: Sequence[EventRow]
    ) -> bool:
        """:meth:`write_progress` in a transaction of its own, committed (one statement
        in autocommit where the dialect writes progress and events in one)."""
        if events and self.dialect.dml_in_cte and self.dialect.autocommit_writes:
            with self.autocommitted() as conn:
                return self.write_progress(conn, fence, change, events)
        with self.transaction() as conn:
            return self.write_progress(conn, fence, change, events)

    def _progress_statement(self, columns: tuple[str, ...], n_events: int) -> Rendered:
        """UPDATE (fenced) and INSERT of ``n_events`` history rows as one statement,
        built and rendered once per shape."""
        key = (columns, n_events)
        stmt = self._progress_statements.get(key)
        if stmt is not None:
            return stmt
        updated = fenced_update(columns).returning(runs.c.id).cte("acidic_progress")
        names = ("step", "event", "at", "attempt", "error")
        rows = [
            sa.select(
                updated.c.id,
                *(
                    sa.bindparam(f"e{i}_{name}", type_=history.c[name].type).label(name)
                    for name in names
                ),
            )
            for i in range(n_events)
        ]
        # Rows are inserted (and numbered) in this order: started before its end.
        source = rows[0] if n_events == 1 else sa.union_all(*rows)
        rendered = Rendered.of(
            history.insert().from_select(["run_id", *names], source), self.engine.dialect
        )
        self._progress_statements[key] = rendered
        return rendered

    def _append(self, conn: Connection, run_id: int, events: Sequence[EventRow]) -> None:
        if events:
            # One statement compiled once (a multi-row VALUES would be compiled anew on
            # each call); the driver sends the rows in one round trip.
            self._append_statement.execute_many(
                conn,
                [
                    {
                        "run_id": run_id,
                        "step": e.step,
                        "event": e.event,
                        "at": e.at,
                        "attempt": e.attempt,
                        "error": e.error,
                    }
                    for e in events
                ],
            )
