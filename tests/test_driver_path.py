"""acidic's own statements (progress, history, claims) go to the driver's cursor when only
acidic listens to SQLAlchemy's cursor events, and through SQLAlchemy as soon as anything
else listens: a listener (crash_points, an application's instrumentation) sees every
statement; a driver error is raised as SQLAlchemy raises it."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from acidic._storage._rendered import Rendered
from tests.support.jobs import CreateRide, effect_counts


def _is_progress(statement: str) -> bool:
    return "acidic_runs" in statement and statement.lstrip().upper().startswith(("UPDATE", "WITH"))


@pytest.fixture
def through_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements that went through ``Connection.exec_driver_sql`` (a spy: each
    still runs)."""
    seen: list[str] = []
    original = sa.Connection.exec_driver_sql

    def spy(self: sa.Connection, statement: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(statement)
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(sa.Connection, "exec_driver_sql", spy)
    return seen


def test_no_listener__progress_writes_skip_sqlalchemy_s_execution(
    app: acidic.App, through_sqlalchemy: list[str]
) -> None:
    result = app.run(CreateRide(user_id=1, origin="a", target="b"), key="k")

    assert result is not None
    run = app.get("k")
    assert run is not None
    assert run.status == "succeeded"
    assert [e.event for e in run.history] == ["started", "succeeded"] * 3
    assert effect_counts(app.engine, "k") == {"create_ride": 1, "send_receipt": 1}
    assert [s for s in through_sqlalchemy if _is_progress(s)] == []


def test_a_listener__sees_every_progress_write(
    app: acidic.App, through_sqlalchemy: list[str]
) -> None:
    heard: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        heard.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", listener)
    try:
        app.run(CreateRide(user_id=1, origin="a", target="b"), key="k")
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", listener)

    # Each step's end moves the recovery point or finishes the run; charge's start rides
    # on create_ride's commit: three writes of the run's row (four where the dialect
    # appends history rows in a statement of their own, which does not touch the row).
    progress = [s for s in heard if _is_progress(s)]
    assert len(progress) >= 3
    assert progress == [s for s in through_sqlalchemy if _is_progress(s)]
    # The listener is gone: the next run's progress writes skip SQLAlchemy again.
    through_sqlalchemy.clear()
    app.run(CreateRide(user_id=2, origin="a", target="b"), key="k2")
    assert [s for s in through_sqlalchemy if _is_progress(s)] == []


def test_driver_error__is_raised_as_sqlalchemy_raises_it(app: acidic.App) -> None:
    table = sa.Table("driver_path_t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    table.create(app.engine)
    insert = Rendered.of(
        table.insert().values(id=sa.bindparam("id", type_=sa.Integer)), app.engine.dialect
    )
    with app.engine.connect() as conn:
        with conn.begin():
            insert.execute_many(conn, [{"id": 1}])
        with pytest.raises(sa.exc.IntegrityError), conn.begin():
            insert.execute_many(conn, [{"id": 2}, {"id": 1}])
        # The transaction rolled back; the connection goes on.
        with conn.begin():
            assert insert.rowcount(conn, {"id": 3}) == 1
        assert conn.execute(sa.select(table.c.id).order_by(table.c.id)).scalars().all() == [1, 3]
