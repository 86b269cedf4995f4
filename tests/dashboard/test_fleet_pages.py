"""The Workers and Queues pages over real HTTP on each database: a live worker process
and what it holds, pausing and resuming a queue (CSRF-checked), and a run of a job no
live worker knows flagged."""

from __future__ import annotations

import os
import re
import signal

import acidic
from acidic._admin import Admin
from tests.support.dashboard import ops_app
from tests.support.dashboard.client import Client
from tests.support.dashboard.helpers import status_of, wait_for, wait_status, worker

ADMIN = {"X-User": "admin"}


def _queue_row(body: str, name: str) -> str:
    found = re.search(rf'<tr data-queue="{name}"[^>]*>(.*?)</tr>', body, re.S)
    assert found is not None, body[:2000]
    return found[1]


def test_queues__pause_and_resume_with_csrf(mounted: tuple[str, acidic.App]) -> None:
    base, app = mounted
    admin = Client(base, ADMIN)
    page = admin.send("/queues")
    assert page.status == 200
    mail = _queue_row(page.body, "mail")
    assert 'class="num depth">1<' in mail  # queued-ride waits there
    assert "/queues/pause" in mail
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.body)
    assert token is not None

    assert admin.send("/queues/pause", {"name": "mail"}).status == 403  # no CSRF token
    assert "paused" not in _queue_row(admin.send("/queues").body, "mail").split("state")[-1]

    paused = admin.send("/queues/pause", {"name": "mail", "csrf_token": token[1]})
    assert paused.status == 303
    assert paused.location == "/ops/queues?queue=mail&notice=paused"
    after = admin.send(paused.location.removeprefix("/ops"))
    assert "Queue mail: Paused" in after.body
    row = _queue_row(after.body, "mail")
    assert 'status-halted">paused<' in row
    assert "/queues/resume" in row
    assert [q.paused for q in Admin(app).queues() if q.name == "mail"] == [True]
    # The run waiting there says why.
    assert "queue &#39;mail&#39; is paused" in admin.send("/run?key=queued-ride").body

    again = admin.send("/queues/pause", {"name": "mail", "csrf_token": token[1]})
    assert again.location == "/ops/queues?queue=mail&notice=already-paused"
    resumed = admin.send("/queues/resume", {"name": "mail", "csrf_token": token[1]})
    assert resumed.location == "/ops/queues?queue=mail&notice=resumed"
    assert "/queues/pause" in _queue_row(admin.send("/queues").body, "mail")
    bad = admin.send("/queues/pause", {"name": "x" * 101, "csrf_token": token[1]})
    assert bad.status == 400


def test_workers__a_live_worker_its_runs_and_a_job_no_worker_knows(
    mounted: tuple[str, acidic.App], database_url: str
) -> None:
    base, app = mounted
    admin = Client(base, ADMIN)
    assert "No worker has registered" in admin.send("/workers").body
    with worker(database_url) as proc:
        app.enqueue(ops_app.Slow(n=5), key="slow-5")
        wait_status(app, "slow-5", "running", timeout=60)

        def listed() -> str | None:
            body = admin.send("/workers").body
            return body if f":{proc.pid}:" in body and "slow-5" in body else None

        body = wait_for("the worker on the Workers page", listed)
        row = re.search(
            rf'<tr data-worker="([^"]*:{proc.pid}:[^"]*)" class="live">(.*?)</tr>', body, re.S
        )
        assert row is not None
        assert 'href="/ops/run?key=slow-5"' in row[2]
        assert re.search(r"<td class=\"jobs\">[^<]*Slow", row[2])
        run = admin.send("/run?key=slow-5").body
        assert f'<dd id="run-owner">{row[1]}</dd>' in run
        os.kill(proc.pid, signal.SIGKILL)  # no need to wait for its two-minute step

    # A due run of a job that no live worker knows: flagged on both pages.
    stranger = acidic.App(database_url, queues=ops_app.QUEUES)
    try:

        @stranger.job(name="Stranger")
        class Stranger(acidic.Job):
            n: int

            @acidic.step
            def only(self, tx: object) -> None:
                pass

        stranger.enqueue(Stranger(n=1), key="stranger-1")
    finally:
        stranger.close()
    workers = admin.send("/workers").body
    assert "no live worker knows job &#39;Stranger&#39; on queue &#39;default&#39;" in workers
    assert 'href="/ops/runs?job=Stranger&amp;queue=default">1 run(s)</a>' in workers
    flagged_runs = admin.send("/runs?only=unknown_job").body
    assert re.findall(r'data-key="([^"]+)"', flagged_runs) == ["stranger-1"]
    run = admin.send("/run?key=stranger-1").body
    assert 'id="run-warning"' in run
    assert "no live worker knows job &#39;Stranger&#39;" in run

    # A bulk action on that filter: cancel every run no live worker can run.
    confirm = admin.send("/runs/bulk?action=cancel&only=unknown_job")
    assert re.search(r'Cancel <strong id="bulk-count">1</strong>', confirm.body)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', confirm.body))
    assert "1 of 1 run(s) cancelled" in admin.send("/runs/bulk", fields).body
    assert status_of(app, "stranger-1") == "cancelled"
