"""A connection of acidic's own engines comes back from the pool out of any transaction.

On psycopg acidic replaces SQLAlchemy's ROLLBACK on every return to the pool by one
only when the connection is in a transaction (acidic ends its own transactions, so the
blanket ROLLBACK found an idle connection each time). What a caller left open on a
pooled connection (here: a write straight through the driver, never committed) must
still be rolled back before anyone else gets the connection, sync and async.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from tests.support.jobs import create_tables, effects


def _count(app: acidic.App, key: str) -> int:
    with app.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(effects).where(effects.c.run_key == key)
        ).scalar_one()


def _insert_sql(app: acidic.App) -> str:
    mark = "?" if app.engine.dialect.name == "sqlite" else "%s"
    return f"INSERT INTO effects (run_key, step) VALUES ({mark}, {mark})"


def _insert_on_driver(conn: sa.Connection, sql: str, key: str) -> None:
    """A write on the pooled DBAPI connection, past SQLAlchemy's Connection (which
    would roll back a transaction it began itself): the driver's own transaction."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    if conn.dialect.name == "sqlite":
        # acidic's SQLite connections leave BEGIN to SQLAlchemy (the driver autocommits).
        cursor.execute("BEGIN")
    cursor.execute(sql, (key, "raw"))
    cursor.close()


@pytest.fixture
def own_app(database_url: str) -> Any:
    app = acidic.App(database_url)  # acidic's own engines, made from the URL
    app.migrate()
    create_tables(app.engine)
    try:
        yield app
    finally:
        app.close()


def test_pool__a_connection_returned_in_a_transaction_is_rolled_back(own_app: acidic.App) -> None:
    with own_app.engine.connect() as conn:
        _insert_on_driver(conn, _insert_sql(own_app), "left-open")
        # Closing it returns the pooled connection inside the transaction the INSERT began.
    assert _count(own_app, "left-open") == 0
    # Every pooled connection is usable and idle: a write commits and is seen.
    with own_app.engine.begin() as conn:
        conn.execute(effects.insert().values(run_key="after", step="sa"))
    assert _count(own_app, "after") == 1
    if own_app.engine.dialect.name == "postgresql":
        again = own_app.engine.raw_connection()
        try:
            driver: Any = again.driver_connection
            assert driver.info.transaction_status.name == "IDLE"
        finally:
            again.close()


def test_pool__an_async_connection_returned_in_a_transaction_is_rolled_back(
    own_app: acidic.App,
) -> None:
    sql = _insert_sql(own_app)

    async def leave_open() -> None:
        engine = own_app.async_engine
        async with engine.connect() as conn:
            await conn.run_sync(_insert_on_driver, sql, "left-open-async")
            # Closing it returns the pooled connection inside that transaction.
        async with engine.begin() as conn:
            await conn.execute(effects.insert().values(run_key="after-async", step="sa"))
        await engine.dispose()

    asyncio.run(leave_open())
    assert _count(own_app, "left-open-async") == 0
    assert _count(own_app, "after-async") == 1
