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

#: Driver parameter styles that take a mapping of named parameters.
_NAMED_STYLES = ("pyformat", "named")
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

    @staticmethod
    def supported(dialect: sa.Dialect) -> bool:
        """Whether the dialect's driver takes named parameters (psycopg, PyMySQL);
        positional styles (sqlite3's ``qmark``) keep the compiled path."""
        return dialect.paramstyle in _NAMED_STYLES

    @classmethod
    def of(cls, stmt: sa.Executable, dialect: sa.Dialect) -> Rendered:
        if not cls.supported(dialect):
            raise ValueError(f"{dialect.name}: positional parameters, nothing to render")
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
        return cls(compiled.string, tuple(processors), literals, results)

    def _params(self, values: dict[str, Any]) -> dict[str, Any]:
        params = {**self.literals, **values}
        for name, processor in self.processors:
            params[name] = processor(params[name])
        return params

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
