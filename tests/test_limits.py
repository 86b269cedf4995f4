"""Concurrency and rate limits: a job's ``Limit`` per key, a queue's concurrency and
rate, enforced where runs are claimed, across worker processes; a run over its limit
waits and is never failed for it."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from acidic._storage import RunRow
from acidic.testing import Clock
from tests.support import limits_app, worker_app
from tests.support.worker_app import spawn_worker, wait_for, worker_processes

# -- definitions -----------------------------------------------------------------------------


def test_limit__a_format_key_must_name_fields_of_the_job() -> None:
    with pytest.raises(acidic.JobDefinitionError, match=r"names \['account'\]"):

        class Bad(acidic.Job):
            user: int
            concurrency = acidic.Limit("user:{account}", 1)

            @acidic.step
            def work(self, tx: sa.Connection) -> None:
                pass


def test_limit_queue_and_rate__refuse_bad_values() -> None:
    with pytest.raises(acidic.InvalidArgumentError, match="max must be an int >= 1"):
        acidic.Limit("k", 0)
    with pytest.raises(acidic.InvalidArgumentError, match="concurrency must be an int >= 1"):
        acidic.Queue(concurrency=0)
    with pytest.raises(acidic.InvalidArgumentError, match="positive timedelta"):
        acidic.Rate(5, per=dt.timedelta(0))
    with pytest.raises(acidic.InvalidArgumentError, match=r"acidic\.Queue"):
        acidic.App("sqlite://", queues={"emails": 10})  # type: ignore[dict-item]


def test_limit__a_key_function_gives_the_key() -> None:
    class ByRegion(acidic.Job):
        region: str
        concurrency = acidic.Limit(lambda job: f"region:{job.region.lower()}", 2)

        @acidic.step
        def work(self, tx: sa.Connection) -> None:
            pass

    limit = ByRegion.concurrency
    assert limit is not None
    assert limit.key_of(ByRegion(region="EU")) == "region:eu"


# -- claims, in one process ------------------------------------------------------------------


@pytest.fixture
def app(database_url: str) -> acidic.App:
    application = limits_app.make_app(database_url)
    application.migrate()
    worker_app.create_tables(application)
    return application


HELD: dict[str, RunRow] = {}


def claim(app: acidic.App, queue: str, n: int) -> list[str]:
    """Claim as a worker does; the claimed rows are kept to be finished by :func:`finish`."""
    rows = app.manager.claim_due(queue, list(app.jobs), n)
    HELD.update({row.key: row for row in rows})
    return [row.key for row in rows]


def finish(app: acidic.App, key: str) -> None:
    """Execute a run claimed by :func:`claim`, as its worker would."""
    app.manager.execute_claimed(HELD.pop(key), should_stop=lambda: False)


def test_claims__one_run_per_key_holds_a_lock_and_the_next_waits_for_the_slot(
    app: acidic.App,
) -> None:
    try:
        for n in range(3):
            app.enqueue(limits_app.PerUser(user=1, n=n), key=f"u1-{n}")
        app.enqueue(limits_app.PerUser(user=2, n=0), key="u2-0")
        assert sorted(claim(app, "default", 10)) == ["u1-0", "u2-0"]
        assert claim(app, "default", 10) == []  # user 1's slot is held
        finish(app, "u1-0")
        assert claim(app, "default", 10) == ["u1-1"]
        run = app.get("u1-2")
        assert run is not None
        assert run.status == acidic.RunStatus.PENDING  # waiting, never failed
    finally:
        app.close()


def test_claims__a_queue_with_concurrency_three_never_holds_four(app: acidic.App) -> None:
    try:
        for n in range(5):
            app.enqueue(limits_app.Plain(n=n), key=f"p{n}", queue="narrow")
        assert len(claim(app, "narrow", 5)) == 3
        assert claim(app, "narrow", 5) == []
        finish(app, "p0")
        assert claim(app, "narrow", 5) == ["p3"]
    finally:
        app.close()


def test_claims__a_rate_limited_queue_starts_at_most_rate_runs_per_window(
    database_url: str,
) -> None:
    clock = Clock(dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC))
    application = acidic.App(database_url, queues=limits_app.QUEUES, clock=clock)
    application.job(name="Plain")(limits_app.Plain)
    application.migrate()
    try:
        for n in range(30):
            application.enqueue(limits_app.Plain(n=n), key=f"m{n}", queue="metered")
        assert len(claim(application, "metered", 25)) == 20
        clock.advance(0.5)
        assert claim(application, "metered", 25) == []
        clock.advance(0.6)  # the first 20 starts left the one-second window
        assert len(claim(application, "metered", 25)) == 10
    finally:
        application.close()


# -- worker processes -------------------------------------------------------------------------


def overlapping(spans: dict[str, list[tuple[int, int, int]]]) -> list[str]:
    return worker_app.overlaps(spans)


def most_at_once(spans: list[tuple[int, int, int]]) -> int:
    edges = sorted(itertools.chain(((s, 1) for s, _, _ in spans), ((e, -1) for _, e, _ in spans)))
    level = top = 0
    for _, step in edges:
        level += step
        top = max(top, level)
    return top


def run_workers(
    url: str, tmp_path: Path, count: int, enqueue: Sequence[tuple[acidic.Job, str, str]]
) -> acidic.App:
    application = limits_app.make_app(url)
    application.migrate()
    worker_app.create_tables(application)
    for job, key, queue in enqueue:
        application.enqueue(job, key=key, queue=queue)
    with worker_processes() as workers:
        for n in range(count):
            workers.append(
                spawn_worker(
                    url,
                    tmp_path / f"worker-{n}.log",
                    poll_interval=0.05,
                    app_ref="tests.support.limits_app:app",
                )
            )
        wait_for(
            lambda: worker_app.status_counts(application).get("succeeded", 0) == len(enqueue),
            "every run to succeed",
            timeout=240,
            every=0.2,
            detail=lambda: worker_app.status_counts(application),
        )
    return application


def per_user_runs(users: int, runs: int) -> list[tuple[acidic.Job, str, str]]:
    return [(limits_app.PerUser(user=n % users, n=n), f"r{n}", "default") for n in range(runs)]


def check_per_user(application: acidic.App, runs: int) -> None:
    spans = limits_app.spans(application)
    assert sum(len(s) for s in spans.values()) == runs  # each run's step committed once
    assert overlapping(spans) == []


@pytest.mark.slow
def test_workers__never_hold_two_runs_of_one_key_at_once(database_url: str, tmp_path: Path) -> None:
    application = run_workers(database_url, tmp_path, 4, per_user_runs(6, 120))
    try:
        check_per_user(application, 120)
    finally:
        application.close()


@pytest.mark.storm
def test_workers__eight_workers_500_runs_over_20_keys(database_url: str, tmp_path: Path) -> None:
    application = run_workers(database_url, tmp_path, 8, per_user_runs(20, 500))
    try:
        check_per_user(application, 500)
    finally:
        application.close()


@pytest.mark.slow
def test_workers__respect_a_queue_concurrency_and_a_rate(database_url: str, tmp_path: Path) -> None:
    narrow = [(limits_app.Plain(n=n, pause=0.05), f"n{n}", "narrow") for n in range(40)]
    metered = [(limits_app.Plain(n=n, pause=0.0), f"m{n}", "metered") for n in range(50)]
    application = run_workers(database_url, tmp_path, 4, narrow + metered)
    try:
        spans = limits_app.spans(application)
        narrow_spans = [s for k, v in spans.items() if k.startswith("n") for s in v]
        assert most_at_once(narrow_spans) <= 3
        # A start is a claim: each metered run was claimed once, at its last_run_at.
        starts = []
        for _, key, _ in metered:
            run = application.get(key)
            assert run is not None
            assert run.attempts == 1
            assert run.last_run_at is not None
            starts.append(run.last_run_at)
        starts.sort()
        window = dt.timedelta(seconds=1)
        busiest = max(
            sum(1 for other in starts if start <= other < start + window) for start in starts
        )
        assert busiest <= 20, busiest
        assert starts[-1] - starts[0] >= dt.timedelta(seconds=2)  # 50 starts took 3 windows
    finally:
        application.close()
