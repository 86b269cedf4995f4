"""Operating many runs from the dashboard, over real HTTP on each database: bulk
actions in batches, search in keys, arguments and errors, per-job statistics, the
schedule of waiting runs."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

import acidic
from acidic._admin import Admin, BulkAction, RunFilter
from tests.support.dashboard import ops_app
from tests.support.dashboard.client import Client, keys_in
from tests.support.dashboard.helpers import copy_run, status_of

ADMIN = {"X-User": "admin"}
BULK = {"X-Acidic-Bulk": "1"}


def _statuses(app: acidic.App, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in Admin(app).list_runs(RunFilter(key_prefix=prefix), limit=1000).runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    return counts


def test_bulk_retry__confirmation_states_the_count_and_steps_finish_in_batches(
    mounted: tuple[str, acidic.App],
) -> None:
    base, app = mounted
    copy_run(app, "flaky-0", [f"batch-{i:03d}" for i in range(250)])
    admin = Client(base, ADMIN)

    listing = admin.send("/runs?status=failed&q=batch-")
    # A search counts up to one page; the confirmation below counts exactly.
    assert re.search(r'<span id="total">more than 50</span>', listing.body)
    assert re.search(r'<span id="total">252</span>', admin.send("/runs?status=failed").body)
    # The list's count stops early on a big table; the confirmation below counts exactly.
    assert Admin(app).count_runs(RunFilter(key_prefix="batch-"), at_most=100) == 101
    assert 'data-bulk-action="retry"' in listing.body
    assert 'data-bulk-action="cancel"' in listing.body
    assert 'data-bulk-action="resume"' not in listing.body  # resume does not apply to failed

    confirm = admin.send("/runs/bulk?action=retry&status=failed&q=batch-")
    assert confirm.status == 200
    assert re.search(r'Retry <strong id="bulk-count">250</strong> run\(s\)\?', confirm.body)
    upto = re.search(r'name="upto" value="(\d+)"', confirm.body)
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', confirm.body)
    assert upto
    assert token
    # Stored after the confirmation: not part of the action.
    copy_run(app, "flaky-0", ["batch-late"])

    form = {"action": "retry", "status": "failed", "q": "batch-", "upto": upto[1], "after": "0"}
    assert admin.send("/runs/bulk", form, BULK).status == 403  # no CSRF token
    assert _statuses(app, "batch-") == {"failed": 251}

    form["csrf_token"] = token[1]
    done, steps, after = 0, 0, "0"
    while True:
        answer: dict[str, Any] = admin.json("/runs/bulk", {**form, "after": after}, BULK)
        done += answer["done"]
        steps += 1
        after = str(answer["after"])
        assert answer["skipped"] == []
        if answer["finished"]:
            break
        assert steps < 50
    assert done == 250
    assert _statuses(app, "batch-") == {"pending": 250, "failed": 1}
    assert status_of(app, "batch-late") == "failed"
    retried = app.get("batch-123")
    assert retried is not None
    assert retried.status == "pending"
    assert retried.queue == "default"

    # Again: nothing left to retry, and the confirmation says so.
    again = admin.send("/runs/bulk?action=retry&status=failed&q=batch-0")
    assert 'id="bulk-none"' in again.body


def test_bulk_cancel__without_javascript_continues_until_done(
    mounted: tuple[str, acidic.App],
) -> None:
    base, app = mounted
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    for i in range(3):
        app.enqueue(ops_app.Ride(user_id=100 + i, card="4242-x"), key=f"later-{i}", run_at=later)
    admin = Client(base, ADMIN)
    confirm = admin.send("/runs/bulk?action=cancel&job=Ride&status=pending&q=later-")
    assert re.search(r'Cancel <strong id="bulk-count">3</strong>', confirm.body)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', confirm.body))
    result = admin.send("/runs/bulk", fields)
    assert result.status == 200
    assert "Done:" in result.body
    assert "3 of 3 run(s) cancelled" in result.body
    assert _statuses(app, "later-") == {"cancelled": 3}
    assert status_of(app, "queued-ride") == "pending"  # pending but not matching the search


def test_bulk_action__a_run_changed_after_its_batch_was_read_is_skipped_with_the_apps_reason(
    mounted: tuple[str, acidic.App],
) -> None:
    """Another operator cancels a run between the read of its batch and its turn: the
    App refuses the retry (RunStateError) and the step reports it as skipped."""
    _, app = mounted
    copy_run(app, "flaky-0", [f"race-{i}" for i in range(5)])
    bulk = BulkAction(app, "retry", RunFilter(key_prefix="race-"), batch=10)
    plan = bulk.plan()
    assert plan.count == 5

    cancelled: list[str] = []

    def after_read(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Right after the batch's keys are read (once), before the first retry.
        if (
            not cancelled
            and statement.lstrip().upper().startswith("SELECT")
            and "LIMIT" in (statement.upper())
            and "acidic_runs.id >" in statement
        ):
            cancelled.append("race-3")
            app.cancel("race-3")

    sa.event.listen(app.engine, "after_cursor_execute", after_read)
    try:
        step = bulk.step(after=0, upto=plan.upto)
    finally:
        sa.event.remove(app.engine, "after_cursor_execute", after_read)
    assert cancelled == ["race-3"]
    assert step.finished
    assert step.done == 4
    assert [(s.key, s.reason) for s in step.skipped] == [
        ("race-3", "cannot retry key 'race-3': it is cancelled; retry accepts a run that is failed")
    ]
    assert _statuses(app, "race-") == {"pending": 4, "cancelled": 1}


def test_search__keys_arguments_and_error_text_but_never_redacted_arguments(
    mounted: tuple[str, acidic.App],
) -> None:
    base, _ = mounted
    admin = Client(base, ADMIN)
    assert sorted(keys_in(admin.send("/runs?q=partner+refused+request+1").body)) == ["flaky-1"]
    assert sorted(keys_in(admin.send("/runs?q=ValueError").body)) == ["flaky-0", "flaky-1"]
    # Arguments as stored (compact JSON): Flaky and Parked redact nothing.
    assert sorted(keys_in(admin.send('/runs?q="n":1').body)) == ["flaky-1", "parked-1"]
    assert sorted(keys_in(admin.send("/runs?q=parked").body)) == ["parked-1"]
    # Ride redacts its card: a search must not confirm a guess of it.
    assert keys_in(admin.send("/runs?q=4242-secret-1").body) == []
    assert keys_in(admin.send('/runs?q="user_id":1').body) == []
    # Combined with the other filters.
    assert keys_in(admin.send("/runs?q=ValueError&status=succeeded").body) == []


def test_job_stats_and_schedule_pages(mounted: tuple[str, acidic.App]) -> None:
    base, app = mounted
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    app.enqueue(ops_app.Flaky(n=40), key="soon-1", run_at=soon)
    app.enqueue(ops_app.Flaky(n=41), key="soon-2", run_at=soon + dt.timedelta(days=2))
    admin = Client(base, ADMIN)

    jobs = admin.send("/jobs?window=1h")
    assert jobs.status == 200
    row = re.search(r'<tr data-job="Flaky">(.*?)</tr>', jobs.body, re.S)
    assert row is not None
    assert re.search(r'class="num ended-failed"><a [^>]*>2</a>', row[1])
    assert 'class="num failure-rate">100.0%' in row[1]
    assert 'data-open="pending"' in row[1]
    ride = re.search(r'<tr data-job="Ride">(.*?)</tr>', jobs.body, re.S)
    assert ride is not None
    assert 'class="num ended-succeeded">3<' in ride[1]
    assert 'class="num failure-rate">0.0%' in ride[1]
    assert re.search(r'class="num p50">\d+ ms<', ride[1])
    assert 'data-open="halted"' in jobs.body  # parked-1

    scheduled = admin.send("/scheduled")
    assert scheduled.status == 200
    assert keys_in(scheduled.body) == ["queued-ride", "soon-1", "soon-2"]
    counts = dict(re.findall(r'data-period="([^"]+)"><span class="count">(\d+)<', scheduled.body))
    assert counts == {
        "overdue": "1",
        "next minute": "0",
        "next hour": "1",
        "next 24 h": "0",
        "next 7 days": "1",
        "later": "0",
    }
    assert "overdue" in scheduled.body
    schedule = re.search(r'<tr data-schedule="nightly-flaky">(.*?)</tr>', scheduled.body, re.S)
    assert schedule is not None
    assert "<code>0 3 * * *</code> (Europe/Paris)" in schedule[1]
    assert "not enqueued" in schedule[1]
    next_tick = app.schedules["nightly-flaky"].next_after(dt.datetime.now(dt.UTC))
    assert next_tick.isoformat() in schedule[1]
