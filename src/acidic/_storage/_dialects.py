"""Everything that differs between PostgreSQL, SQLite and MySQL/MariaDB, in one place.

The store writes its SQL once against :mod:`._schema`; a :class:`Dialect` supplies
the few things that cannot be said portably: how to open an engine, how to insert a
row unless its key exists, how to take a row lock without waiting, how workers claim
due runs and hear of new ones (LISTEN/NOTIFY), how to serialise migrations, and which
driver errors mean "locked" or "try again".
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Engine

from .._errors import AcidicError, SchemaVersionError
from . import _pg_notify
from ._claims import Claimer, OneStatementClaimer, StepwiseClaimer
from ._engines import shown_url
from ._pg_notify import Heard
from ._rendered import Rendered

if TYPE_CHECKING:
    from ._connected import Connected

__all__ = ["Dialect", "Heard", "dialect_for"]

#: Locks are keyed by this name (MySQL GET_LOCK) or number (PostgreSQL advisory lock).
MIGRATION_LOCK_NAME = "acidic.migrate"
MIGRATION_LOCK_ID = 0x616369646963  # "acidic"


class Dialect:
    """Dialect hooks; subclasses override what their database does differently."""

    name = "generic"
    #: Directory of ``migrations/`` holding this dialect's SQL files.
    migrations = "generic"
    #: One writer at a time (SQLite): avoid write transactions that may write nothing.
    single_writer = False
    #: Whether the database has partial indexes (CREATE INDEX … WHERE), which the claim
    #: index uses (migration 0003).
    partial_indexes = True
    #: UPDATE ... RETURNING may stand in a WITH clause (PostgreSQL): progress and its
    #: history events are then written by one statement.
    dml_in_cte = False
    #: A one-statement read or write in autocommit costs no BEGIN and COMMIT (or
    #: ROLLBACK) round trips, and switching to it no round trip either (psycopg does it
    #: locally; PyMySQL would send SET autocommit both ways, SQLite needs BEGIN IMMEDIATE).
    autocommit_writes = False
    #: Whether :meth:`notifications` tells workers of new runs (else they poll).
    notifies = False

    def insert_unless_exists(
        self, table: sa.Table, columns: Sequence[str], key_column: str
    ) -> sa.Insert:
        """An INSERT of ``columns`` (bound parameters of the same names) that does
        nothing when a row with the same key exists; built once, executed many times."""
        raise NotImplementedError

    def insert_ignore(self, table: sa.Table, values: dict[str, Any]) -> sa.Insert:
        """An INSERT of ``values`` that does nothing when the primary key exists."""
        raise NotImplementedError

    def flushed_later(self) -> sa.ColumnElement[Any] | None:
        """A column to add to the ``RETURNING`` of one statement in autocommit so that
        its commit does not wait for the database to flush it to disk, where the
        database can be told so for one transaction; None elsewhere. Only for a write
        that nothing relies on until a later, flushed write of the same run (see
        ``Store.insert_claimed``)."""
        return None

    def set_autocommit(self, conn: Connection, on: bool) -> bool:
        """Switch ``conn``'s driver connection in or out of autocommit directly (cheaper
        than SQLAlchemy's isolation-level option and its reset on return to the pool);
        False where this dialect leaves it to SQLAlchemy."""
        return False

    def inserted(self, conn: Connection, insert: Rendered, values: dict[str, Any]) -> int | None:
        """Run :meth:`insert_unless_exists` (rendered); the new row's id, or None if the
        key existed."""
        rows = insert.rows(conn, values)
        return int(rows[0][0]) if rows else None

    def lock_row_nowait(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        """Make ``stmt`` lock the rows it reads, failing at once if one is locked."""
        return stmt.with_for_update(nowait=True)

    def lock_rows_skip_locked(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        """Make ``stmt`` lock the rows it reads, skipping rows others have locked."""
        return stmt.with_for_update(skip_locked=True)

    def notify(self, conn: Connection, queue: str) -> None:
        """Wake workers listening for ``queue`` when ``conn``'s transaction commits."""

    def notifications(
        self, engine: Engine, queues: Sequence[str], stopped: Callable[[], bool]
    ) -> Iterator[str] | None:
        """The queue names :meth:`notify` sends, as they arrive, while not ``stopped()``
        (one first, at once: runs enqueued while nobody listened); None where the
        database cannot notify, and workers poll. The iterator raises when the
        connection is lost; the caller reconnects."""
        return None

    def finished_runs(self, engine: Engine) -> contextlib.AbstractContextManager[Heard | None]:
        """Listen for runs finishing (PostgreSQL: ``_pg_notify.FINISHED_CHANNEL``) while
        in the block; None where the database cannot notify, and waiters poll."""
        return contextlib.nullcontext(None)

    def claimer(self, store: Connected) -> Claimer:
        """How workers claim due runs on this database."""
        return StepwiseClaimer(store)

    def inserted_and_notified(self, insert: sa.Insert) -> sa.Select[Any] | None:
        """``insert`` (an :meth:`insert_unless_exists` whose values include ``queue``)
        and the notification of :meth:`notify` as one statement that returns the new
        row's id, notifying only if a row was inserted; None where the dialect cannot."""
        return None

    def is_lock_unavailable(self, exc: BaseException) -> bool:
        """The error of a NOWAIT lock that found the row locked."""
        return False

    def is_retryable(self, exc: BaseException) -> bool:
        """A serialization failure, deadlock or busy database: the transaction may be retried."""
        return False

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sa.exc.IntegrityError)

    @contextlib.contextmanager
    def migration_lock(self, conn: Connection) -> Iterator[None]:
        """Hold a lock that serialises concurrent ``migrate()`` calls."""
        yield

    def prepare_ddl(self, conn: Connection, sql: str) -> str:
        return sql

    def database_missing(self, engine: Engine) -> bool:
        """True when connecting would create the database (a SQLite file) as a side effect."""
        return False

    def ended_transaction(self, exc: BaseException, dbapi_connection: Any) -> bool:
        """Whether the error ``exc`` made the database roll back the whole transaction
        while the connection goes on accepting statements (in a new transaction, or
        outside any). PostgreSQL refuses every statement of an aborted transaction
        itself, so only databases that carry on need to say so."""
        return False

    def prepare_report(self, conn: Connection) -> None:
        """Set up a transaction of the operators' read-only queries (counts, stats)."""

    def contains(self, column: sa.ColumnElement[str], text: str) -> sa.ColumnElement[bool]:
        """``column`` contains ``text``, compared exactly (case included): not LIKE,
        which ignores ASCII case on SQLite and gives ``%`` and ``_`` a meaning."""
        return sa.func.instr(column, text) > 0

    def cannot_connect(self, exc: sa.exc.DBAPIError) -> str | None:
        """Why connecting failed, in a few words (``connection refused (is the server
        running?)``), when ``exc`` is the failure to open a connection; else None."""
        return None

    def describe(self, exc: sa.exc.DBAPIError, url: URL) -> str:
        """A driver's error as acidic reports it: a failure to connect names the URL
        (password hidden) and the reason on one line; other errors as the driver's."""
        # No statement: the error came from opening the connection (or from a commit,
        # which the dialects tell apart by the error itself).
        reason = self.cannot_connect(exc) if exc.statement is None else None
        if reason is None:
            return repr(exc.orig)
        return f"cannot connect to {shown_url(url)}: {reason}"


