"""The SQLAlchemy engine acidic uses for a database URL: the drivers it picks, SQLite's
connections (WAL, busy timeout, IMMEDIATE transactions), and URLs as they may be shown."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from .._errors import AcidicError

__all__ = [
    "SQLITE_BUSY_TIMEOUT",
    "async_url",
    "make_async_engine",
    "make_engine",
    "shown_url",
    "sync_url",
]


#: Seconds a SQLite connection waits for the write lock before reporting "busy".
SQLITE_BUSY_TIMEOUT = 30.0


def _normalise_url(url: URL) -> URL:
    """Pick the drivers acidic is tested with when the URL names none."""
    backend = url.get_backend_name()
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    elif url.drivername in ("mysql", "mariadb"):
        url = url.set(drivername=f"{backend}+pymysql")
    if backend in ("mysql", "mariadb") and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def _sqlite_engine(url: URL, create: Any = sa.create_engine) -> Any:
    """acidic's SQLite engine (``create``: ``sa.create_engine``, or the asyncio one, whose
    ``sync_engine`` gets the same listeners: they run in its greenlet, where the
    aiosqlite adapter's calls behave as the sqlite3 module's)."""
    if url.database in (None, "", ":memory:") or "mode=memory" in str(url):
        raise AcidicError(
            "acidic needs a SQLite database file: an in-memory database is private to one "
            "connection and cannot hold runs that survive a crash"
        )
    made = create(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False})
    engine: Engine = getattr(made, "sync_engine", made)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        _use_wal(cur)  # readers never wait for the writer
        cur.close()
        record.info["acidic_busy_ms"] = int(SQLITE_BUSY_TIMEOUT * 1000)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that later writes can fail with "database is locked"
        # without waiting; IMMEDIATE takes the write lock up front (and waits for it).
        options = conn.get_execution_options()
        if options.get("acidic_one_read"):
            # One SELECT: SQLite runs it in a read transaction of its own, and the
            # ROLLBACK that ends it is a no-op in the driver.
            return
        busy_ms = int(options.get("acidic_busy_timeout", SQLITE_BUSY_TIMEOUT) * 1000)
        if conn.info.get("acidic_busy_ms") != busy_ms:  # PRAGMA only when it changes
            # A setting of the connection, not a statement of the transaction: straight to
            # the driver, without SQLAlchemy's execute path (it cannot fail).
            # (The DBAPI cursor: sqlite3's, or the aiosqlite adapter's, alike.)
            cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.close()
            conn.info["acidic_busy_ms"] = busy_ms
        conn.exec_driver_sql("BEGIN" if options.get("acidic_read_only") else "BEGIN IMMEDIATE")

    return made


def _use_wal(cur: Any) -> None:
    """Put the database in WAL mode (it stays so). Switching takes an exclusive lock, and
    SQLite reports "database is locked" at once, without its busy timeout, while other
    processes open the same new file: retry for a while, as the busy timeout would."""
    cur.execute("PRAGMA journal_mode")  # DBAPI style: the aiosqlite adapter's too
    if str(cur.fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def make_engine(database: str | URL | Engine) -> Engine:
    """The engine acidic uses for ``database`` (a URL, or a user's Engine)."""
    if isinstance(database, Engine):
        if database.dialect.name == "sqlite":
            # acidic needs its own transaction handling on SQLite; share the file, not the pool.
            return _sqlite_engine(database.url)  # type: ignore[no-any-return]
        return database
    url = _normalise_url(make_url(database))
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)  # type: ignore[no-any-return]
    try:
        engine: Engine = _created(sa.create_engine, url)
        return engine
    except ImportError as exc:
        raise AcidicError(_missing_driver(url, exc)) from exc


def _options(url: URL) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if url.get_backend_name() in ("mysql", "mariadb"):
        # REPEATABLE READ would let a step read a snapshot older than the row it updates.
        options["isolation_level"] = "READ COMMITTED"
    return options


def _created(create: Any, url: URL, **pool: Any) -> Any:
    """``create(url, ...)`` (the sync or asyncio ``create_engine``) with acidic's options;
    on psycopg, the pool's reset of :func:`_reset_only_in_transaction`."""
    options = _options(url)
    if url.drivername != "postgresql+psycopg":
        return create(url, **options, **pool)
    made = create(url, **options, **pool, pool_reset_on_return=None)
    _reset_only_in_transaction(getattr(made, "sync_engine", made))
    return made


