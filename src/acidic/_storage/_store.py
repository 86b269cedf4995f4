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
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .._encoding import loads
from .._errors import JobDefinitionError, SchemaVersionError, StorageError
from . import _migrations
from ._dialects import SQLITE_BUSY_TIMEOUT, Dialect, dialect_for, make_engine
from ._rendered import Rendered
from ._schema import WAITING, history, runs, signals

__all__ = ["EventRow", "RunRow", "Store"]

_T = TypeVar("_T")

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
    queue: str | None = None
    priority: int = 0
    run_at: dt.datetime | None = None
    lock_expires_at: dt.datetime | None = None
    attempt_limit: int | None = None
    cancel_requested: bool = False


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
    runs.c.queue,
    runs.c.priority,
    runs.c.run_at,
    runs.c.lock_expires_at,
    runs.c.attempt_limit,
    runs.c.cancel_requested,
)
_EVENT_COLUMNS = (
    history.c.step,
    history.c.event,
    history.c.at,
    history.c.attempt,
    history.c.error,
)
_APPEND = history.insert().values(
    {
        name: sa.bindparam(name, type_=history.c[name].type)
        for name in ("run_id", "step", "event", "at", "attempt", "error")
    }
)
_BY_KEY = sa.select(*_RUN_COLUMNS).where(runs.c.idempotency_key == sa.bindparam("key"))
_BY_ID = sa.select(*_RUN_COLUMNS).where(runs.c.id == sa.bindparam("id"))


def _fenced_update(columns: tuple[str, ...]) -> sa.Update:
    """UPDATE of a run's ``columns`` (parameters ``v_<column>``) only while the owner's
    token (``p_token``) holds its lock and no cancellation was requested (fencing)."""
    return (
        runs.update()
        .where(
            runs.c.id == sa.bindparam("p_run_id", type_=runs.c.id.type),
            runs.c.lock_token == sa.bindparam("p_token", type_=runs.c.lock_token.type),
            runs.c.cancel_requested == sa.false(),
        )
        .values({c: sa.bindparam(f"v_{c}", type_=runs.c[c].type) for c in columns})
    )


def _refuse_commit_in_step(conn: Connection) -> None:
    # Raised before COMMIT is sent: a step that commits its own transaction would
    # commit its writes without the move of the recovery point.
    step = conn.get_execution_options().get("acidic_in_step")
    if step:
        raise JobDefinitionError(
            f"{step} tried to commit its transaction: a transactional step must leave "
            "commit and rollback to acidic, which commits its writes with its progress"
        )


#: Key in a DBAPI connection's ``info`` of the error that ended a step's transaction.
_STEP_BROKEN = "acidic_step_broken"


def _step_of(conn: Connection | None) -> str | None:
    return None if conn is None else conn.get_execution_options().get("acidic_in_step")


def _run_row(row: Any) -> RunRow:
    return RunRow(*row)  # the columns of _RUN_COLUMNS, in RunRow's field order