def _binds(table: sa.Table, columns: Sequence[str]) -> dict[str, sa.BindParameter[Any]]:
    return {c: sa.bindparam(c, type_=table.c[c].type) for c in columns}


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None)


def _mysql_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _readable(reason: str) -> str:
    """A driver's reason for a failed connection, as one line of acidic's message."""
    reason = " ".join(reason.replace("FATAL:", "").split())
    if "connection refused" in reason.lower():
        return "connection refused (is the server running?)"
    return reason[:1].lower() + reason[1:]


#: How libpq (through psycopg) begins the message of a connection it could not open.
_PG_CONNECT_FAILED = (
    "connection failed:",
    "connection to server",
    "could not connect to server",
    "failed to resolve host",
    "could not translate host name",
)
#: libpq's prefix per address it tried: the address is in the URL acidic shows instead.
_PG_SERVER_PREFIX = re.compile(r"connection to server (at|on) .*? failed: ")
#: PyMySQL's errors of a connection it could not open (MySQL/MariaDB client error codes):
#: can't connect, unknown host, access denied (x3), unknown database, host not allowed.
_MYSQL_CONNECT_CODES = frozenset({2003, 2005, 1044, 1045, 1698, 1049, 1130})


class PostgreSQL(Dialect):
    name = "postgresql"

    def insert_ignore(self, table: sa.Table, values: dict[str, Any]) -> sa.Insert:
        return pg_dialect.insert(table).values(values).on_conflict_do_nothing()

    migrations = "postgresql"
    dml_in_cte = True
    autocommit_writes = True
    notifies = True

    def insert_unless_exists(
        self, table: sa.Table, columns: Sequence[str], key_column: str
    ) -> sa.Insert:
        return (
            pg_dialect.insert(table)
            .values(_binds(table, columns))
            .on_conflict_do_nothing(index_elements=[key_column])
            .returning(table.c.id)
        )

    def flushed_later(self) -> sa.ColumnElement[Any] | None:
        # set_config(..., is_local => true) lasts until the end of the statement's own
        # (implicit) transaction, and is read when it commits: that commit alone does not
        # wait for the WAL flush, and the session's setting is untouched. Evaluated in
        # RETURNING, so only when a row is written (else there is nothing to commit).
        return sa.func.set_config(
            sa.literal("synchronous_commit"), sa.literal("off"), sa.true()
        ).label("acidic_flushed_later")

    def set_autocommit(self, conn: Connection, on: bool) -> bool:
        if conn.dialect.driver != "psycopg":
            return False
        # psycopg's Connection, or SQLAlchemy's adapter of its AsyncConnection (whose
        # setter awaits set_autocommit(), from the greenlet SQLAlchemy runs us in): a
        # client-side switch either way, no round trip.
        conn.connection.dbapi_connection.autocommit = on  # type: ignore[union-attr]
        return True

    def inserted_and_notified(self, insert: sa.Insert) -> sa.Select[Any] | None:
        new = insert.cte("acidic_new")
        queue = sa.bindparam("queue", type_=sa.String)
        return sa.select(new.c.id, _pg_notify.notification(queue))

    def claimer(self, store: Connected) -> Claimer:
        return OneStatementClaimer(store)

    def notifications(
        self, engine: Engine, queues: Sequence[str], stopped: Callable[[], bool]
    ) -> Iterator[str] | None:
        return _pg_notify.notifications(engine, frozenset(queues), stopped)

    def finished_runs(self, engine: Engine) -> contextlib.AbstractContextManager[Heard | None]:
        return _pg_notify.finished_runs(engine)

    def notify(self, conn: Connection, queue: str) -> None:
        _pg_notify.notify(conn, queue)

    def is_lock_unavailable(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == "55P03"

    def prepare_report(self, conn: Connection) -> None:
        # The dashboard's aggregates over a big table (one CASE per chart slice) cost
        # enough for PostgreSQL to JIT-compile them: about 0.5 s of compiling for a query
        # that runs in less. This transaction only.
        conn.exec_driver_sql("SET LOCAL jit = off")

    def contains(self, column: sa.ColumnElement[str], text: str) -> sa.ColumnElement[bool]:
        return sa.func.strpos(column, text) > 0

    def cannot_connect(self, exc: sa.exc.DBAPIError) -> str | None:
        text = str(exc.orig)
        if _sqlstate(exc) is not None or not text.startswith(_PG_CONNECT_FAILED):
            return None
        text = text.removeprefix("connection failed:").strip()
        # One line per address tried (localhost: ::1, then 127.0.0.1); libpq's hint
        # ("Is the server running on that host...") follows on a line of its own.
        reasons = []
        for raw in text.splitlines():
            line = _PG_SERVER_PREFIX.sub("", raw.strip())
            if line and not line.startswith("Is the server running"):
                reasons.append(_readable(line))
        return "; ".join(dict.fromkeys(reasons)) or _readable(text)

    def is_retryable(self, exc: BaseException) -> bool:
        return _sqlstate(exc) in ("40001", "40P01")

    @contextlib.contextmanager
    def migration_lock(self, conn: Connection) -> Iterator[None]:
        # Session-scoped, so it outlives the migration's transaction; a crash ends the
        # session and frees it.
        conn.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            conn.commit()


class SQLite(Dialect):
    name = "sqlite"

    def insert_ignore(self, table: sa.Table, values: dict[str, Any]) -> sa.Insert:
        return sqlite_dialect.insert(table).values(values).on_conflict_do_nothing()

    migrations = "sqlite"
    single_writer = True

    def insert_unless_exists(
        self, table: sa.Table, columns: Sequence[str], key_column: str
    ) -> sa.Insert:
        return (
            sqlite_dialect.insert(table)
            .values(_binds(table, columns))
            .on_conflict_do_nothing(index_elements=[key_column])
            .returning(table.c.id)
        )

    def lock_row_nowait(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        # Writes run in BEGIN IMMEDIATE transactions: holding SQLite's single write
        # lock already excludes every other writer.
        return stmt

    def lock_rows_skip_locked(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        return stmt

    def database_missing(self, engine: Engine) -> bool:
        database = str(engine.url.database or "")
        if database.startswith("file:"):  # the URI form: sqlite:///file:PATH?mode=ro&uri=true
            database = urllib.parse.unquote(database[len("file:") :].split("?", 1)[0])
        return bool(database) and not os.path.exists(database)

    def is_retryable(self, exc: BaseException) -> bool:
        orig = getattr(exc, "orig", exc)
        return isinstance(orig, sqlite3.OperationalError) and (
            "locked" in str(orig) or "busy" in str(orig)
        )

    def ended_transaction(self, exc: BaseException, dbapi_connection: Any) -> bool:
        # SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM... may roll the transaction back; the
        # connection then runs each statement in autocommit mode.
        return not getattr(dbapi_connection, "in_transaction", True)

    def cannot_connect(self, exc: sa.exc.DBAPIError) -> str | None:
        if "unable to open database file" not in str(exc.orig):
            return None
        return (
            "unable to open database file (does its directory exist, and may this "
            "process create and write files there?)"
        )


class MySQL(Dialect):
    def insert_ignore(self, table: sa.Table, values: dict[str, Any]) -> sa.Insert:
        # Not INSERT IGNORE, which turns other errors into warnings too.
        column = next(iter(table.primary_key.columns))
        insert = mysql_dialect.insert(table).values(values)
        return insert.on_duplicate_key_update({column.name: insert.inserted[column.name]})

    name = "mysql"
    migrations = "mysql"
    partial_indexes = False

    def insert_unless_exists(
        self, table: sa.Table, columns: Sequence[str], key_column: str
    ) -> sa.Insert:
        # Not INSERT IGNORE: it would also turn truncations and other errors into
        # warnings. A duplicate key is caught in inserted() instead.
        return sa.insert(table).values(_binds(table, columns))

    def inserted(self, conn: Connection, insert: Rendered, values: dict[str, Any]) -> int | None:
        try:
            result = insert.execute(conn, values)
        except sa.exc.IntegrityError as exc:
            if _mysql_code(exc) == 1062:  # ER_DUP_ENTRY
                return None
            raise
        return int(result.lastrowid)

    def is_lock_unavailable(self, exc: BaseException) -> bool:
        # MySQL 8: ER_LOCK_NOWAIT; MariaDB reports NOWAIT as a lock wait timeout.
        return _mysql_code(exc) in (3572, 1205)

    def is_retryable(self, exc: BaseException) -> bool:
        return _mysql_code(exc) in (1213, 1205)  # deadlock, lock wait timeout

    def contains(self, column: sa.ColumnElement[str], text: str) -> sa.ColumnElement[bool]:
        # Exact: LOCATE follows the column's collation, binary in acidic's tables.
        return sa.func.locate(text, column) > 0

    def ended_transaction(self, exc: BaseException, dbapi_connection: Any) -> bool:
        # A deadlock victim's transaction is rolled back whole, and the next statement
        # starts a new one (a lock wait timeout only undoes its own statement).
        return _mysql_code(exc) == 1213

    def cannot_connect(self, exc: sa.exc.DBAPIError) -> str | None:
        code = _mysql_code(exc)
        if code not in _MYSQL_CONNECT_CODES:
            return None
        args: tuple[Any, ...] = tuple(getattr(exc.orig, "args", ()))
        text = str(args[1]) if len(args) > 1 else str(exc.orig)
        if code == 2003:
            # "Can't connect to MySQL server on 'host' ([Errno 111] Connection refused)"
            found = re.search(r"\(\[Errno [-\d]+\] (.*)\)\s*$", text)
            if found:
                text = found[1]
        return _readable(text)

    @contextlib.contextmanager
    def migration_lock(self, conn: Connection) -> Iterator[None]:
        got = conn.execute(
            sa.text("SELECT GET_LOCK(:name, 300)"), {"name": MIGRATION_LOCK_NAME}
        ).scalar()
        conn.commit()
        if got != 1:
            raise SchemaVersionError("timed out waiting for another process's migration")
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": MIGRATION_LOCK_NAME})
            conn.commit()

    def prepare_ddl(self, conn: Connection, sql: str) -> str:
        version = str(conn.execute(sa.text("SELECT VERSION()")).scalar() or "")
        if "mariadb" not in version.lower():
            sql = sql.replace("utf8mb4_nopad_bin", "utf8mb4_0900_bin")
        return sql


_BY_NAME: dict[str, type[Dialect]] = {
    "postgresql": PostgreSQL,
    "sqlite": SQLite,
    "mysql": MySQL,
    "mariadb": MySQL,
}


def dialect_for(engine: Engine) -> Dialect:
    try:
        return _BY_NAME[engine.dialect.name]()
    except KeyError:
        raise AcidicError(
            f"acidic supports PostgreSQL, SQLite and MySQL/MariaDB, not {engine.dialect.name!r}"
        ) from None