def _reset_only_in_transaction(engine: Engine) -> None:
    """On psycopg, roll a connection back on its return to the pool only when it is in a
    transaction. acidic ends its transactions itself (commit, or rollback on any error)
    and runs its one-statement writes in autocommit, so SQLAlchemy's ROLLBACK on every
    return found an idle connection each time: nothing reached the server, but each cost
    the client about 30 µs, a greenlet switch on asyncio, three times per ride job. A
    connection that comes back in a transaction, or with a statement in progress, is
    still rolled back (and discarded if that fails, as before). For an engine made with
    ``pool_reset_on_return=None``."""
    from psycopg import pq  # noqa: PLC0415 - psycopg engines only

    idle = pq.TransactionStatus.IDLE

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        if state.terminate_only or not state.asyncio_safe:
            return  # as SQLAlchemy's own reset: the connection is discarded, or can't be used here
        if record.driver_connection.info.transaction_status != idle:
            dbapi_connection.rollback()


#: The asyncio driver acidic picks for the sync driver of a URL.
_ASYNC_DRIVERS = {
    "postgresql+psycopg": "postgresql+psycopg",  # psycopg 3 is both
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "mysql+pymysql": "mysql+aiomysql",
    "mariadb+pymysql": "mariadb+aiomysql",
}


def async_url(url: URL) -> URL:
    """The URL of the asyncio engine for the database of ``url`` (sync or async)."""
    url = _normalise_url(url)
    return url.set(drivername=_ASYNC_DRIVERS.get(url.drivername, url.drivername))


#: The sync driver acidic uses for the database of an asyncio URL.
_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "mysql+aiomysql": "mysql+pymysql",
    "mysql+asyncmy": "mysql+pymysql",
    "mariadb+aiomysql": "mariadb+pymysql",
    "mariadb+asyncmy": "mariadb+pymysql",
}


def sync_url(url: URL) -> URL:
    """The URL of acidic's sync engine for the database of an asyncio engine's ``url``."""
    return url.set(drivername=_SYNC_DRIVERS.get(url.drivername, url.drivername))


def make_async_engine(
    database: str | URL | Engine | Any, pool: dict[str, Any] | None = None
) -> Any:
    """The asyncio engine (``AsyncEngine``) acidic uses for ``database``: a URL, acidic's
    sync Engine (its database, through the asyncio driver of its dialect), or a user's
    ``AsyncEngine``, used as it is (except on SQLite: see :func:`make_engine`).
    ``pool``: options of its connection pool (``pool_size``...; not for SQLite)."""
    try:
        # Optional: greenlet is the extra acidic[async]. SQLAlchemy's asyncio runs on it.
        import greenlet  # type: ignore[import-untyped]  # noqa: F401, PLC0415
        from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine  # noqa: PLC0415
    except ImportError as exc:
        raise AcidicError(
            f"acidic's asyncio API needs greenlet ({exc}): pip install 'acidic[async]'"
        ) from exc
    if isinstance(database, AsyncEngine):
        if database.dialect.name != "sqlite":
            return database
        database = database.url
    url = async_url(database.url if isinstance(database, Engine) else make_url(database))
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url, create_async_engine)
        return _created(create_async_engine, url, **(pool or {}))
    except ImportError as exc:
        raise AcidicError(_missing_driver(url, exc)) from exc


#: The extra of acidic that installs the driver acidic picks for a URL.
_EXTRAS = {
    "postgresql+psycopg": ("psycopg", "acidic[postgresql]"),
    "mysql+pymysql": ("PyMySQL", "acidic[mysql]"),
    "mariadb+pymysql": ("PyMySQL", "acidic[mysql]"),
    "sqlite+aiosqlite": ("aiosqlite", "acidic[async]"),
    "mysql+aiomysql": ("aiomysql", "acidic[async]"),
    "mariadb+aiomysql": ("aiomysql", "acidic[async]"),
}


def _missing_driver(url: URL, exc: ImportError) -> str:
    where = f"unusable database URL {shown_url(url)!r}"
    known = _EXTRAS.get(url.drivername)
    if known is None:  # a driver the URL names itself
        return f"{where}: its database driver is not installed ({exc}); install it"
    driver, extra = known
    return f"{where}: its database driver, {driver}, is not installed: pip install '{extra}'"


def shown_url(url: URL) -> str:
    """``url`` as acidic reports it: the password hidden, without the driver and the
    charset acidic adds to a URL that names none."""
    if url.drivername in _EXTRAS:
        url = url.set(drivername=url.get_backend_name())
    if url.query.get("charset") == "utf8mb4" and url.get_backend_name() in ("mysql", "mariadb"):
        url = url.difference_update_query(["charset"])
    return url.render_as_string(hide_password=True)