class Store:
    """acidic's tables on one database (PostgreSQL, SQLite or MySQL/MariaDB)."""

    def __init__(self, database: str | sa.URL | Engine) -> None:
        self.engine = make_engine(database)
        self.dialect: Dialect = dialect_for(self.engine)
        if not sa.event.contains(self.engine, "commit", _refuse_commit_in_step):
            sa.event.listen(self.engine, "commit", _refuse_commit_in_step)
        sa.event.listen(self.engine, "handle_error", self._note_step_error)
        sa.event.listen(self.engine, "before_cursor_execute", self._refuse_in_broken_step)
        self._schema_checked = False
        self._progress_statements: dict[tuple[tuple[str, ...], int], Rendered] = {}
        self._insert_statements: dict[tuple[str, ...], Rendered] = {}
        self._update_statements: dict[tuple[str, ...], Rendered] = {}
        self._append_statement = Rendered.of(_APPEND, self.engine.dialect)
        self._claim_statements: dict[tuple[tuple[str, ...], int], Rendered] = {}
        self._enqueue_statements: dict[tuple[str, ...], Rendered | None] = {}
        self._claim_by_step: (
            tuple[sa.Select[Any], sa.Select[Any], sa.Update, sa.Select[Any]] | None
        ) = None

    # -- steps whose transaction the database ended -------------------------------------

    def _note_step_error(self, context: sa.engine.ExceptionContext) -> None:
        # A step may catch a database error and go on. Where the database rolled the
        # whole transaction back but keeps accepting statements (a MariaDB deadlock, a
        # full SQLite disk), what follows would commit without what came before: note
        # it, refuse the step's further statements, and refuse to commit the step.
        conn = context.connection
        if _step_of(conn) is None or conn is None or conn.invalidated:
            return
        dbapi_connection = conn.connection.dbapi_connection
        if self.dialect.ended_transaction(context.original_exception, dbapi_connection):
            conn.info[_STEP_BROKEN] = repr(context.original_exception)

    def _refuse_in_broken_step(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        broken = conn.info.get(_STEP_BROKEN)
        if broken is not None and _step_of(conn) is not None:
            raise StorageError(
                f"{_step_of(conn)}: the database rolled back this step's transaction after "
                f"{broken}; no statement can run in it any more (the step fails and runs "
                "again)"
            )

    def step_broken(self, conn: Connection) -> str | None:
        """The error that ended the transaction of the step running on ``conn`` (which
        the step caught), if any; forgets it."""
        return conn.info.pop(_STEP_BROKEN, None) if not conn.invalidated else None

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
    def transaction(self, *, patient: bool = True) -> Iterator[Connection]:
        """A write transaction (IMMEDIATE on SQLite); commits on success. Not
        ``patient``: on SQLite, give up after a few milliseconds if another connection
        holds the write lock (a retryable "database is locked" error)."""
        with self.engine.connect() as conn:
            if not patient:
                conn.execution_options(acidic_busy_timeout=IMPATIENT_BUSY_TIMEOUT)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as exc:
            reason = self.dialect.describe(exc, self.engine.url)
            raise StorageError(f"database error while {doing}: {reason}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"database error while {doing}: {exc}") from exc

    def translated(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return self._translated(doing)

    # -- reads ------------------------------------------------------------------------

    def find(self, key: str) -> RunRow | None:
        """The run row of ``key`` as last committed; takes no lock and never waits."""
        row = self._read(lambda conn: conn.execute(_BY_KEY, {"key": key}).first())
        return None if row is None else _run_row(row)

    def _read(self, read: Callable[[Connection], _T]) -> _T:
        """``read(conn)``, one statement, on a :meth:`_reading` connection; once more on
        a fresh connection if that one was dead (the server restarted or ended the
        session while it sat in the pool). A read changes nothing: running it again is
        safe, where a write's outcome would be unknown."""
        try:
            with self._reading() as conn:
                return read(conn)
        except sa.exc.DBAPIError as exc:
            # The pool discards every connection older than this failure.
            if not exc.connection_invalidated:
                raise
        with self._reading() as conn:
            return read(conn)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for a read of one statement: in autocommit where that saves the
        BEGIN and ROLLBACK round trips (PostgreSQL), without BEGIN on SQLite (a
        statement is its own transaction there), else in a read transaction."""
        if self.dialect.autocommit_writes:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                yield conn
            return
        with self.engine.connect().execution_options(acidic_one_read=True) as conn:
            yield conn
            conn.rollback()

    def history(self, run_id: int) -> list[EventRow]:
        stmt = sa.select(*_EVENT_COLUMNS).where(history.c.run_id == run_id).order_by(history.c.id)
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [EventRow(*r) for r in rows]

    def last_event(self, run_id: int) -> EventRow | None:
        stmt = (
            sa.select(*_EVENT_COLUMNS)
            .where(history.c.run_id == run_id)
            .order_by(history.c.id.desc())
            .limit(1)
        )
        row = self._read(lambda conn: conn.execute(stmt).first())
        return None if row is None else EventRow(*row)

    # -- claims -----------------------------------------------------------------------

    def insert_claimed(self, values: dict[str, Any], *, patient: bool = True) -> RunRow | None:
        """Insert a new run already claimed by its creator; None if the key exists.

        Not ``patient``: on SQLite, give up after a few milliseconds if another
        connection holds the write lock (a retryable "database is locked" error).
        """
        insert = self._insert_statement(tuple(values))
        with self.engine.connect() as conn:
            if self.dialect.autocommit_writes:
                # One statement: atomic on its own, without BEGIN and COMMIT round trips.
                conn.execution_options(isolation_level="AUTOCOMMIT")
                run_id = self.dialect.inserted(conn, insert, values)
            else:
                if not patient:
                    conn.execution_options(acidic_busy_timeout=IMPATIENT_BUSY_TIMEOUT)
                with conn.begin():
                    run_id = self.dialect.inserted(conn, insert, values)
        if run_id is None:
            return None
        return _run_row([run_id, *(values[c.name] for c in _RUN_COLUMNS[1:])])

    def claim(
        self,
        run_id: int,
        *,
        token: str,
        clock: Callable[[], dt.datetime],
        lock_timeout: float,
        steps: str,
        claimable: Sequence[str],
        patient: bool = True,
    ) -> RunRow | None:
        """Take an existing run if it is claimable and unlocked (or its lock is stale).

        Returns the claimed row, or None when another owner holds a live lock (found
        without waiting) or the run changed state meanwhile. ``patient``: as for
        :meth:`transaction`.
        """
        try:
            with self.transaction(patient=patient) as conn:
                # Read the clock once the write lock is ours (SQLite may have waited).
                now = clock()
                expires = now + dt.timedelta(seconds=lock_timeout)
                free = sa.or_(runs.c.lock_token.is_(None), runs.c.lock_expires_at <= now)
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
                        lock_expires_at=expires,
                        run_at=None,
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

    def claim_seen(
        self,
        seen: RunRow,
        *,
        token: str,
        clock: Callable[[], dt.datetime],
        lock_timeout: float,
        steps: str,
        claimable: Sequence[str],
    ) -> RunRow | None:
        """:meth:`claim` of the run ``seen``, as the caller last read it.

        Where writers queue for one write lock (SQLite), a claim does not wait behind
        it while another caller may be taking the run (and then holding the lock for
        its whole first step): it tries with an impatient busy timeout, reads the row
        between tries (reads never wait), and returns None as soon as the row changed,
        so that the caller reports the new owner (or the result) at once.
        """
        if not self.dialect.single_writer:
            return self.claim(
                seen.id,
                token=token,
                clock=clock,
                lock_timeout=lock_timeout,
                steps=steps,
                claimable=claimable,
            )
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT  # as long as a patient claim
        while True:
            try:
                return self.claim(
                    seen.id,
                    token=token,
                    clock=clock,
                    lock_timeout=lock_timeout,
                    steps=steps,
                    claimable=claimable,
                    patient=False,
                )
            except sa.exc.OperationalError as exc:
                if not self.dialect.is_retryable(exc) or time.monotonic() > deadline:
                    raise
            if self.find(seen.key) != seen:
                return None

    # -- progress ---------------------------------------------------------------------

    def write_progress(
        self,
        conn: Connection,
        run_id: int,
        token: str,
        values: dict[str, Any],
        events: Sequence[EventRow] = (),
    ) -> bool:
        """In ``conn``'s transaction, update the run if ``token`` still owns it and no
        cancellation was requested, and append ``events`` to its history. False (nothing
        written) otherwise: :meth:`refusal` says which."""
        params: dict[str, Any] = {"p_run_id": run_id, "p_token": token}
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

    def latest_signal(self, run_id: int, name: str) -> Any:
        """The decoded payload of the latest signal ``name`` of the run, or None."""
        stmt = (
            sa.select(signals.c.payload)
            .where(signals.c.run_id == run_id, signals.c.name == name)
            .order_by(signals.c.id.desc())
            .limit(1)
        )
        with self._translated("reading a signal"):
            payload = self._read(lambda conn: conn.execute(stmt).scalar())
        return None if payload is None else loads(payload)

    def signalled_since(self, run_id: int, since: dt.datetime) -> bool:
        """Whether a signal was delivered to the run at or after ``since``."""
        stmt = (
            sa.select(signals.c.id)
            .where(signals.c.run_id == run_id, signals.c.created_at >= since)
            .limit(1)
        )
        found = self._read(lambda conn: conn.execute(stmt).first())
        return found is not None

    def cancel_requested(self, run_id: int, token: str) -> bool:
        """After a refused progress write: True if ``token`` still owns the run and the
        refusal was a cancellation request, False if the lock was lost."""
        stmt = sa.select(runs.c.lock_token, runs.c.cancel_requested).where(runs.c.id == run_id)
        row = self._read(lambda conn: conn.execute(stmt).first())
        return row is not None and row[0] == token and bool(row[1])

    def update_run(
        self,
        run_id: int,
        values: dict[str, Any],
        *,
        token: str | None = None,
        statuses: Sequence[str] | None = None,
        events: Sequence[EventRow] = (),
    ) -> bool:
        """Update a run in a transaction of its own, if it is still owned by ``token``
        (when given) and in one of ``statuses`` (when given); append ``events``."""
        conditions = [runs.c.id == run_id]
        if token is not None:
            conditions.append(runs.c.lock_token == token)
        if statuses is not None:
            conditions.append(runs.c.status.in_(statuses))
        with self.transaction() as conn:
            if conn.execute(runs.update().where(*conditions).values(values)).rowcount != 1:
                return False
            self._append(conn, run_id, events)
        return True

    def _enqueue_statement(self, columns: tuple[str, ...]) -> Rendered | None:
        """The INSERT of a new run and its notification as one statement, built once per
        set of columns; None where the dialect cannot."""
        if columns not in self._enqueue_statements:
            insert = self.dialect.insert_unless_exists(runs, columns, "idempotency_key")
            both = self.dialect.inserted_and_notified(insert)
            self._enqueue_statements[columns] = (
                None if both is None else Rendered.of(both, self.engine.dialect)
            )
        return self._enqueue_statements[columns]

    def _update_statement(self, columns: tuple[str, ...]) -> Rendered:
        """The fenced UPDATE of a run's ``columns`` (progress without its events), built
        and rendered once per set of columns."""
        rendered = self._update_statements.get(columns)
        if rendered is None:
            stmt = _fenced_update(columns)
            rendered = self._update_statements[columns] = Rendered.of(stmt, self.engine.dialect)
        return rendered

    def _insert_statement(self, columns: tuple[str, ...]) -> Rendered:
        """The INSERT of a new run with these columns (unless its key exists), built and
        rendered once."""
        rendered = self._insert_statements.get(columns)
        if rendered is None:
            stmt = self.dialect.insert_unless_exists(runs, columns, "idempotency_key")
            rendered = self._insert_statements[columns] = Rendered.of(stmt, self.engine.dialect)
        return rendered

    def write_progress_alone(
        self,
        run_id: int,
        token: str,
        values: dict[str, Any],
        events: Sequence[EventRow],
    ) -> bool:
        """:meth:`write_progress` in a transaction of its own, committed (one statement
        in autocommit where the dialect writes progress and events in one)."""
        if events and self.dialect.dml_in_cte and self.dialect.autocommit_writes:
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                return self.write_progress(conn, run_id, token, values, events)
        with self.transaction() as conn:
            return self.write_progress(conn, run_id, token, values, events)

    def _progress_statement(self, columns: tuple[str, ...], n_events: int) -> Rendered:
        """UPDATE (fenced) and INSERT of ``n_events`` history rows as one statement,
        built and rendered once per shape."""
        key = (columns, n_events)
        stmt = self._progress_statements.get(key)
        if stmt is not None:
            return stmt
        updated = _fenced_update(columns).returning(runs.c.id).cte("acidic_progress")
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

    # -- the queue --------------------------------------------------------------------

    def enqueue(self, values: dict[str, Any], conn: Connection | None = None) -> RunRow | None:
        """Insert a pending run (in ``conn``'s transaction when given) and wake workers;
        None if the key exists (nothing written)."""
        new_run = self._insert_statement(tuple(values))
        both = self._enqueue_statement(tuple(values))

        def write(c: Connection) -> int | None:
            if both is not None:
                row = both.execute(c, values).first()
                return None if row is None else int(row[0])
            run_id = self.dialect.inserted(c, new_run, values)
            if run_id is not None:
                self.dialect.notify(c, values["queue"])
            return run_id

        if conn is not None:
            # The caller's transaction: a MySQL duplicate-key error aborts only the
            # statement, a PostgreSQL/SQLite ON CONFLICT never errors.
            run_id = write(conn)
        elif both is not None and self.dialect.autocommit_writes:
            # One statement (PostgreSQL): atomic on its own, no BEGIN and COMMIT.
            with self.engine.connect() as own:
                own.execution_options(isolation_level="AUTOCOMMIT")
                run_id = write(own)
        else:
            with self.transaction() as own:
                run_id = write(own)
        if run_id is None:
            return None
        return _run_row([run_id, *(values[c.name] for c in _RUN_COLUMNS[1:])])

    def find_in(self, conn: Connection, key: str) -> RunRow | None:
        row = conn.execute(_BY_KEY, {"key": key}).first()
        return None if row is None else _run_row(row)

    def claim_due(
        self,
        queue: str,
        jobs: Sequence[str],
        limit: int,
        *,
        clock: Callable[[], dt.datetime],
        lock_timeout: Callable[[str], float],
    ) -> list[RunRow]:
        """Claim up to ``limit`` runs of ``queue`` that a worker should execute now: runs
        whose owner's lock expired first (a crashed owner's runs must not wait behind a
        busy queue), then due pending/scheduled runs (highest priority first, then
        earliest ``run_at``, then enqueue order). Rows locked by another claimer are
        skipped, never waited for. Each claimed run gets a token of its own."""

        if self.dialect.dml_in_cte and self.dialect.autocommit_writes:
            return self._claim_due_in_one_statement(queue, jobs, limit, clock, lock_timeout)

        stale, due, take, fetch = self._claim_statements_by_step()
        params: dict[str, Any] = {"c_queue": queue, "c_jobs": list(jobs)}
        if self.dialect.single_writer:
            # Look before taking SQLite's only write lock: idle polls must not queue
            # behind (and delay) running steps.
            look = {**params, "c_now": clock(), "c_limit": 1}
            with self.engine.connect().execution_options(acidic_read_only=True) as conn:
                anything = conn.execute(stale, look).first() or conn.execute(due, look).first()
                conn.rollback()
            if anything is None:
                return []
        claimed: list[int] = []
        with self.transaction() as conn:
            # The clock is read once the transaction holds its locks (SQLite may have
            # waited for the write lock): a lock must not start life already expired.
            now = clock()
            # Without partial indexes the due runs are read one waiting status at a time.
            per_status = not self.dialect.partial_indexes
            for query, by_status in ((stale, False), (due, per_status)):
                if len(claimed) >= limit:
                    break
                picked = self._pick(
                    conn,
                    query,
                    {**params, "c_now": now, "c_limit": limit - len(claimed)},
                    by_status=by_status,
                )
                for run_id, job in picked:
                    conn.execute(
                        take,
                        {
                            "c_id": run_id,
                            "c_token": uuid.uuid4().hex,
                            "c_now": now,
                            "c_expires": now + dt.timedelta(seconds=lock_timeout(job)),
                        },
                    )
                    claimed.append(run_id)
            if not claimed:
                return []
            rows = conn.execute(fetch, {"c_ids": claimed}).all()
        order = {run_id: i for i, run_id in enumerate(claimed)}
        return sorted((_run_row(r) for r in rows), key=lambda r: order[r.id])

    @staticmethod
    def _pick(
        conn: Connection, query: sa.Select[Any], params: dict[str, Any], *, by_status: bool
    ) -> list[tuple[int, str]]:
        """(id, job) of the runs ``query`` picks. ``by_status`` (the due runs, where
        there are no partial indexes: MariaDB, MySQL): read per waiting status, each
        walked in the order of acidic_runs_claim_idx (queue, status, priority DESC,
        run_at, id) and stopped at the limit, then merged; one query over both statuses
        would sort every due run."""
        if not by_status:
            return [(row[0], row[1]) for row in conn.execute(query, params)]
        rows = [
            row
            for status in ("pending", "scheduled")
            for row in conn.execute(query, {**params, "c_status": status})
        ]
        rows.sort(key=lambda r: (-r.priority, r.run_at, r.id))
        return [(row[0], row[1]) for row in rows[: params["c_limit"]]]

    def _claim_statements_by_step(
        self,
    ) -> tuple[sa.Select[Any], sa.Select[Any], sa.Update, sa.Select[Any]]:
        """The statements of :meth:`claim_due` where it takes several (SQLite, MariaDB):
        stale runs, due runs, the update of one picked run, the claimed rows. Built once,
        with bound parameters, so that a claim does not pay for building them."""
        if self._claim_by_step is None:
            now = sa.bindparam("c_now", type_=runs.c.lock_expires_at.type)
            base = sa.select(runs.c.id, runs.c.job).where(
                runs.c.queue == sa.bindparam("c_queue", type_=runs.c.queue.type),
                runs.c.job.in_(sa.bindparam("c_jobs", expanding=True)),
            )
            limit = sa.bindparam("c_limit", type_=sa.Integer)
            stale = (
                base.where(
                    runs.c.status == sa.literal_column("'running'"), runs.c.lock_expires_at <= now
                )
                .order_by(runs.c.lock_expires_at)
                .limit(limit)
            )
            if self.dialect.partial_indexes:
                # Literal statuses: SQLite uses its partial claim index only then.
                due = base.where(runs.c.status.in_(WAITING))
            else:
                # One waiting status at a time (see _pick).
                due = base.add_columns(runs.c.status, runs.c.priority, runs.c.run_at).where(
                    runs.c.status == sa.bindparam("c_status", type_=runs.c.status.type)
                )
            due = (
                due.where(runs.c.run_at <= now)
                .order_by(runs.c.priority.desc(), runs.c.run_at, runs.c.id)
                .limit(limit)
            )
            take = (
                runs.update()
                .where(runs.c.id == sa.bindparam("c_id", type_=runs.c.id.type))
                .values(
                    status="running",
                    lock_token=sa.bindparam("c_token", type_=runs.c.lock_token.type),
                    locked_at=now,
                    lock_expires_at=sa.bindparam("c_expires", type_=runs.c.lock_expires_at.type),
                    last_run_at=now,
                    run_at=None,
                    attempts=runs.c.attempts + 1,
                )
            )
            fetch: sa.Select[Any] = (
                sa.select(*_RUN_COLUMNS)
                .where(runs.c.id.in_(sa.bindparam("c_ids", expanding=True)))
                .order_by(runs.c.id)
            )
            self._claim_by_step = (
                self.dialect.lock_rows_skip_locked(stale),
                self.dialect.lock_rows_skip_locked(due),
                take,
                fetch,
            )
        return self._claim_by_step

    def _claim_due_in_one_statement(
        self,
        queue: str,
        jobs: Sequence[str],
        limit: int,
        clock: Callable[[], dt.datetime],
        lock_timeout: Callable[[str], float],
    ) -> list[RunRow]:
        """:meth:`claim_due` as one statement in autocommit (PostgreSQL): the rows picked
        with SKIP LOCKED in a CTE, updated and returned; one round trip instead of a
        transaction of several."""
        stmt = self._claim_statement(tuple(jobs), limit)
        now = clock()
        params: dict[str, Any] = {"c_queue": queue, "c_now": now}
        for i, job in enumerate(jobs):
            params[f"c_job{i}"] = job
            params[f"c_expires{i}"] = now + dt.timedelta(seconds=lock_timeout(job))
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = stmt.rows(conn, params)
        ordered = sorted(rows, key=lambda r: (-r[-1], r[0]))
        return [_run_row(r[:-1]) for r in ordered]

    def _claim_statement(self, jobs: tuple[str, ...], limit: int) -> Rendered:
        """The statement of :meth:`_claim_due_in_one_statement`, built once per set of
        jobs and limit: building it costs more than executing it (a worker claims
        once per run)."""
        key = (jobs, limit)
        cached = self._claim_statements.get(key)
        if cached is not None:
            return cached
        now = sa.bindparam("c_now", type_=runs.c.lock_expires_at.type)
        job_params = [sa.bindparam(f"c_job{i}", type_=runs.c.job.type) for i in range(len(jobs))]
        mine = (
            runs.c.queue == sa.bindparam("c_queue", type_=runs.c.queue.type),
            sa.or_(*(runs.c.job == job for job in job_params)),
        )
        # Two candidate lists, each walked in its index's order and stopped at the
        # limit: runs whose owner's lock expired (a crashed owner's runs must not wait
        # behind a busy queue), then waiting runs by priority, due time and enqueue
        # order (acidic_runs_claim_idx; the statuses are literals, or the partial index
        # would not be used). One ORDER BY over both would sort every due run.
        stale = (
            sa.select(runs.c.id, sa.literal(0).label("rank"))
            .where(*mine, runs.c.status == sa.literal_column("'running'"))
            .where(runs.c.lock_expires_at <= now)
            .order_by(runs.c.lock_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("acidic_stale")
        )
        due = (
            sa.select(runs.c.id, sa.literal(1).label("rank"))
            .where(*mine, runs.c.status.in_(WAITING), runs.c.run_at <= now)
            .order_by(runs.c.priority.desc(), runs.c.run_at, runs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("acidic_due")
        )
        candidates = sa.union_all(
            sa.select(stale.c.id, stale.c.rank), sa.select(due.c.id, due.c.rank)
        ).subquery("acidic_candidates")
        picked = (
            sa.select(candidates.c.id).order_by(candidates.c.rank).limit(limit).cte("acidic_picked")
        )
        expires = sa.case(
            *(
                (
                    runs.c.job == job,
                    sa.bindparam(f"c_expires{i}", type_=runs.c.lock_expires_at.type),
                )
                for i, job in enumerate(job_params)
            ),
        )
        stmt = (
            runs.update()
            .where(runs.c.id == picked.c.id)
            .values(
                status="running",
                # A token of its own per run, made by the database in the same statement.
                lock_token=sa.func.replace(sa.cast(sa.func.gen_random_uuid(), sa.String), "-", ""),
                locked_at=now,
                lock_expires_at=expires,
                last_run_at=now,
                run_at=None,
                attempts=runs.c.attempts + 1,
            )
            .returning(*_RUN_COLUMNS, runs.c.priority)
        )
        if len(self._claim_statements) > 64:  # jobs registered on the fly: stay bounded
            self._claim_statements.clear()
        rendered = self._claim_statements[key] = Rendered.of(stmt, self.engine.dialect)
        return rendered

    def next_due(self, queues: Sequence[str], jobs: Sequence[str]) -> dt.datetime | None:
        """When the earliest waiting run of ``queues`` falls due (or a lock expires)."""
        scope = (runs.c.queue.in_(queues), runs.c.job.in_(jobs))
        waiting = sa.select(sa.func.min(runs.c.run_at)).where(
            *scope, runs.c.status.in_(("pending", "scheduled"))
        )
        expiring = sa.select(sa.func.min(runs.c.lock_expires_at)).where(
            *scope, runs.c.status == "running"
        )
        with self.engine.connect().execution_options(acidic_read_only=True) as conn:
            times = [conn.execute(waiting).scalar(), conn.execute(expiring).scalar()]
            conn.rollback()
        found = [t for t in times if t is not None]
        if not found:
            return None
        earliest: dt.datetime = min(found)
        return earliest if earliest.tzinfo else earliest.replace(tzinfo=dt.UTC)

    def renew_locks(
        self, held: Sequence[tuple[int, str, float]], clock: Callable[[], dt.datetime]
    ) -> set[int]:
        """Heartbeat: push back the lock expiry (by each run's lock timeout, in seconds)
        of runs still owned by their token; return the ids whose lock was lost."""
        lost: set[int] = set()
        with self.transaction() as conn:
            now = clock()  # once the transaction holds its locks (SQLite may have waited)
            for run_id, token, timeout in held:
                updated = conn.execute(
                    runs.update()
                    .where(runs.c.id == run_id, runs.c.lock_token == token)
                    .values(locked_at=now, lock_expires_at=now + dt.timedelta(seconds=timeout))
                ).rowcount
                if updated != 1:
                    lost.add(run_id)
        return lost

    def add_signal(self, run_id: int, name: str, payload: str, now: dt.datetime) -> None:
        with self.transaction() as conn:
            conn.execute(
                signals.insert().values(run_id=run_id, name=name, payload=payload, created_at=now)
            )

    def wake(
        self, run_id: int, statuses: Sequence[str], values: dict[str, Any], queue: str | None
    ) -> bool:
        """Make a parked run due now (or change it as ``values`` say) if it is in one of
        ``statuses``; wake workers of its queue."""
        with self.transaction() as conn:
            updated = conn.execute(
                runs.update().where(runs.c.id == run_id, runs.c.status.in_(statuses)).values(values)
            ).rowcount
            if updated == 1 and queue is not None:
                self.dialect.notify(conn, queue)
        return updated == 1

    def prune(self, finished_before: dt.datetime, batch: int = 1000) -> int:
        """Delete succeeded and cancelled runs finished before the given time, with their
        history and signals, ``batch`` runs per transaction; return how many."""
        total = 0
        while True:
            with self.transaction() as conn:
                ids = [
                    r[0]
                    for r in conn.execute(
                        sa.select(runs.c.id)
                        .where(
                            runs.c.status.in_(("succeeded", "cancelled")),
                            runs.c.finished_at < finished_before,
                        )
                        .limit(batch)
                    )
                ]
                if not ids:
                    return total
                conn.execute(history.delete().where(history.c.run_id.in_(ids)))
                conn.execute(signals.delete().where(signals.c.run_id.in_(ids)))
                conn.execute(runs.delete().where(runs.c.id.in_(ids)))
            total += len(ids)

    def dispose(self) -> None:
        self.engine.dispose()
