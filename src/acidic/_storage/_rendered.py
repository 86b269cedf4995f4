"""Statements compiled once and executed as driver SQL.

acidic runs a handful of statements once per step or per run (the progress write, the
claim of a key, a worker's claim, an enqueue). Through ``Connection.execute`` each
execution of a cached statement still pays for its cache key, the compiled-cache lookup
and the construction of its parameters (about 25 µs of client CPU per statement on
PostgreSQL, 5-6% of a ride job's). A :class:`Rendered` statement pays for that once;
each execution goes through ``Connection.exec_driver_sql``, which keeps SQLAlchemy's
events, error translation and transaction handling: ``acidic.testing.crash_points``
and any listener of the application still see every statement. (Going to the driver
directly would save about as much again, without those.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["Rendered"]

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

    def execute_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Execute once per row of parameters (the driver's executemany)."""
        conn.exec_driver_sql(self.sql, [self._params(row) for row in rows])

    def execute(self, conn: Connection, values: dict[str, Any]) -> sa.CursorResult[Any]:
        """Execute with ``values`` (one per required parameter); rows unprocessed."""
        return conn.exec_driver_sql(self.sql, self._params(values))

    def rows(self, conn: Connection, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Execute and return the rows, each column through its type's result
        processing (as ``Connection.execute`` would do)."""
        processed = []
        for row in self.execute(conn, values):
            processed.append(
                tuple(
                    value if process is None else process(value)
                    for process, value in zip(self.results, row, strict=True)
                )
            )
        return processed

    def rowcount(self, conn: Connection, values: dict[str, Any]) -> int:
        """Execute and return the number of rows the statement affected."""
        result = conn.exec_driver_sql(self.sql, self._params(values), _KEEP_ROWCOUNT)
        return int(result.rowcount)
