"""acidic's one-statement writes and the steps share a pool: nothing of the former may
reach the latter.

On PostgreSQL acidic writes a new run, a non-transactional step's progress and a
worker's claim as one statement in autocommit, switching psycopg's connection in and out
of autocommit itself (cheaper than SQLAlchemy's isolation-level option), and commits an
inline run's creation without waiting for the disk (``synchronous_commit`` off for that
one implicit transaction). A connection handed back still in autocommit, or a session
left with the setting, would let a transactional step commit statement by statement, or
commit it unflushed: these tests run steps on the very connections those writes used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

import acidic
from tests.support.jobs import create_tables, effect_counts, effects

#: What each transactional step saw of its connection: (autocommit, synchronous_commit).
SEEN: list[tuple[object, object]] = []


def _session_state(tx: sa.Connection) -> tuple[object, object]:
    if tx.dialect.name != "postgresql":
        return (None, None)
    driver = tx.connection.driver_connection
    setting = tx.exec_driver_sql("SHOW synchronous_commit").scalar_one()
    return (getattr(driver, "autocommit", None), setting)


class Probe(acidic.Job):
    """Create (autocommit), write in a step, call (its progress in autocommit), write."""

    max_attempts = 1  # a worker's failure is final at once
    fail_in: str = ""

    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        SEEN.append(_session_state(tx))
        tx.execute(effects.insert().values(run_key=self.key, step="first"))
        if self.fail_in == "first":
            raise RuntimeError("first failed after its write")

    @acidic.step(transactional=False)
    def call(self) -> None:
        pass

    @acidic.step
    def last(self, tx: sa.Connection) -> None:
        SEEN.append(_session_state(tx))
        tx.execute(effects.insert().values(run_key=self.key, step="last"))
        tx.execute(effects.insert().values(run_key=self.key, step="last-2"))
        if self.fail_in == "last":
            raise RuntimeError("last failed after its writes")


@pytest.fixture
def probe_app(database_url: str) -> Iterator[acidic.App]:
    SEEN.clear()
    # Two pooled connections (a failing step reads the run while its own is out), taken
    # in turn: each serves the creations, the calls' progress and the steps.
    engine = (
        None
        if database_url.startswith("sqlite")  # acidic opens its own engine on the file
        else sa.create_engine(database_url, pool_size=2, max_overflow=0)
    )
    app = acidic.App(database_url if engine is None else engine)
    app.migrate()
    app.job(name="autocommit.Probe")(Probe)
    create_tables(app.engine)
    try:
        yield app
    finally:
        app.close()
        if engine is not None:
            engine.dispose()
        SEEN.clear()


def test_autocommit__steps_on_the_same_pooled_connection_stay_transactional(
    probe_app: acidic.App,
) -> None:
    for i in range(3):
        assert probe_app.run(Probe(), key=f"ok-{i}") is None
        with pytest.raises(RuntimeError, match="first failed"):
            probe_app.run(Probe(fail_in="first"), key=f"bad-first-{i}")
        with pytest.raises(RuntimeError, match="last failed"):
            probe_app.run(Probe(fail_in="last"), key=f"bad-last-{i}")
    for i in range(3):
        assert effect_counts(probe_app.engine, f"ok-{i}") == {"first": 1, "last": 1, "last-2": 1}
        # A failed step's writes rolled back: none of them was committed on its own.
        assert effect_counts(probe_app.engine, f"bad-first-{i}") == {}
        assert effect_counts(probe_app.engine, f"bad-last-{i}") == {"first": 1}
        failed = probe_app.get(f"bad-last-{i}")
        assert failed is not None
        assert (failed.status, failed.recovery_point) == ("failed", "last")
    if probe_app.engine.dialect.name == "postgresql":
        # Out of autocommit, and the creation's synchronous_commit=off did not outlive
        # its own transaction: the steps' commits wait for the disk.
        assert set(SEEN) == {(False, "on")}, SEEN


def test_autocommit__a_failed_statement_hands_the_connection_back_transactional(
    probe_app: acidic.App,
) -> None:
    store = probe_app._manager.store
    for _ in range(2):
        with pytest.raises(sa.exc.DBAPIError), store.autocommitted() as conn:
            conn.exec_driver_sql("SELECT * FROM acidic_no_such_table")
    with pytest.raises(RuntimeError, match="last failed"):
        probe_app.run(Probe(fail_in="last"), key="after-error")
    assert effect_counts(probe_app.engine, "after-error") == {"first": 1}


def test_autocommit__a_connection_killed_in_autocommit_is_not_reused(
    probe_app: acidic.App, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the driver connection is switched by acidic on PostgreSQL only")
    store = probe_app._manager.store
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with store.autocommitted() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with admin.connect() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(sa.exc.DBAPIError):
                conn.exec_driver_sql("SELECT 1")
    finally:
        admin.dispose()
    with pytest.raises(RuntimeError, match="last failed"):
        probe_app.run(Probe(fail_in="last"), key="after-kill")
    assert effect_counts(probe_app.engine, "after-kill") == {"first": 1}
    assert set(SEEN) == {(False, "on")}, SEEN


def test_autocommit__a_workers_claims_and_steps_share_connections_safely(
    database_url: str,
) -> None:
    # The worker's claims are one statement in autocommit too; its steps run on the
    # same few pooled connections.
    from tests.support.queue.jobs import background, wait_status

    SEEN.clear()
    engine = (
        None
        if database_url.startswith("sqlite")
        else sa.create_engine(database_url, pool_size=4, max_overflow=0)
    )
    app = acidic.App(database_url if engine is None else engine)
    try:
        app.migrate()
        app.job(name="autocommit.Probe")(Probe)
        create_tables(app.engine)
        for i in range(4):
            app.enqueue(Probe(), key=f"w-ok-{i}")
            app.enqueue(Probe(fail_in="last"), key=f"w-bad-{i}")
        with background(app, concurrency=1):
            for i in range(4):
                assert wait_status(app, f"w-ok-{i}", "succeeded").attempts == 1
                assert wait_status(app, f"w-bad-{i}", "failed").attempts == 1
        for i in range(4):
            assert effect_counts(app.engine, f"w-ok-{i}") == {"first": 1, "last": 1, "last-2": 1}
            assert effect_counts(app.engine, f"w-bad-{i}") == {"first": 1}
        if app.engine.dialect.name == "postgresql":
            assert set(SEEN) == {(False, "on")}, SEEN
    finally:
        app.close()
        if engine is not None:
            engine.dispose()
        SEEN.clear()


class AsyncProbe(acidic.Job):
    """:class:`Probe` with async steps: acidic's writes go through SQLAlchemy's asyncio
    adapter of psycopg, switched to autocommit by acidic as well."""

    max_attempts = 1
    fail_in: str = ""

    async def _write(self, tx: AsyncConnection, step: str) -> None:
        SEEN.append(await tx.run_sync(_session_state))
        await tx.execute(effects.insert().values(run_key=self.key, step=step))
        if self.fail_in == step:
            raise RuntimeError(f"{step} failed after its write")

    @acidic.step
    async def first(self, tx: AsyncConnection) -> None:
        await self._write(tx, "first")

    @acidic.step(transactional=False)
    async def call(self) -> None:
        pass

    @acidic.step
    async def last(self, tx: AsyncConnection) -> None:
        await self._write(tx, "last")


def test_autocommit__async_steps_on_the_same_pooled_connections_stay_transactional(
    database_url: str,
) -> None:
    from tests.support.queue.jobs import background, wait_status

    SEEN.clear()
    app = acidic.App(database_url)
    try:
        app.migrate()
        app.job(name="autocommit.AsyncProbe")(AsyncProbe)
        create_tables(app.engine)

        async def inline() -> None:
            for i in range(3):
                await app.run_async(AsyncProbe(), key=f"a-ok-{i}")
                with pytest.raises(RuntimeError, match="last failed"):
                    await app.run_async(AsyncProbe(fail_in="last"), key=f"a-bad-{i}")

        asyncio.run(inline())
        for i in range(3):
            app.enqueue(AsyncProbe(), key=f"aw-ok-{i}")
            app.enqueue(AsyncProbe(fail_in="last"), key=f"aw-bad-{i}")
        with background(app, concurrency=2):
            for i in range(3):
                wait_status(app, f"aw-ok-{i}", "succeeded")
                wait_status(app, f"aw-bad-{i}", "failed")
        for prefix in ("a", "aw"):
            for i in range(3):
                assert effect_counts(app.engine, f"{prefix}-ok-{i}") == {"first": 1, "last": 1}
                assert effect_counts(app.engine, f"{prefix}-bad-{i}") == {"first": 1}
        assert len(SEEN) == 24
        if app.engine.dialect.name == "postgresql":
            assert set(SEEN) == {(False, "on")}, SEEN
    finally:
        app.close()
        SEEN.clear()
