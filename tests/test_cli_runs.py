"""``acidic runs``, ``acidic stats`` and ``acidic prune`` on each database, against runs
made by real jobs (:mod:`tests.support.dashboard.ops_app`). The commands run in-process
(:func:`tests.support.cli.invoke_cli`), except the ones that answer a prompt on a
terminal: the real console script on a pseudo-terminal."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import acidic
from tests.support.cli import ACIDIC, invoke_cli
from tests.support.dashboard import ops_app
from tests.support.dashboard.helpers import seed
from tests.support.jobs import get_run

ROOT = Path(__file__).resolve().parents[1]
APP = "tests.support.dashboard.ops_app:app"


@pytest.fixture
def seeded(database_url: str) -> Iterator[acidic.App]:
    app = ops_app.make_app(database_url)
    app.migrate()
    seed(app)
    try:
        yield app
    finally:
        app.close()


def cli(app: acidic.App, *args: str) -> subprocess.CompletedProcess[str]:
    url = app.engine.url.render_as_string(hide_password=False)
    return invoke_cli(*args, url=url, cwd=ROOT)


def cli_json(app: acidic.App, *args: str) -> object:
    done = cli(app, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def keys_of(listing: object) -> list[str]:
    assert isinstance(listing, dict)
    return [r["key"] for r in listing["runs"]]


def test_runs_list__filters_pages_and_prints_a_table(seeded: acidic.App) -> None:
    failed = cli_json(seeded, "runs", "list", "--status", "failed")
    assert keys_of(failed) == ["flaky-1", "flaky-0"]  # newest first
    assert isinstance(failed, dict)
    assert failed["total"] == 2
    assert failed["runs"][0]["error"]["type"] == "builtins.ValueError"

    mail = cli_json(
        seeded,
        "runs",
        "list",
        "--job",
        "Ride",
        "--queue",
        "mail",
        "--status",
        "halted,pending",
        "--since",
        "1h",
    )
    assert keys_of(mail) == ["queued-ride"]

    first = cli_json(seeded, "runs", "list", "--key-prefix", "ride-", "--limit", "2")
    assert isinstance(first, dict)
    assert keys_of(first) == ["ride-2", "ride-1"]
    assert first["total"] == 3
    cursor = first["next_cursor"]
    assert isinstance(cursor, str)
    rest = cli_json(seeded, "runs", "list", "--key-prefix", "ride-", "--cursor", cursor)
    assert keys_of(rest) == ["ride-0"]
    assert isinstance(rest, dict)
    assert rest["next_cursor"] is None

    table = cli(seeded, "runs", "list")
    assert table.returncode == 0, table.stderr
    for key in ("ride-0", "flaky-1", "parked-1", "queued-ride"):
        assert key in table.stdout
    assert "7 of 7 matching run(s)" in table.stdout
    assert "ValueError: partner refused request 1" in table.stdout


def test_runs_show__redacts_and_shows_timeline_result_and_traceback(seeded: acidic.App) -> None:
    shown = cli_json(seeded, "runs", "show", "ride-1", "--app", APP)
    assert isinstance(shown, dict)
    assert shown["args"] == {"user_id": 1, "card": "[redacted]"}
    assert shown["ctx"] == {"token": "[redacted]", "seat": "12A", "charged": True}
    assert shown["result"] == {"ride": 1, "seat": "12A"}
    assert [(s["step"], s["outcome"]) for s in shown["timeline"]] == [
        ("book", "succeeded"),
        ("charge", "succeeded"),
        ("receipt", "succeeded"),
    ]
    assert all(s["duration_s"] >= 0 for s in shown["timeline"])

    failed = cli(seeded, "runs", "show", "flaky-0", "--app", APP)
    assert failed.returncode == 0, failed.stderr
    out = failed.stdout
    assert "error in step call_partner" in out
    assert "Traceback (most recent call last)" in out
    assert "ValueError: partner refused request 0" in out
    assert "4242-" not in out

    missing = cli(seeded, "runs", "show", "no-such-key")
    assert missing.returncode == 3
    assert missing.stderr.strip() == "acidic: error: no run has the key 'no-such-key'"


def test_runs_retry__asks_first_then_retries_in_bulk_and_the_runs_succeed(
    seeded: acidic.App,
) -> None:
    unasked = cli(seeded, "runs", "retry", "--job", "Flaky")
    assert unasked.returncode == 2
    assert "2 run(s) match" in unasked.stderr
    assert "--yes" in unasked.stderr
    assert get_run(seeded, "flaky-0").status == "failed"

    done = cli(seeded, "runs", "retry", "--job", "Flaky", "--yes", "--app", APP)
    assert done.returncode == 0, done.stderr
    assert "retried 2 of 2 run(s)" in done.stdout
    for key in ("flaky-0", "flaky-1"):
        assert get_run(seeded, key).status == "pending"
        seeded.run(ops_app.Flaky(n=int(key[-1])), key=key)
        run = get_run(seeded, key)
        assert run.status == "succeeded"
        assert run.result == {"n": int(key[-1]), "attempt": 2}

    refused = cli(seeded, "runs", "retry", "ride-1")
    assert refused.returncode == 4
    assert "it is succeeded; retry applies to failed runs" in refused.stderr


def test_runs_resume_from_step_and_cancel(seeded: acidic.App) -> None:
    unknown = cli(seeded, "runs", "resume", "parked-1", "--from-step", "nope", "--app", APP)
    assert unknown.returncode == 2
    assert "'nope'" in unknown.stderr
    assert "['start', 'wait_for_go', 'done']" in unknown.stderr

    resumed = cli(seeded, "runs", "resume", "parked-1", "--from-step", "start", "--app", APP)
    assert resumed.returncode == 0, resumed.stderr
    run = get_run(seeded, "parked-1")
    assert (run.status, run.recovery_point) == ("pending", "start")

    cancelled = cli_json(seeded, "runs", "cancel", "queued-ride")
    assert isinstance(cancelled, dict)
    assert cancelled["run"]["status"] == "cancelled"
    bulk = cli_json(seeded, "runs", "cancel", "--status", "failed,pending", "--yes")
    assert isinstance(bulk, dict)
    assert sorted(bulk["done"]) == ["flaky-0", "flaky-1", "parked-1"]
    assert get_run(seeded, "flaky-0").status == "cancelled"
    assert get_run(seeded, "ride-0").status == "succeeded"


def test_stats_and_prune(seeded: acidic.App) -> None:
    stats = cli_json(seeded, "stats")
    assert isinstance(stats, dict)
    assert stats["total"] == 7
    assert stats["by_status"]["succeeded"] == 3
    assert stats["by_status"]["failed"] == 2
    queues = {q["queue"]: q["by_status"] for q in stats["by_queue"]}
    assert queues["mail"] == {"pending": 1}
    assert stats["succeeded"] == 3
    assert stats["errors"] == 2
    assert stats["failure_rate"] == pytest.approx(0.4)

    kept = cli(seeded, "prune", "--older-than", "7d")
    assert kept.returncode == 0, kept.stderr
    assert "pruned 0 run(s)" in kept.stdout
    pruned = cli(seeded, "prune", "--older-than", "0s")
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 3 run(s)" in pruned.stdout
    assert seeded.get("ride-0") is None
    assert get_run(seeded, "flaky-0").status == "failed"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("runs", "list", "--status", "lost"), "'lost' is not a status"),
        (("runs", "list", "--since", "yesterday"), "neither a duration"),
        (("prune", "--older-than", "a week"), "is not a duration"),
        (("runs", "cancel"), "give a KEY, filters"),
        (("runs", "resume", "--job", "X", "--from-step", "a"), "--from-step needs one KEY"),
        (("runs", "list", "--app", APP, "--database-url", "sqlite:///x.db"), "not both"),
    ],
)
def test_cli_runs__bad_input_exits_2_naming_the_problem(
    args: tuple[str, ...], says: str, tmp_path: Path
) -> None:
    done = invoke_cli(*args, url=f"sqlite:///{tmp_path / 'none.db'}", cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr


def test_resume_from_step__reruns_a_failed_run_from_an_earlier_step(database_url: str) -> None:
    app = ops_app.make_app(database_url)
    try:
        app.migrate()
        with pytest.raises(ValueError, match="partner refused"):
            app.run(ops_app.Flaky(n=5), key="f")
        with pytest.raises(acidic.UnknownRecoveryPointError, match="'nope'"):
            app.resume("f", from_step="nope")
        run = app.resume("f", from_step="prepare")
        assert (run.status, run.recovery_point) == ("pending", "prepare")
        assert app.run(ops_app.Flaky(n=5), key="f") == {"n": 5, "attempt": 2}
        steps = [(e.step, e.event) for e in get_run(app, "f").history if e.attempt == 2]
        assert steps[0] == ("prepare", "started")
        with pytest.raises(acidic.AcidicError, match="cannot resume key 'f': it is succeeded"):
            app.resume("f", from_step="prepare")
    finally:
        app.close()


def test_job_redact__must_be_a_list_of_names() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="redact must be a list"):

        class Bad(acidic.Job):
            x: int
            redact = "x"  # type: ignore[assignment]  # the wrong type, on purpose

            @acidic.step
            def s(self, tx: object) -> None: ...


def test_admin__hides_arguments_and_context_of_jobs_it_does_not_know(seeded: acidic.App) -> None:
    """What the dashboard relies on: without the job's class, its redact list is unknown."""
    from acidic._admin import Admin

    url = seeded.engine.url.render_as_string(hide_password=False)
    with acidic.App(url) as bare:
        hidden = Admin(bare, hide_unregistered=True).detail("ride-1")
        shown = Admin(seeded, hide_unregistered=True).detail("ride-1")
    assert hidden is not None
    assert shown is not None
    assert (hidden.args, hidden.ctx) == (None, None)
    assert hidden.hidden_reason is not None
    assert "not registered" in hidden.hidden_reason
    assert "4242-secret" not in repr(hidden.to_json())
    assert shown.args == {"user_id": 1, "card": "[redacted]"}


