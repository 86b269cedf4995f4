"""PostgreSQL stopped while an inline ``app.run`` is inside a transactional step, and
started again only after the step ended: acidic can neither commit the step nor record
its failure. The documented outcome: the step's error leaves ``app.run`` with a note
saying the failure could not be recorded, the run stays ``running`` until its lock is
stale, and the next ``app.run`` of the key then finishes it, its effect once.

tests/test_worker_restart.py restarts PostgreSQL under worker processes (their
failures are recorded once the server is back); this is the inline path where the
server is still down when acidic tries to record the failure. The server stopped is
the suite's private cluster (``private_postgresql``, see tests/conftest.py), never the
server of ``ACIDIC_TEST_POSTGRESQL``.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from tests.support import procs
from tests.support.faults.helpers import admin_engine, sessions, with_application_name
from tests.support.faults.pg_jobs import SleepInTx
from tests.support.jobs import effect_counts, get_run
from tests.support.pg_cluster import PrivateCluster

pytestmark = [pytest.mark.private_postgresql, pytest.mark.parametrize("backend", ["postgresql"])]

LOCK_TIMEOUT = 2.0


class UndocumentedError(AssertionError):
    """app.run raised something else than the documented error."""


@pytest.fixture
def admin(database_url: str, private_postgresql: PrivateCluster) -> Iterator[sa.Engine]:
    engine = admin_engine(database_url)
    try:
        yield engine
    finally:
        private_postgresql.ensure_running()
        engine.dispose()


def test_pg_down__inline_step_whose_failure_cannot_be_recorded(
    app: acidic.App, database_url: str, admin: sa.Engine, private_postgresql: PrivateCluster
) -> None:
    key = "pg-down-inline"
    name = "acidic_victim_pg_down"
    victim = acidic.App(with_application_name(database_url, name), lock_timeout=LOCK_TIMEOUT)
    victim.job(name="SleepInTx")(SleepInTx)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = victim.run(SleepInTx(where="python", seconds=3.0), key=key)
        except BaseException as exc:
            outcome["error"] = exc

    try:
        thread = threading.Thread(target=target)
        thread.start()
        procs.wait_for(
            lambda: sessions(admin, name, "idle in transaction", "INSERT INTO effects%") == 1,
            "the step",
            30,
        )
        private_postgresql.stop()
        try:
            thread.join(60)  # the step ends while the server is down
            assert not thread.is_alive()
        finally:
            private_postgresql.start()
        private_postgresql.ensure_running()
        app.engine.dispose()

        error = outcome.get("error")
        assert error is not None, outcome
        shown = "".join(traceback.format_exception(error))
        notes = " ".join(getattr(error, "__notes__", []))
        stuck = get_run(app, key)
        assert (stuck.status, stuck.recovery_point, stuck.attempts) == ("running", "work", 1)
        assert stuck.history == []  # nothing of the step committed, not even its start
        assert effect_counts(app.engine, key) == {}

        deadline = time.monotonic() + 30
        while True:
            try:
                result = victim.run(SleepInTx(where="python", seconds=3.0), key=key)
                break
            except acidic.KeyLockedError:
                assert time.monotonic() < deadline, "the run stayed locked"
                time.sleep(0.1)
    finally:
        victim.close()
    assert result == 2
    done = get_run(app, key)
    assert (done.status, done.attempts, done.error) == ("succeeded", 2, None)
    assert procs.events(done) == [("work", "started", 2), ("work", "succeeded", 2)]
    assert effect_counts(app.engine, key) == {"work": 1}
    # Last, so that the recovery above is checked whatever the error was.
    if not (isinstance(error, acidic.StorageError) and "could not record" in notes):
        raise UndocumentedError(shown)
