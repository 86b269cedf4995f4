"""Versioned migrations: ordered SQL files per dialect and the runner that applies them.

Files live in ``migrations/<dialect>/NNNN_name.sql``; every dialect has the same
versions. The runner records each applied version in ``acidic_schema_version`` and
serialises concurrent runners with a database lock, so ``migrate()`` is safe to call
from every process at start-up.

A database with none of acidic's tables is built from the dialect's baseline
(``baseline_NNNN.sql``: the schema of versions 1..NNNN in one pass) instead of replaying
every version: one CREATE TABLE with its indexes instead of a CREATE and a series of
ALTERs, which on MariaDB (whose DDL commits and rebuilds per statement) cuts a fresh
install from over a second to a fifth of that. The versions it covers are recorded as
applied, and later versions run on top of it as usual.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from importlib import resources

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateTable

from .._errors import SchemaVersionError
from ._dialects import Dialect
from ._schema import schema_version

__all__ = [
    "Migration",
    "applied_version",
    "latest_version",
    "load_baseline",
    "load_migrations",
    "migrate",
]

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_BASELINE = re.compile(r"^baseline_(\d{4})\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements, split at semicolons outside ``$$`` quoted bodies (a
        PostgreSQL function's body keeps its own semicolons)."""
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        statements, current = [], ""
        for n, part in enumerate("\n".join(lines).split("$$")):
            if n % 2:  # inside $$ ... $$
                current += f"$${part}$$"
                continue
            first, *rest = part.split(";")
            current += first
            if rest:
                statements.append(current)
                *done, current = rest
                statements += done
        statements.append(current)
        return [s.strip() for s in statements if s.strip()]


def load_migrations(dialect: Dialect) -> list[Migration]:
    folder = resources.files("acidic._storage.migrations").joinpath(dialect.migrations)
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"acidic migrations for {dialect.name} are not numbered 1..n")
    return found


def load_baseline(dialect: Dialect) -> Migration | None:
    """The dialect's baseline (the newest, if several), as a migration whose version is
    the last one it covers; None when the dialect has none."""
    folder = resources.files("acidic._storage.migrations").joinpath(dialect.migrations)
    found = [
        Migration(int(match[1]), "baseline", entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if (match := _BASELINE.match(entry.name))
    ]
    return max(found, key=lambda m: m.version, default=None)


def latest_version(dialect: Dialect) -> int:
    return len(load_migrations(dialect))


def applied_version(conn: Connection) -> int | None:
    """The schema version of the database, or None when acidic's tables do not exist."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return None
    return int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(schema_version.c.version), 0))
        ).scalar_one()
    )


def read_version(engine: Engine) -> int | None:
    """Like :func:`applied_version`, in one query on a connection of its own (the common
    case, tables present, costs one round trip), without waiting for any writer."""
    with engine.connect().execution_options(acidic_read_only=True) as conn:
        try:
            return int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(schema_version.c.version), 0))
                ).scalar_one()
            )
        except sa.exc.DBAPIError:
            conn.rollback()  # e.g. no such table; ask the catalog to be sure
            return applied_version(conn)
        finally:
            if conn.in_transaction():
                conn.rollback()


def _refuse_newer(current: int, known: int) -> None:
    if current > known:
        raise SchemaVersionError(
            f"the database schema is at version {current}, newer than this acidic "
            f"(which knows up to {known}): upgrade acidic instead of migrating"
        )


def migrate(
    engine: Engine, dialect: Dialect, upto: int | None = None, *, baseline: bool = True
) -> list[str]:
    """Apply pending migrations; return the names of those applied (empty: up to date).

    ``upto``: apply none past that version (Django's migrations of ``acidic.django``
    apply acidic's versions one by one). ``baseline=False`` replays every version even
    on an empty database (the tests compare both ways)."""
    migrations = load_migrations(dialect)
    target = len(migrations) if upto is None else min(upto, len(migrations))
    # Every process calls migrate() at start-up: on a current schema it only reads the
    # version, never waiting for the migration lock or (SQLite) for the write lock that
    # a running step holds. The version is read again under the lock before changing it.
    current = read_version(engine)
    if current is not None:
        _refuse_newer(current, len(migrations))
        if current >= target:
            return []
    applied: list[str] = []
    # The lock is session-wide and taken before the transaction, so that on MySQL,
    # whose DDL commits implicitly, the version rows commit before it is released.
    with engine.connect() as conn, dialect.migration_lock(conn), conn.begin():
        # Compiled from the declared table, then adapted like the migration files
        # (MySQL 8 has no utf8mb4_nopad_bin).
        create = str(CreateTable(schema_version, if_not_exists=True).compile(conn))
        conn.exec_driver_sql(dialect.prepare_ddl(conn, create))
        current = applied_version(conn) or 0
        _refuse_newer(current, len(migrations))
        start = load_baseline(dialect) if baseline and current == 0 else None
        # Only where no acidic table exists: MySQL's DDL is not transactional, so a
        # first migration that failed half-way can leave 0001's tables without its
        # version row, and the baseline's CREATE TABLE IF NOT EXISTS would then skip
        # acidic_runs and leave it without the columns of later versions.
        if start is not None and start.version <= target and not _has_runs(conn):
            for statement in start.statements():
                conn.exec_driver_sql(dialect.prepare_ddl(conn, statement))
            for migration in migrations[: start.version]:
                _record(conn, migration)
                applied.append(f"{migration.version:04d}_{migration.name}")
            current = start.version
        for migration in migrations[current:target]:
            for statement in migration.statements():
                conn.exec_driver_sql(dialect.prepare_ddl(conn, statement))
            _record(conn, migration)
            applied.append(f"{migration.version:04d}_{migration.name}")
    return applied


def _has_runs(conn: Connection) -> bool:
    return sa.inspect(conn).has_table("acidic_runs")


def _record(conn: Connection, migration: Migration) -> None:
    conn.execute(
        schema_version.insert().values(
            version=migration.version, name=migration.name, applied_at=dt.datetime.now(dt.UTC)
        )
    )
