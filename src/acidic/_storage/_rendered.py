"""Statements compiled once and executed as driver SQL.

acidic runs a handful of statements once per step or per run (the progress write, the
claim of a key, a worker's claim, an enqueue). Through ``Connection.execute`` each
execution of a cached statement still pays for its cache key, the compiled-cache lookup
and the construction of its parameters (about 25 µs of client CPU per statement on
PostgreSQL, 5-6% of a ride job's). A :class:`Rendered` statement pays for that once;
each execution goes through ``Connection.exec_driver_sql``, which keeps SQLAlchemy's
events, error translation and transaction handling.

Where nothing listens to SQLAlchemy's cursor events on the engine or the connection, and the
statement runs outside any step (acidic's own progress writes and claims), it goes to
the driver's cursor directly: SQLAlchemy's execution context, result object and event
dispatch cost about as much again as the rest (121 against 53 µs of client CPU per
statement with psycopg; 293 against 176 µs through its asyncio adapter). Errors still go
through SQLAlchemy's handling (translation, ``handle_error``, invalidation of a dead
connection). As soon as anything listens (``acidic.testing.crash_points``, an
application's instrumentation), every statement goes through ``exec_driver_sql`` again,
so that it sees each one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._step_connection import in_step

__all__ = ["Rendered", "in_autocommit", "mark_autocommit"]


def _on_driver(conn: Connection) -> bool:
    """Whether a statement may go to ``conn``'s driver cursor directly: no listener of
    cursor events, not in a step, and in a transaction or in autocommit (else SQLAlchemy
    would begin one itself)."""
    if conn._has_events:  # listeners of this connection alone
        return False
    dispatch = conn.engine.dispatch
    if dispatch.after_cursor_execute or dispatch.before_cursor_execute:
        return False
    if in_step(conn):
        return False
    return conn.in_transaction() or in_autocommit(conn)


def in_autocommit(conn: Connection) -> bool:
    """Whether each statement on ``conn`` commits on its own: switched by SQLAlchemy's
    isolation-level option, or on the driver by acidic (``Connected.autocommitted``)."""
    return (
        _AUTOCOMMIT in conn.__dict__
        or conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    )


#: Set on a Connection whose driver connection acidic switched to autocommit itself
#: (see ``Connected.autocommitted``).
_AUTOCOMMIT = "acidic_autocommit"


def mark_autocommit(conn: Connection, on: bool) -> None:
    """Mark ``conn`` as switched to autocommit on its driver connection (or no more)."""
    if on:
        conn.__dict__[_AUTOCOMMIT] = True
    else:
        conn.__dict__.pop(_AUTOCOMMIT, None)


#: Read the cursor's rowcount before the result is closed (SQLAlchemy reads it only
#: when asked for statements it did not compile).
_KEEP_ROWCOUNT = {"preserve_rowcount": True}


@dataclass(frozen=True, slots=True)
class Rendered:
    """One statement rendered for one dialect: its SQL, the bind processors of its
    parameters (acidic's UTC datetimes), its own literal parameters, and the result
    processors of the columns it returns."""

    sql: str
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    literals: dict[str, Any]
    results: tuple[Callable[[Any], Any] | None, ...]
    #: For drivers with positional parameters (sqlite3's ``?``): the parameter names in
    #: the order the SQL takes them. None: the driver takes a mapping (psycopg, PyMySQL).
    positions: tuple[str, ...] | None

    @classmethod
    def of(cls, stmt: sa.Executable, dialect: sa.Dialect) -> Rendered:
        compiled = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
        if compiled.escaped_bind_names:
            raise ValueError(f"parameter names need escaping: {compiled.escaped_bind_names}")
        processors: list[tuple[str, Callable[[Any], Any]]] = []
        literals: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.bind_processor(dialect)
            if bind.required:
                if processor is not None:
                    processors.append((name, processor))
            else:  # a value of the statement itself (a literal, a NULL in SET)
                value = bind.effective_value
                literals[name] = value if processor is None else processor(value)
        columns: Sequence[Any] = getattr(stmt, "exported_columns", ())
        results = tuple(c.type.result_processor(dialect, None) for c in columns)
        positions = tuple(compiled.positiontup) if compiled.positional else None
        return cls(compiled.string, tuple(processors), literals, results, positions)

    def _params(self, values: dict[str, Any]) -> Any:
        params = {**self.literals, **values}
        for name, processor in self.processors:
            params[name] = processor(params[name])
        if self.positions is not None:
            return tuple(params[name] for name in self.positions)
        return params

    def _driver_cursor(self, conn: Connection, params: Any, *, many: bool = False) -> Any:
        """The driver's cursor of ``conn``, this statement executed on it (see
        :func:`_on_driver`); a driver error is raised as SQLAlchemy raises it."""
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if many:
                cursor.executemany(self.sql, params)
            else:
                cursor.execute(self.sql, params)
        except BaseException as exc:
            # Translated, handle_error listeners called, a dead connection (or one left
            # mid-statement by KeyboardInterrupt) invalidated, the cursor closed: as for
            # a statement SQLAlchemy ran.
            conn._handle_dbapi_exception(exc, self.sql, params, cursor, None)
        return cursor

    def execute_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Execute once per row of parameters (the driver's executemany)."""
        params = [self._params(row) for row in rows]
        if _on_driver(conn):
            self._driver_cursor(conn, params, many=True).close()
            return
        conn.exec_driver_sql(self.sql, params)

    def execute(self, conn: Connection, values: dict[str, Any]) -> sa.CursorResult[Any]:
        """Execute with ``values`` (one per required parameter); rows unprocessed."""
        return conn.exec_driver_sql(self.sql, self._params(values))

    def rows(self, conn: Connection, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Execute and return the rows, each column through its type's result
        processing (as ``Connection.execute`` would do)."""
        if _on_driver(conn):
            cursor = self._driver_cursor(conn, self._params(values))
            try:
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        else:
            fetched = self.execute(conn, values)
        processed = []
        for row in fetched:
            processed.append(
                tuple(
                    value if process is None else process(value)
                    for process, value in zip(self.results, row, strict=True)
                )
            )
        return processed

    def rowcount(self, conn: Connection, values: dict[str, Any]) -> int:
        """Execute and return the number of rows the statement affected."""
        if _on_driver(conn):
            cursor = self._driver_cursor(conn, self._params(values))
            count = cursor.rowcount
            cursor.close()
            return int(count)
        result = conn.exec_driver_sql(self.sql, self._params(values), _KEEP_ROWCOUNT)
        return int(result.rowcount)
