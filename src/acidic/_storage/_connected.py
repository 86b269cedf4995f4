"""The store's connections: engine, dialect, schema check, transactions, the
translation of driver errors, and the guard of steps whose transaction the database
ended. The store's other parts build on it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .._errors import SchemaVersionError, StorageError
from . import _migrations
from ._checks import check_row
from ._dialects import Dialect, Heard, dialect_for
from ._engines import make_async_engine, make_engine
from ._rendered import Rendered, mark_autocommit
from ._rows import EventRow, RunRow
from ._schema import history, runs
from ._statements import APPEND, BY_KEY, EVENT_COLUMNS, run_row
from ._step_connection import guard_engine, in_step

__all__ = ["IMPATIENT_BUSY_TIMEOUT", "Connected"]

_T = TypeVar("_T")

#: Seconds an impatient SQLite write waits for the write lock.
IMPATIENT_BUSY_TIMEOUT = 0.05


#: Key in a DBAPI connection's ``info`` of the error that ended a step's transaction.
_STEP_BROKEN = "acidic_step_broken"


def _in_greenlet() -> bool:
    from sqlalchemy.util.concurrency import in_greenlet  # noqa: PLC0415

    return in_greenlet()


class Connected:
    """acidic's tables on one database: connections and reads (see :class:`Store`)."""

    def __init__(
        self, database: str | sa.URL | Engine | Any, *, asynchronous: bool = False
    ) -> None:
        #: The asyncio engine whose ``sync_engine`` this store drives from a greenlet
        #: (``asynchronous``; see acidic._engine._aio), else None.
        self.async_engine: Any = make_async_engine(database) if asynchronous else None
        self.engine: Engine = (
            make_engine(database) if self.async_engine is None else self.async_engine.sync_engine
        )
        #: For an asyncio store: the sync store of the same database, which reads made
        #: outside the greenlet bridge go to (``self.signal()`` called in an async step).
        self.sync_twin: Connected | None = None
        #: Where transactional steps run and commit their progress: acidic's engine,
        #: unless an integration puts steps on its framework's own connection (the
        #: same database; acidic.django uses Django's, so ORM writes commit with them).
        # (Its connections refuse a COMMIT while a step runs: see _step_connection.)
        owned = database is not self.engine and database is not self.async_engine
        self.step_engine: Engine = guard_engine(self.engine, owned=owned)
        self.dialect: Dialect = dialect_for(self.engine)
        # A dialect event: only errors pay for it, not every statement.
        sa.event.listen(self.engine, "handle_error", self._note_step_error)
        self._schema_checked = False
        self._claimer = self.dialect.claimer(self)
        self._progress_statements: dict[tuple[tuple[str, ...], int], Rendered] = {}
        self._insert_statements: dict[tuple[tuple[str, ...], bool], Rendered] = {}
        self._update_statements: dict[tuple[str, ...], Rendered] = {}
        self._append_statement = Rendered.of(APPEND, self.engine.dialect)
        self._enqueue_statements: dict[tuple[str, ...], Rendered | None] = {}

    # -- steps whose transaction the database ended -------------------------------------

    def _note_step_error(self, context: sa.engine.ExceptionContext) -> None:
        # A step may catch a database error and go on. Where the database rolled the
        # whole transaction back but keeps accepting statements (a MariaDB deadlock, a
        # full SQLite disk), what follows would commit without what came before: note
        # it, refuse the step's further statements, and refuse to commit the step.
        conn = context.connection
        if in_step(conn) is None or conn is None or conn.invalidated:
            return
        dbapi_connection = conn.connection.dbapi_connection
        if self.dialect.ended_transaction(context.original_exception, dbapi_connection):
            conn.info[_STEP_BROKEN] = repr(context.original_exception)
            # A listener of this connection alone (the engine's other connections do
            # not pay for it), which the Connection object takes away when it closes.
            if not sa.event.contains(conn, "before_cursor_execute", self._refuse_in_broken_step):
                sa.event.listen(conn, "before_cursor_execute", self._refuse_in_broken_step)

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
        if broken is not None and in_step(conn) is not None:
            raise StorageError(
                f"{in_step(conn)}: the database rolled back this step's transaction after "
                f"{broken}; no statement can run in it any more (the step fails and runs "
                "again)"
            )

    def guard_steps(self, engine: Engine) -> Engine:
        """Guard the steps run on ``engine`` (an integration's, which acidic made) as
        those on acidic's own: refuse a COMMIT of theirs, and refuse to go on after an
        error that ended their transaction. Returns the engine to run steps on."""
        sa.event.listen(engine, "handle_error", self._note_step_error)
        return guard_engine(engine, owned=True)

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

    # -- what the engine may ask of the database ------------------------------------------

    @property
    def notifies(self) -> bool:
        """Whether workers hear of new runs (LISTEN/NOTIFY) instead of polling."""
        return self.dialect.notifies

    def finished_runs(self) -> contextlib.AbstractContextManager[Heard | None]:
        """Hear runs finish while in the block (``heard(timeout) -> ids``); None where
        the database cannot notify (the caller polls)."""
        return self.dialect.finished_runs(self.engine)

    @property
    def inserts_in_one_statement(self) -> bool:
        """Whether creating a run costs one statement in autocommit (no BEGIN/COMMIT), so
        that inserting first and reading only on a conflict is the cheaper order."""
        return self.dialect.autocommit_writes

    def is_contention(self, exc: BaseException) -> bool:
        """A deadlock, a serialization failure or a busy database: retry the transaction."""
        return isinstance(exc, sa.exc.DBAPIError) and self.dialect.is_retryable(exc)

    def describe(self, exc: sa.exc.DBAPIError) -> str:
        """A driver error in one line, for messages (a connection failure names the URL,
        its password hidden)."""
        return self.dialect.describe(exc, self.engine.url)

    def is_race(self, exc: BaseException) -> bool:
        """Contention, or a unique key taken by a concurrent writer: retry the claim."""
        return self.is_contention(exc) or self.dialect.is_unique_violation(exc)

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as exc:
            reason = self.describe(exc)
            raise StorageError(f"database error while {doing}: {reason}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"database error while {doing}: {exc}") from exc

    def translated(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return self._translated(doing)

    # -- reads ------------------------------------------------------------------------

    def find(self, key: str, *, checked: bool = True) -> RunRow | None:
        """The run row of ``key`` as last committed; takes no lock and never waits.

        ``checked``: raise :class:`acidic.CorruptRunError` if a stored field cannot be
        read (rows are checked here, once, so that nothing above meets a half-readable
        row); an operator who cancels or inspects such a run reads it unchecked."""
        row = self._read(lambda conn: conn.execute(BY_KEY, {"key": key}).first())
        if row is None:
            return None
        found = run_row(row)
        return check_row(found) if checked else found

    def _read(self, read: Callable[[Connection], _T]) -> _T:
        """``read(conn)``, one statement, on a :meth:`_reading` connection; once more on
        a fresh connection if that one was dead (the server restarted or ended the
        session while it sat in the pool). A read changes nothing: running it again is
        safe, where a write's outcome would be unknown."""
        if self.sync_twin is not None and not _in_greenlet():
            return self.sync_twin._read(read)
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
            with self.autocommitted() as conn:
                yield conn
            return
        with self.engine.connect().execution_options(acidic_one_read=True) as conn:
            yield conn
            conn.rollback()

    @contextlib.contextmanager
    def autocommitted(self) -> Iterator[Connection]:
        """A connection of acidic's engine on which each statement commits on its own,
        for acidic's one-statement writes and reads (where ``dialect.autocommit_writes``).

        Switched on the driver's connection where the dialect can (psycopg, sync or
        through SQLAlchemy's asyncio: about 60 µs of client CPU less per use than
        SQLAlchemy's isolation-level option and its reset on return to the pool; twice
        per ride job). The connection goes back to the pool out of autocommit, or is
        discarded: a step must never run on one.
        """
        with self.engine.connect() as conn:
            if not self.dialect.set_autocommit(conn, True):
                conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
                return
            mark_autocommit(conn, True)
            try:
                yield conn
            finally:
                mark_autocommit(conn, False)
                if not conn.invalidated:
                    try:
                        self.dialect.set_autocommit(conn, False)
                    except Exception:  # e.g. interrupted mid-statement: not reusable
                        conn.invalidate()

    def history(self, run_id: int) -> list[EventRow]:
        stmt = sa.select(*EVENT_COLUMNS).where(history.c.run_id == run_id).order_by(history.c.id)
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [EventRow(*r) for r in rows]

    def last_event(self, run_id: int) -> EventRow | None:
        stmt = (
            sa.select(*EVENT_COLUMNS)
            .where(history.c.run_id == run_id)
            .order_by(history.c.id.desc())
            .limit(1)
        )
        row: Any = self._read(lambda conn: conn.execute(stmt).first())
        return None if row is None else EventRow(*row)

    def _insert_statement(
        self, columns: tuple[str, ...], *, flushed_later: bool = False
    ) -> Rendered:
        """The INSERT of a new run with these columns (unless its key exists), built and
        rendered once (``flushed_later``: see ``Store.insert_claimed``)."""
        rendered = self._insert_statements.get((columns, flushed_later))
        if rendered is None:
            stmt = self.dialect.insert_unless_exists(runs, columns, "idempotency_key")
            later = self.dialect.flushed_later() if flushed_later else None
            if later is not None:
                stmt = stmt.returning(later)
            rendered = Rendered.of(stmt, self.engine.dialect)
            self._insert_statements[columns, flushed_later] = rendered
        return rendered

    def dispose(self) -> None:
        self.engine.dispose()
