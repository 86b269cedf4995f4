"""PostgreSQL's wake-ups: the NOTIFY an enqueue sends, a worker's listener, and the
trigger's announcements of finished runs that ``app.wait`` listens to.

A channel belongs to the whole database, not to a schema: Apps in other schemas of the
same database (a schema per tenant) hear every notification on it. So an enqueue's
payload names the acidic_runs table it wrote to (``<oid>:<queue>``, the oid computed by
the server from the connection's search_path, as it resolves the table itself), and a
listener wakes its worker only for its own table's queues; otherwise every enqueue
anywhere cost an empty claim from every other tenant's workers. A bare ``<queue>`` (what
acidic sent before) still wakes every listener of that queue. The same holds for finished
runs (runs of different schemas share ids): the trigger's payload is ``<oid>:<run id>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "FINISHED_CHANNEL",
    "NOTIFY_CHANNEL",
    "Heard",
    "finished_runs",
    "notification",
    "notifications",
    "notify",
]

#: The channel on which enqueues (and resume, signal, retry) wake workers.
NOTIFY_CHANNEL = "acidic_runs"
#: The channel on which a trigger announces finished runs (the payload is
#: ``<table oid>:<run id>``, migration 0013; the id alone before it): what app.wait
#: listens to.
FINISHED_CHANNEL = "acidic_finished"
#: The oid of the acidic_runs table the connection's search_path resolves, as SQL text.
_TABLE_OID = "'acidic_runs'::regclass::oid::text"
#: The payload's ``<oid>:`` part, as SQL.
_TABLE_PREFIX = f"{_TABLE_OID} || ':'"

#: ``heard(timeout)``: wait up to ``timeout`` seconds for runs to finish; the ids heard.
Heard = Callable[[float], set[int]]


def _runs_table(engine: Engine) -> str:
    """The oid of the App's acidic_runs table, read through ``engine`` itself: a schema
    chosen by the engine's ``connect_args`` or a connect event is not in its URL, which is
    all the listening connection is opened from."""
    with engine.connect() as conn:
        return str(conn.execute(sa.text(f"SELECT {_TABLE_OID}")).scalar_one())


def notification(queue: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``pg_notify`` of ``queue``'s wake-up, as an expression (to ride on a statement)."""
    payload = sa.literal_column(_TABLE_PREFIX, sa.String).concat(queue)
    return sa.func.pg_notify(sa.literal(NOTIFY_CHANNEL, type_=sa.String), payload)


def notify(conn: Connection, queue: str) -> None:
    """Wake the workers of ``queue`` when ``conn``'s transaction commits (and only if it
    commits)."""
    conn.execute(
        sa.text(f"SELECT pg_notify(:channel, {_TABLE_PREFIX} || :queue)"),
        {"channel": NOTIFY_CHANNEL, "queue": queue},
    )


def notifications(
    engine: Engine, queues: frozenset[str], stopped: Callable[[], bool]
) -> Iterator[str]:
    """The names of ``queues`` as their runs' wake-ups arrive, while not ``stopped()``;
    every queue once at first (runs enqueued while nobody listened). Raises when the
    connection is lost; the caller reconnects."""
    # A connection of its own, outside the pool: it stays in LISTEN for hours.
    import psycopg  # noqa: PLC0415 - an optional driver, needed on PostgreSQL only

    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        table = _runs_table(engine)
        ours = {f"{table}:{queue}": queue for queue in queues}
        yield from queues
        while not stopped():
            for note in conn.notifies(timeout=0.5):
                queue = ours.get(note.payload)
                if queue is not None:
                    yield queue
                elif note.payload in queues:  # from an acidic that sent the queue alone
                    yield note.payload


@contextlib.contextmanager
def finished_runs(engine: Engine) -> Iterator[Heard]:
    """Listen on :data:`FINISHED_CHANNEL` while in the block."""
    import psycopg  # noqa: PLC0415 - an optional driver, needed on PostgreSQL only

    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"LISTEN {FINISHED_CHANNEL}")
        table = _runs_table(engine)

        def heard(timeout: float) -> set[int]:
            ids = set()
            for note in conn.notifies(timeout=timeout, stop_after=1):
                # <table oid>:<run id> (migration 0013), or the id alone (before it).
                of, _, run_id = note.payload.rpartition(":")
                if of in (table, ""):
                    with contextlib.suppress(ValueError):
                        ids.add(int(run_id))
            return ids

        yield heard
