"""The store: every read and write acidic makes to its own tables.

A narrow port between the engine and the database. The engine asks for runs by key,
for a claim, for progress to be written under the owner's token (fencing); the store
answers in plain records and never interprets job semantics. Driver errors leave here
translated to :class:`acidic.StorageError`, except inside a step's own transaction,
where the step's exceptions must stay the user's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .._errors import JobDefinitionError, SchemaVersionError, StorageError
from . import _migrations
from ._dialects import Dialect, dialect_for, make_engine
from ._schema import history, runs

__all__ = ["EventRow", "RunRow", "Store"]

#: Seconds an impatient SQLite write waits for the write lock.
IMPATIENT_BUSY_TIMEOUT = 0.05


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run row as stored (JSON columns still text)."""

    id: int
    key: str
    job: str
    args: str
    steps: str
    status: str
    recovery_point: str | None
    ctx: str
    result: str | None
    error: str | None
    attempts: int
    lock_token: str | None
    locked_at: dt.datetime | None
    created_at: dt.datetime
    last_run_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class EventRow:
    step: str
    event: str
    at: dt.datetime
    attempt: int
    error: str | None = None


_RUN_COLUMNS = (
    runs.c.id,
    runs.c.idempotency_key,
    runs.c.job,
    runs.c.args,
    runs.c.steps,
    runs.c.status,
    runs.c.recovery_point,
    runs.c.ctx,
    runs.c.result,
    runs.c.error,
    runs.c.attempts,
    runs.c.lock_token,
    runs.c.locked_at,
    runs.c.created_at,
    runs.c.last_run_at,
    runs.c.finished_at,
)
_EVENT_COLUMNS = (
    history.c.step,
    history.c.event,
    history.c.at,
    history.c.attempt,
    history.c.error,
)
_BY_KEY = sa.select(*_RUN_COLUMNS).where(runs.c.idempotency_key == sa.bindparam("key"))
_BY_ID = sa.select(*_RUN_COLUMNS).where(runs.c.id == sa.bindparam("id"))


def _refuse_commit_in_step(conn: Connection) -> None:
    # Raised before COMMIT is sent: a step that commits its own transaction would
    # commit its writes without the move of the recovery point.
    step = conn.get_execution_options().get("acidic_in_step")
    if step:
        raise JobDefinitionError(
            f"{step} tried to commit its transaction: a transactional step must leave "
            "commit and rollback to acidic, which commits its writes with its progress"
        )


def _run_row(row: Any) -> RunRow:
    return RunRow(*row)  # the columns of _RUN_COLUMNS, in RunRow's field order


