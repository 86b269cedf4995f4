"""PostgreSQL restarts under running workers: nothing is lost, nothing runs twice.

The server restarted is the suite's private cluster (``private_postgresql``, see
tests/conftest.py), never the server of ``ACIDIC_TEST_POSTGRESQL``.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from tests.support import worker_app as wa
from tests.support.pg_cluster import PrivateCluster

pytestmark = pytest.mark.private_postgresql

RUNS = 200
#: Seconds each run holds its transaction open, so that the restart finds steps running.
PAUSE = 0.1
LOCK_TIMEOUT = 2.0


def _status_counts(app: acidic.App) -> dict[str, int]:
    try:
        return wa.status_counts(app)
    except sa.exc.OperationalError:  # the server is restarting
        return {}


@pytest.fixture
def app(database_url: str) -> Iterator[acidic.App]:
    with wa.migrated(database_url) as application:
        yield application


@pytest.mark.parametrize("backend", ["postgresql"])
def test_worker__postgresql_restart_loses_nothing_and_runs_nothing_twice(
    app: acidic.App, database_url: str, private_postgresql: PrivateCluster, tmp_path: Path
) -> None:
    exec_log = tmp_path / "executions"
    exec_log.mkdir()
    with wa.worker_processes() as workers:
        try:
            for i in range(2):
                workers.append(
                    wa.spawn_worker(
                        database_url,
                        tmp_path / f"worker-{i}.log",
                        concurrency=2,
                        poll_interval=0.5,
                        lock_timeout=LOCK_TIMEOUT,
                        exec_log=exec_log,
                    )
                )
            for worker in workers:
                worker.wait_started(timeout=60)
            with app.engine.begin() as conn:
                for i in range(RUNS):
                    app.enqueue(wa.Drain(n=i, pause=PAUSE), key=f"restart-{i:04d}", connection=conn)
            wa.wait_for(
                lambda: _status_counts(app).get("succeeded", 0) >= RUNS // 8,
                "an eighth of the runs to succeed",
                60,
                0.02,
            )
            private_postgresql.restart()
            restarted_us = wa.now_us()
        finally:
            private_postgresql.ensure_running()
        app.engine.dispose()  # the pools' connections died with the server
        wa.dispose_engines()
        done_at_restart = _status_counts(app).get("succeeded", 0)
        assert done_at_restart < RUNS, "the restart came too late to prove anything"

        wa.wait_for(
            lambda: _status_counts(app) == {"succeeded": RUNS},
            f"all {RUNS} runs to succeed after the restart",
            90,
            0.2,
            detail=lambda: (_status_counts(app), [w.output()[-3000:] for w in workers]),
        )
        assert all(w.alive() for w in workers), [w.output()[-3000:] for w in workers]
        for worker in workers:
            worker.signal_group(signal.SIGTERM)
        codes = [worker.wait(30) for worker in workers]
        assert codes == [0, 0], [w.output()[-3000:] for w in workers]

    rows = wa.effects(app)
    per_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        per_key[row["run_key"]].append(row)
    assert len(per_key) == RUNS  # none lost
    assert {k: len(v) for k, v in per_key.items() if len(v) != 1} == {}  # none twice
    # Both workers reconnected: each committed work after the restart.
    after = {r["pid"] for r in rows if r["started_us"] > restarted_us}
    assert after == {w.pid for w in workers}
    # Executions cut short by the restart were repeated, never concurrently.
    spans = wa.executions(exec_log)
    assert sorted(spans) == sorted(per_key)
    assert wa.overlaps(spans) == []
    repeated = sum(len(found) - 1 for found in spans.values())
    print(f"{done_at_restart} of {RUNS} done at the restart; {repeated} executions repeated")