def test_admin__since_and_key_prefix_are_exact(seeded: acidic.App) -> None:
    import datetime as dt

    from acidic._admin import Admin, RunFilter

    admin = Admin(seeded)
    now = dt.datetime.now(dt.UTC)
    assert admin.count_runs(RunFilter(since=now + dt.timedelta(minutes=5))) == 0
    assert admin.count_runs(RunFilter(since=now - dt.timedelta(hours=1))) == 7
    assert admin.count_runs(RunFilter(key_prefix="ride-")) == 3
    assert admin.count_runs(RunFilter(key_prefix="RIDE-")) == 0
    assert admin.count_runs(RunFilter(key_prefix="ride_")) == 0  # no LIKE wildcards
    assert admin.count_runs(RunFilter(queues=(None,))) == 5


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(("answer", "code", "status"), [("n", 1, "failed"), ("y", 0, "pending")])
def test_runs_retry__asks_on_a_terminal(
    seeded: acidic.App, answer: str, code: int, status: str
) -> None:
    """On a terminal, a bulk action asks first; only "y" acts."""
    import os
    import pty

    url = seeded.engine.url.render_as_string(hide_password=False)
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(ACIDIC), "runs", "retry", "--job", "Flaky"],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ACIDIC_DATABASE_URL": url},
            cwd=ROOT,
            text=True,
        )
        os.write(controller, f"{answer}\n".encode())
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert proc.returncode == code, out
    assert "Retry 2 run(s) (status failed, job Flaky)? [y/N]" in out
    assert get_run(seeded, "flaky-0").status == status