class Store:
    """acidic's tables on one database (PostgreSQL, SQLite or MySQL/MariaDB)."""

    def __init__(self, database: str | sa.URL | Engine) -> None:
        self.engine = make_engine(database)
        self.dialect: Dialect = dialect_for(self.engine)
        if not sa.event.contains(self.engine, "commit", _refuse_commit_in_step):
            sa.event.listen(self.engine, "commit", _refuse_commit_in_step)
        self._schema_checked = False

    # -- schema -----------------------------------------------------------------------

    def migrate(self) -> list[str]:
        with self._translated("migrating"):
            applied = _migrations.migrate(self.engine, self.dialect)
        self._schema_checked = True
        return applied

    def check_schema(self) -> None:
        """Refuse to work on a database whose schema is not the one this code writes."""
        if self._schema_checked:
            return
        if self.dialect.database_missing(self.engine):
            version = None  # do not create an empty SQLite file just to look into it
        else:
            with self._translated("checking the schema"):
                version = _migrations.read_version(self.engine)
        latest = _migrations.latest_version(self.dialect)
        where = self.engine.url.render_as_string(hide_password=True)
        if version is None or version < latest:
            state = "do not exist" if version is None else f"are at version {version} of {latest}"
            raise SchemaVersionError(
                f"acidic's tables in {where} {state}: run app.migrate() or `acidic migrate`"
            )
        if version > latest:
            raise SchemaVersionError(
                f"acidic's tables in {where} are at version {version}, newer than this "
                f"acidic (which knows up to {latest}): upgrade acidic"
            )
        self._schema_checked = True

    # -- transactions -----------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (IMMEDIATE on SQLite); commits on success."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as exc:
            raise StorageError(f"database error while {doing}: {exc.orig!r}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"database error while {doing}: {exc}") from exc

    def translated(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return self._translated(doing)

    # -- reads ------------------------------------------------------------------------

    def find(self, key: str) -> RunRow | None:
        """The run row of ``key`` as last committed; takes no lock and never waits."""
        with self.engine.connect().execution_options(acidic_read_only=True) as conn:
            row = conn.execute(_BY_KEY, {"key": key}).first()
            conn.rollback()
        return None if row is None else _run_row(row)

    def history(self, run_id: int) -> list[EventRow]:
        stmt = sa.select(*_EVENT_COLUMNS).where(history.c.run_id == run_id).order_by(history.c.id)
        with self.engine.connect().execution_options(acidic_read_only=True) as conn:
            rows = conn.execute(stmt).all()
            conn.rollback()
        return [EventRow(*r) for r in rows]

    def last_event(self, run_id: int) -> EventRow | None:
        stmt = (
            sa.select(*_EVENT_COLUMNS)
            .where(history.c.run_id == run_id)
            .order_by(history.c.id.desc())
            .limit(1)
        )
        with self.engine.connect().execution_options(acidic_read_only=True) as conn:
            row = conn.execute(stmt).first()
            conn.rollback()
        return None if row is None else EventRow(*row)

    # -- claims -----------------------------------------------------------------------

    def insert_claimed(self, values: dict[str, Any], *, patient: bool = True) -> RunRow | None:
        """Insert a new run already claimed by its creator; None if the key exists.

        Not ``patient``: on SQLite, give up after a few milliseconds if another
        connection holds the write lock (a retryable "database is locked" error).
        """
        stmt = self.dialect.insert_unless_exists(runs, values, "idempotency_key")
        with self.engine.connect() as conn:
            if not patient:
                conn.execution_options(acidic_busy_timeout=IMPATIENT_BUSY_TIMEOUT)
            with conn.begin():
                run_id = self.dialect.inserted(conn, stmt)
        if run_id is None:
            return None
        return _run_row([run_id, *(values[c.name] for c in _RUN_COLUMNS[1:])])

    def claim(
        self,
        run_id: int,
        *,
        token: str,
        now: dt.datetime,
        stale_before: dt.datetime,
        steps: str,
        claimable: Sequence[str],
    ) -> RunRow | None:
        """Take an existing run if it is claimable and unlocked (or its lock is stale).

        Returns the claimed row, or None when another owner holds a live lock (found
        without waiting) or the run changed state meanwhile.
        """
        free = sa.or_(runs.c.lock_token.is_(None), runs.c.locked_at <= stale_before)
        try:
            with self.transaction() as conn:
                locked = conn.execute(
                    self.dialect.lock_row_nowait(sa.select(runs.c.id).where(runs.c.id == run_id))
                ).first()
                if locked is None:
                    return None
                updated = conn.execute(
                    runs.update()
                    .where(runs.c.id == run_id, runs.c.status.in_(claimable), free)
                    .values(
                        lock_token=token,
                        locked_at=now,
                        last_run_at=now,
                        status="running",
                        attempts=runs.c.attempts + 1,
                        steps=steps,
                    )
                ).rowcount
                if updated != 1:
                    return None
                row = conn.execute(_BY_ID, {"id": run_id}).one()
        except sa.exc.OperationalError as exc:
            if self.dialect.is_lock_unavailable(exc):
                return None
            raise
        return _run_row(row)

    # -- progress ---------------------------------------------------------------------

    def write_progress(
        self,
        conn: Connection,
        run_id: int,
        token: str,
        values: dict[str, Any],
        events: Sequence[EventRow] = (),
    ) -> bool:
        """In ``conn``'s transaction, update the run if ``token`` still owns it, and
        append ``events`` to its history. False (nothing written) if the lock was lost."""
        updated = conn.execute(
            runs.update().where(runs.c.id == run_id, runs.c.lock_token == token).values(values)
        ).rowcount
        if updated != 1:
            return False
        if events:
            conn.execute(
                history.insert().values(
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
                    ]
                )
            )
        return True

    def dispose(self) -> None:
        self.engine.dispose()
