"""The guard of a step's connection costs statements nothing, and still refuses COMMIT.

acidic refuses a COMMIT sent by a transactional step (its writes would commit without
its progress) with a connection class of its own rather than an engine-wide listener:
with any engine-wide listener of connection events, SQLAlchemy dispatches events around
every statement, which cost a ride job about 7% of a worker's CPU. These tests pin both
halves: nothing listens on acidic's engine, and the refusal still holds, on acidic's own
engine and on an application's engine, whose class acidic leaves as it was.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import acidic
from tests.support.jobs import create_tables, effect_counts, effects

SEEN: list[str] = []


class Commits(acidic.Job):
    """A transactional step that commits its own transaction (refused)."""

    how: str = "connection"

    @acidic.step
    def write(self, tx: sa.Connection) -> None:
        SEEN.append(type(tx).__name__)
        tx.execute(effects.insert().values(run_key=self.key, step="guarded"))
        if self.how == "connection":
            tx.commit()
        else:  # the transaction object, as an ORM session's commit reaches it
            transaction = tx.get_transaction()
            assert transaction is not None
            transaction.commit()


class Writes(acidic.Job):
    @acidic.step
    def write(self, tx: sa.Connection) -> None:
        SEEN.append(type(tx).__name__)
        tx.execute(effects.insert().values(run_key=self.key, step="written"))


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


def _app(database: str | sa.Engine) -> acidic.App:
    app = acidic.App(database)
    app.migrate()
    app.job(name="guard.Commits")(Commits)
    app.job(name="guard.Writes")(Writes)
    create_tables(app.engine)
    return app


@pytest.mark.parametrize("how", ["connection", "transaction"])
def test_guard__commit_in_a_step_is_refused_and_nothing_of_the_step_is_kept(
    database_url: str, how: str
) -> None:
    app = _app(database_url)
    try:
        with pytest.raises(acidic.JobDefinitionError, match="tried to commit"):
            app.run(Commits(how=how), key="k")
        assert effect_counts(app.engine, "k") == {}
        run = app.get("k")
        assert run is not None
        assert run.recovery_point == "write"
    finally:
        app.close()


def test_guard__acidic_engine_has_no_connection_listeners(database_url: str) -> None:
    # The point of the guard's design: statements of steps take SQLAlchemy's path
    # without event dispatch. (SQLite's engine listens to "begin": it has to.)
    app = _app(database_url)
    try:
        app.run(Writes(), key="k")
        assert SEEN == ["StepConnection"]
        if app.engine.dialect.name != "sqlite":
            # (Not ``_has_events``: SQLAlchemy never resets it, and acidic.testing's
            # crash points listen on the Engine class while they run.)
            dispatch = app.engine.dispatch
            assert len(dispatch.before_cursor_execute) == 0
            assert len(dispatch.commit) == 0
    finally:
        app.close()


def test_guard__an_applications_engine_is_left_as_it_was_and_still_guarded(
    database_url: str,
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("acidic opens its own engine on a SQLite file (it shares the file)")
    engine = sa.create_engine(database_url)
    app = _app(engine)
    try:
        app.run(Writes(), key="w")
        with pytest.raises(acidic.JobDefinitionError, match="tried to commit"):
            app.run(Commits(), key="c")
        assert effect_counts(engine, "w") == {"written": 1}
        assert effect_counts(engine, "c") == {}
        # The application's own connections: the class it had, COMMIT as usual.
        assert engine._connection_cls is sa.Connection
        with engine.connect() as conn:
            assert type(conn) is sa.Connection
            conn.execute(effects.insert().values(run_key="app", step="app"))
            conn.commit()
        assert effect_counts(engine, "app") == {"app": 1}
    finally:
        app.close()
        engine.dispose()