def test_admin__key_contains_is_an_exact_substring_search(seeded: acidic.App) -> None:
    """The dialect's substring search on each database: case counts, and ``%`` and
    ``_`` are plain characters (LIKE would ignore case on SQLite and treat them as
    wildcards)."""
    from acidic._admin import Admin, RunFilter

    admin = Admin(seeded)

    def found(text: str) -> set[str]:
        return {r.key for r in admin.list_runs(RunFilter(key_contains=text)).runs}

    assert found("lak") == {"flaky-0", "flaky-1"}
    assert found("LAK") == set()
    assert found("-1") == {"ride-1", "flaky-1", "parked-1"}
    assert found("_") == set()
    assert found("%") == set()
    assert found("ride") == {"ride-0", "ride-1", "ride-2", "queued-ride"}
    assert admin.count_runs(RunFilter(key_contains="y-", statuses=("failed",))) == 2


@pytest.mark.parametrize("backend", ["sqlite"])
def test_admin__bad_arguments_are_value_or_type_errors_naming_them(seeded: acidic.App) -> None:
    import datetime as dt

    from acidic._admin import Admin, RunFilter

    admin = Admin(seeded)
    hour = dt.timedelta(hours=1)
    value_errors: list[tuple[Callable[[], object], str]] = [
        (lambda: admin.list_runs(limit=0), "limit must be from 1 to 1000"),
        (lambda: admin.list_runs(cursor="next"), "invalid cursor 'next'"),
        (lambda: admin.stats(dt.timedelta(0)), "window must be longer than 0"),
        (lambda: admin.stats(hour, buckets=0), "buckets must be from 1 to 200"),
        (lambda: RunFilter(statuses=("lost",)), "unknown status 'lost'"),
        (lambda: RunFilter(since=dt.datetime(2025, 1, 1)), "timezone-aware"),
        (lambda: admin.distinct("status"), "'job' or 'queue'"),  # type: ignore[arg-type]
    ]
    for call, says in value_errors:
        with pytest.raises(ValueError, match=says) as refused:
            call()
        assert isinstance(refused.value, acidic.AcidicError)
    type_errors: list[tuple[Callable[[], object], str]] = [
        (lambda: admin.list_runs(limit="5"), "limit must be an int"),  # type: ignore[arg-type]
        (lambda: admin.list_runs(cursor=5), "cursor must be a str"),  # type: ignore[arg-type]
        (lambda: admin.stats(3600), "window must be a datetime.timedelta"),  # type: ignore[arg-type]
        (lambda: admin.stats(hour, buckets=True), "buckets must be an int"),
        (lambda: RunFilter(statuses="failed"), "statuses must be a tuple"),  # type: ignore[arg-type]
        (lambda: RunFilter(since="1h"), "since must be a datetime"),  # type: ignore[arg-type]
    ]
    for call, says in type_errors:
        with pytest.raises(TypeError, match=says) as mistyped:
            call()
        assert isinstance(mistyped.value, acidic.AcidicError)


