"""The declared schema of acidic's tables.

The migrations in ``migrations/<dialect>/`` must produce exactly this schema; a test
applies them to one database, ``metadata.create_all`` to another and compares both.
Queries are written against these ``Table`` objects (SQLAlchemy Core), once for all
dialects.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    false,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "awaits",
    "history",
    "limits",
    "metadata",
    "paused_queues",
    "runs",
    "schema_version",
    "signals",
    "starts",
    "workers",
]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every dialect.

    PostgreSQL stores ``timestamptz``; MySQL/MariaDB ``DATETIME(6)`` and SQLite text
    hold naive UTC, converted at the boundary so Python always sees aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("acidic stores aware datetimes only")
        value = value.astimezone(dt.UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        stamp: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=dt.UTC)
        return stamp.astimezone(dt.UTC)


# Long JSON documents: TEXT is 64 KiB on MySQL/MariaDB, so use LONGTEXT there.
JsonText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# SQLite only aliases the rowid for INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

runs = Table(
    "acidic_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(255), nullable=False),
    Column("job", String(255), nullable=False),
    Column("args", JsonText, nullable=False),
    Column("steps", JsonText, nullable=False),
    Column("status", String(16), nullable=False),
    Column("recovery_point", String(255), nullable=True),
    Column("ctx", JsonText, nullable=False),
    Column("result", JsonText, nullable=True),
    Column("error", JsonText, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("lock_token", String(32), nullable=True),
    Column("locked_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_run_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    # 0002: background execution. queue NULL marks an inline run.
    Column("queue", String(100), nullable=True),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("run_at", UTCDateTime(), nullable=True),
    Column("lock_expires_at", UTCDateTime(), nullable=True),
    Column("attempt_limit", Integer, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    # 0004: the worker (acidic_workers.id) holding a running run; NULL otherwise.
    Column("owner", String(255), nullable=True),
    # 0006: the run whose step spawned this one.
    Column("parent_id", BigInteger, nullable=True),
    # 0007: a limited run's concurrency key and its job's maximum.
    Column("concurrency_key", String(255), nullable=True),
    Column("concurrency_limit", Integer, nullable=True),
    # 0008: the W3C traceparent of the code that enqueued the run (telemetry).
    Column("traceparent", String(255), nullable=True),
    # 0009: who executes the run ("celery", "rq", "dramatiq"; NULL: acidic's own worker
    # or inline) and when a relay may republish it to that queue next.
    Column("executor", String(16), nullable=True),
    Column("relay_after", UTCDateTime(), nullable=True),
    UniqueConstraint("idempotency_key", name="acidic_runs_key_uq"),
    Index("acidic_runs_due_idx", "queue", "run_at"),
    Index("acidic_runs_lock_idx", "lock_expires_at"),
    Index("acidic_runs_owner_idx", "owner"),
    Index("acidic_runs_parent_idx", "parent_id"),
    Index("acidic_runs_concurrency_idx", "concurrency_key", "status"),
    Index("acidic_runs_executor_idx", "executor", "status"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_nopad_bin",
    mysql_engine="InnoDB",
)

#: The statuses of runs waiting to be claimed, as literals: a partial index on them is
#: used only by a query that names them literally (not as bound parameters).
WAITING: tuple[ColumnClause[str], ...] = (
    literal_column("'pending'"),
    literal_column("'scheduled'"),
)
#: The statuses of runs in flight (waiting or running), as literals (same reason): the
#: trigram search indexes of PostgreSQL leave them out (0012).
IN_FLIGHT: tuple[ColumnClause[str], ...] = (
    literal_column("'pending'"),
    literal_column("'running'"),
    literal_column("'scheduled'"),
)

#: 0003: a queue's waiting runs in claim order (see the migration); PostgreSQL and SQLite
#: only, which have partial indexes.
Index(
    "acidic_runs_claim_idx",
    runs.c.queue,
    runs.c.priority.desc(),
    runs.c.run_at,
    runs.c.id,
    postgresql_where=runs.c.status.in_(WAITING),
    sqlite_where=runs.c.status.in_(WAITING),
).ddl_if(dialect=("postgresql", "sqlite"))  # type: ignore[arg-type]  # a tuple is documented
#: MariaDB and MySQL: no partial indexes, so the status leads (see the migration).
Index(
    "acidic_runs_claim_idx",
    runs.c.queue,
    runs.c.status,
    runs.c.priority.desc(),
    runs.c.run_at,
    runs.c.id,
).ddl_if(dialect="mysql")

#: 0004: the running runs of a queue (acidic queues; orphaned runs by lock expiry);
#: PostgreSQL and SQLite only, partial.
Index(
    "acidic_runs_running_idx",
    runs.c.queue,
    runs.c.lock_expires_at,
    postgresql_where=runs.c.status == literal_column("'running'"),
    sqlite_where=runs.c.status == literal_column("'running'"),
).ddl_if(dialect=("postgresql", "sqlite"))  # type: ignore[arg-type]  # a tuple is documented
#: 0004: the waiting runs by job (due runs of a job no live worker knows).
Index(
    "acidic_runs_waiting_job_idx",
    runs.c.queue,
    runs.c.job,
    runs.c.run_at,
    postgresql_where=runs.c.status.in_(WAITING),
    sqlite_where=runs.c.status.in_(WAITING),
).ddl_if(dialect=("postgresql", "sqlite"))  # type: ignore[arg-type]  # a tuple is documented
# MariaDB and MySQL: acidic_runs_claim_idx (queue, status, ...) serves these reads; a
# second index led by the status made MariaDB walk it for claims (and sort).

#: 0010: runs by status in id order (the dashboard's lists and counts by status);
#: PostgreSQL only, whose planner weighs it by statistics (on MariaDB a second index led by
#: the status was walked by claims; SQLite plans without statistics).
#: 0011 widened it (INCLUDE): counts by queue and status, failed runs per job over a window,
#: from the index alone.
Index(
    "acidic_runs_status_idx",
    runs.c.status,
    runs.c.id,
    postgresql_include=["queue", "job", "last_run_at"],
).ddl_if(dialect="postgresql")

#: 0002: finished runs by end time (prune). 0011 on PostgreSQL: partial (a run enters it
#: once, when it ends) and covering (the overview's chart, per-job statistics).
Index("acidic_runs_finished_idx", runs.c.finished_at).ddl_if(
    dialect=("sqlite", "mysql")  # type: ignore[arg-type]  # a tuple is documented
)
Index(
    "acidic_runs_finished_idx",
    runs.c.finished_at,
    runs.c.status,
    runs.c.job,
    postgresql_include=["last_run_at"],
    postgresql_where=runs.c.finished_at.is_not(None),
).ddl_if(dialect="postgresql")
#: 0011: the time a run was last active ("since" filters, the HTTP layer's expiry).
Index(
    "acidic_runs_active_idx",
    func.coalesce(runs.c.finished_at, runs.c.last_run_at, runs.c.created_at),
).ddl_if(dialect="postgresql")


#: 0012: the runs in flight, which the trigram indexes of keys and arguments leave out.
Index(
    "acidic_runs_in_flight_idx",
    runs.c.id,
    postgresql_where=runs.c.status.in_(IN_FLIGHT),
).ddl_if(dialect="postgresql")


def _do_block(migration: str) -> str:
    """The DO block of a PostgreSQL migration, read from the migration itself so that
    ``metadata`` and the migrations create the same indexes: 0011's creates the trigram
    indexes (substring search of keys, arguments and errors) where the pg_trgm extension
    exists or can be created; 0012's makes the key and argument ones leave out the runs in
    flight."""
    sql = (
        resources.files("acidic._storage.migrations")
        .joinpath("postgresql", migration)
        .read_text("utf-8")
    )
    start = sql.index("DO $$")
    return sql[start : sql.index("$$;", start) + 2]


for _migration in ("0011_report_indexes.sql", "0012_search_indexes.sql"):
    # DDL is untyped in SQLAlchemy.
    event.listen(
        runs,
        "after_create",
        DDL(_do_block(_migration)).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
    )

history = Table(
    "acidic_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        BigInteger,
        ForeignKey("acidic_runs.id", ondelete="CASCADE", name="acidic_history_run_fk"),
        nullable=False,
    ),
    Column("step", String(255), nullable=False),
    Column("event", String(16), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("error", JsonText, nullable=True),
    Index("acidic_history_run_idx", "run_id", "id"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_nopad_bin",
    mysql_engine="InnoDB",
)

#: 0010: step errors by time (the overview's error chart); PostgreSQL and SQLite only,
#: partial (on MariaDB a full index would cost every history write).
Index(
    "acidic_history_errored_idx",
    history.c.at,
    postgresql_where=history.c.event == literal_column("'errored'"),
    sqlite_where=history.c.event == literal_column("'errored'"),
).ddl_if(dialect=("postgresql", "sqlite"))  # type: ignore[arg-type]  # a tuple is documented

signals = Table(
    "acidic_signals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        BigInteger,
        ForeignKey("acidic_runs.id", ondelete="CASCADE", name="acidic_signals_run_fk"),
        nullable=False,
    ),
    Column("name", String(255), nullable=False),
    Column("payload", JsonText, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("acidic_signals_run_idx", "run_id", "name", "id"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_nopad_bin",
    mysql_engine="InnoDB",
)

#: 0004: the worker registry. ``queues`` and ``jobs`` are JSON lists; a worker is live
#: until ``gone_at`` (renewed with ``heartbeat_at`` at each of its heartbeats).
workers = Table(
    "acidic_workers",
    metadata,
    Column("id", String(255), primary_key=True, autoincrement=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", JsonText, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("version", String(64), nullable=False),
    Column("jobs", JsonText, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("gone_at", UTCDateTime(), nullable=False),
    Index("acidic_workers_gone_idx", "gone_at"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_nopad_bin",
    mysql_engine="InnoDB",
)

#: 0006: the keys an ``awaiting`` run waits for (``Await``).
awaits = Table(
    "acidic_awaits",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        BigInteger,
        ForeignKey("acidic_runs.id", ondelete="CASCADE", name="acidic_awaits_run_fk"),
        nullable=False,
    ),
    Column("awaited_key", String(255), nullable=False),
    Index("acidic_awaits_run_idx", "run_id"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_nopad_bin",
    mysql_engine="InnoDB",
)

#: 0004: queues that workers do not claim from.
paused_queues = Table(
    "acidic_paused_queues",
    metadata,
    Column("name", String(100), primary_key=True, autoincrement=False),
    Column("paused_at", UTCDateTime(), nullable=False),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_nopad_bin",
    mysql_engine="InnoDB",
)

#: 0007: one row per limit name (a concurrency key or ``queue:<name>``), locked by the
#: claim that decides on it.
limits = Table(
    "acidic_limits",
    metadata,
    Column("name", String(255), primary_key=True),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_nopad_bin",
    mysql_engine="InnoDB",
)

#: 0007: the starts of rate-limited queues, for the sliding window.
starts = Table(
    "acidic_starts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("acidic_starts_name_idx", "name", "at"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_nopad_bin",
    mysql_engine="InnoDB",
)

schema_version = Table(
    "acidic_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("applied_at", UTCDateTime(), nullable=False),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_nopad_bin",
    mysql_engine="InnoDB",
)
