"""``App.migrate()`` on a current schema returns at once (issue 11, defects found in use):
every process calls it at start-up, so it must not queue behind a running step (which
holds SQLite's write lock) nor behind another process's migration lock."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import acidic
from tests.support.jobs import effects

#: Seconds within which migrate() must return: it takes milliseconds; a call that waits
#: for the step waits for as long as the step runs (here until the test ends it).
AT_ONCE = 2.0
#: Set by the test to let HoldOpen's step finish.
RELEASE = threading.Event()
#: Set by HoldOpen's step once its writes are made and its transaction is held.
HOLDING = threading.Event()


class HoldOpen(acidic.Job):
    """A step that writes, then keeps its transaction open until RELEASE is set."""

    @acidic.step
    def hold(self, tx: sa.Connection) -> None:
        tx.execute(effects.insert().values(run_key=self.key, step="hold"))
        HOLDING.set()
        RELEASE.wait(30)


@contextlib.contextmanager
def _step_running(app: acidic.App) -> Iterator[None]:
    """A step of ``app`` running in a thread, holding its transaction (and on SQLite the
    write lock), until the block ends."""
    RELEASE.clear()
    HOLDING.clear()
    app.job(name="defects.HoldOpen")(HoldOpen)
    thread = threading.Thread(target=app.run, args=(HoldOpen(), "holding"), daemon=True)
    thread.start()
    try:
        assert HOLDING.wait(10), "the step did not start"
        yield
    finally:
        RELEASE.set()
        thread.join(30)


@contextlib.contextmanager
def _migration_lock_held(app: acidic.App) -> Iterator[None]:
    """Another session holds the lock that serialises migrations (a migration under way
    in another process); nothing on SQLite, whose migrations take the write lock."""
    store = app.manager.store
    if store.dialect.name == "sqlite":
        yield
        return
    engine = sa.create_engine(app.engine.url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn, store.dialect.migration_lock(conn):
            yield
    finally:
        engine.dispose()


def test_migrate__a_current_schema_does_not_wait_for_a_running_step_or_a_migration_lock(
    app: acidic.App, database_url: str
) -> None:
    outcome: dict[str, object] = {}

    def start_up() -> None:  # what another process does when it starts
        started = time.monotonic()
        with acidic.App(database_url) as other:
            outcome["applied"] = other.migrate()
        outcome["elapsed"] = time.monotonic() - started

    with _step_running(app), _migration_lock_held(app):
        thread = threading.Thread(target=start_up, daemon=True)
        thread.start()
        thread.join(5)
        still_waiting = thread.is_alive()
    thread.join(60)

    assert not still_waiting, "migrate() waited for the running step or the migration lock"
    assert outcome["applied"] == []
    assert isinstance(outcome["elapsed"], float)
    assert outcome["elapsed"] < AT_ONCE, outcome


def test_migrate__an_empty_database_is_still_migrated_once(database_url: str) -> None:
    with acidic.App(database_url) as first, acidic.App(database_url) as second:
        applied = first.migrate()
        again = second.migrate()

    assert applied
    assert applied[0] == "0001_initial"
    assert again == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_migrate__a_newer_schema_is_refused_without_the_lock(
    app: acidic.App, database_url: str
) -> None:
    with app.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO acidic_schema_version (version, name, applied_at) "
                "VALUES (999, 'future', CURRENT_TIMESTAMP)"
            )
        )

    with _step_running(app), acidic.App(database_url) as other:
        started = time.monotonic()
        with pytest.raises(acidic.SchemaVersionError, match="newer than this acidic"):
            other.migrate()
        elapsed = time.monotonic() - started

    assert elapsed < AT_ONCE
