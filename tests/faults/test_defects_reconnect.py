"""A long-lived process whose pooled connections the server ended (a restart, a
terminated session) reads at once on a fresh connection (issue 11, defects found in
use: the first ``app.get`` after a PostgreSQL restart raised StorageError).

The shared servers are not restarted: the test ends only its own App's sessions,
found by the ``application_name`` the fixture gives each PostgreSQL test database (on
MariaDB, by the test's own database), from an admin connection.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from tests.support.faults.helpers import terminate
from tests.support.jobs import CreateRide, get_run

pytestmark = pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)

RIDE: dict[str, Any] = {"user_id": 1, "origin": "here", "target": "there"}


def _end_sessions(admin: sa.Engine, database_url: str) -> int:
    """End every session of the App under test (not the admin's); how many."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return terminate(admin, str(url.query["application_name"]))
    with admin.connect() as conn:
        ids = conn.execute(
            sa.text(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = :db AND id <> CONNECTION_ID()"
            ),
            {"db": url.database},
        ).scalars()
        ended = 0
        for session in list(ids):
            conn.execute(sa.text(f"KILL {int(session)}"))
            ended += 1
    return ended


def test_get__after_the_server_ended_pooled_connections_reads_on_a_fresh_one(
    app: acidic.App, database_url: str, admin: sa.Engine
) -> None:
    app.run(CreateRide(**RIDE), key="ride")
    before = get_run(app, "ride")  # the pool now holds an idle connection

    assert _end_sessions(admin, database_url) >= 1
    after = app.get("ride")

    assert after is not None
    assert (after.status, after.result, after.history) == (
        "succeeded",
        before.result,
        before.history,
    )


def test_run__a_finished_key_after_the_server_ended_pooled_connections_returns_its_result(
    app: acidic.App, database_url: str, admin: sa.Engine
) -> None:
    result = app.run(CreateRide(**RIDE), key="ride")
    get_run(app, "ride")

    assert _end_sessions(admin, database_url) >= 1
    if app.engine.dialect.name == "postgresql":
        # There, a claim starts with a write (INSERT unless the key exists), and writes
        # are not retried: the caller sees the error once, as before.
        with pytest.raises(acidic.StorageError):
            app.run(CreateRide(**RIDE), key="ride")

    assert app.run(CreateRide(**RIDE), key="ride") == result