def test_admin_stats__estimates_nothing_below_the_threshold(seeded: acidic.App) -> None:
    """``estimate=True`` (the dashboard's overview) counts exactly while no status has
    more than ESTIMATE_OVER runs, on every database."""
    from acidic._admin import Admin

    exact = Admin(seeded).stats()
    estimated = Admin(seeded).stats(estimate=True)
    assert estimated.estimated == frozenset()
    assert (estimated.by_status, estimated.by_queue) == (exact.by_status, exact.by_queue)
    assert estimated.to_json()["estimated"] == []


def test_job_stats__percentiles_are_the_nearest_rank_on_every_database(
    seeded: acidic.App,
) -> None:
    """PostgreSQL computes p50/p95 itself (percentile_disc): the same values as the
    nearest-rank method over the same sample elsewhere."""
    import datetime as dt

    from acidic._admin import Admin
    from acidic._admin._insights import DURATION_SAMPLE, percentile

    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(hours=1)
    queries = seeded.manager.queries
    spans: dict[str, list[float]] = {}
    for job, claimed, finished in queries.durations(start, now, limit=DURATION_SAMPLE):
        spans.setdefault(job, []).append(max((finished - claimed).total_seconds(), 0.0))
    assert spans
    stats = {s.job: s for s in Admin(seeded).job_stats(dt.timedelta(hours=1), now=now)}
    for job, values in spans.items():
        assert (stats[job].p50, stats[job].p95, stats[job].sampled) == (
            percentile(values, 0.5),
            percentile(values, 0.95),
            len(values),
        )
