"""acidic's pre-rendered statements (PostgreSQL: the claim of a key, progress, enqueue,
a worker's claim) store and read back the same instants as the compiled ones, whatever
the session's time zone and the zone of the clock's datetimes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from acidic.testing import Clock
from tests.support import jobs
from tests.support.databases import create_database

TOKYO = dt.timezone(dt.timedelta(hours=9))
START = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.fixture
def tokyo_url(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL database whose sessions run in a time zone that is not UTC."""
    for url in create_database("postgresql", tmp_path):
        parsed = sa.make_url(url)
        options = parsed.query["options"]
        yield parsed.update_query_dict(
            {"options": f"{options} -ctimezone=Asia/Tokyo"}
        ).render_as_string(hide_password=False)


def _history_times(app: acidic.App, key: str) -> list[dt.datetime]:
    run = app.get(key)
    assert run is not None
    return [e.time for e in run.history]


def test_inline_run__times_are_the_clock_s_instants_in_utc(tokyo_url: str) -> None:
    # The clock hands out Tokyo-zoned datetimes: the same instants must come back, in UTC.
    clock = Clock(START)
    app = jobs.make_app(tokyo_url, clock=lambda: clock().astimezone(TOKYO))
    try:
        app.migrate()
        jobs.create_tables(app.engine)
        with app.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW timezone").scalar() == "Asia/Tokyo"
        app.run(jobs.CreateRide(user_id=1, origin="a", target="b"), key="tz")
        run = app.get("tz")
        assert run is not None
        assert run.status == "succeeded"
        assert run.created_at == START
        assert run.created_at.tzinfo == dt.UTC
        assert run.finished_at == START
        times = _history_times(app, "tz")
        assert len(times) == 6
        assert all(t == START and t.tzinfo == dt.UTC for t in times)
    finally:
        app.close()


def test_worker_claim__lock_expiry_is_clock_plus_timeout(tokyo_url: str) -> None:
    clock = Clock(START)
    app = jobs.make_app(tokyo_url, clock=clock, lock_timeout=45)
    try:
        app.migrate()
        jobs.create_tables(app.engine)
        app.enqueue(jobs.CreateRide(user_id=1, origin="a", target="b"), key="tz-q")
        claimed = app._store.claim_due(
            "default",
            ["CreateRide"],
            1,
            clock=lambda: clock().astimezone(TOKYO),
            lock_timeout=lambda job: 45.0,
        )
        assert [r.key for r in claimed] == ["tz-q"]
        row = claimed[0]
        assert row.locked_at == START
        assert row.locked_at.tzinfo == dt.UTC
        assert row.lock_expires_at == START + dt.timedelta(seconds=45)
        assert row.lock_expires_at is not None
        assert row.lock_expires_at.tzinfo == dt.UTC
        assert row.created_at == START
        assert row.created_at.tzinfo == dt.UTC
        assert (row.status, row.attempts, row.lock_token is not None) == ("running", 1, True)
        stored = app.get("tz-q")
        assert stored is not None
        assert stored.status == "running"
    finally:
        app.close()
