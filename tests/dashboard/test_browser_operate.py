"""Operating many runs in a real browser: bulk retry of a filtered set of 1,000 failed
runs, the runs list refreshing itself, the statistics and schedule pages, and the page
shown while the database is down (a private PostgreSQL cluster, stopped and started)."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import acidic
from acidic._admin import Admin, RunFilter, fmt_time
from tests.support.dashboard import ops_app
from tests.support.dashboard.helpers import (
    CHROMIUM,
    copy_run,
    dashboard,
    seed,
    wait_status,
    worker,
)

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # pragma: no cover - .ci/run installs it
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.support.pg_cluster import PrivateCluster

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard-browser")]

expect = playwright_api.expect


def _statuses(app: acidic.App, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in Admin(app).list_runs(RunFilter(key_prefix=prefix), limit=1000).runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    return counts


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('dash-ops') / 'acidic.sqlite3'}"


@pytest.fixture(scope="module")
def app(url: str) -> Iterator[acidic.App]:
    application = ops_app.make_app(url)
    application.migrate()
    seed(application)
    try:
        yield application
    finally:
        application.close()


@pytest.fixture(scope="module")
def served(app: acidic.App, url: str) -> Iterator[str]:
    """The dashboard, without a worker: retried runs stay pending for the assertions."""
    with dashboard(url) as base:
        yield base


def test_bulk_retry__of_a_filtered_set_of_1000_failed_runs(
    served: str, app: acidic.App, page: Page
) -> None:
    copy_run(app, "flaky-0", [f"bulk-{i:04d}" for i in range(1000)])
    copy_run(app, "flaky-1", [f"keep-{i:02d}" for i in range(20)])  # failed too, not selected

    page.goto(served + "/runs")
    page.select_option("select[name=status]", "failed")
    page.fill("form.filters input[name=q]", "bulk-")
    page.click("form.filters button[type=submit]")
    # A search counts up to one page; the confirmation counts exactly.
    expect(page.locator("#total")).to_have_text("more than 50")
    page.click("a[data-bulk-action=retry]")

    expect(page.locator("#bulk-question")).to_contain_text("Retry 1000 run(s)?")
    expect(page.locator("#bulk-question")).to_contain_text("status failed")
    page.click("form[data-bulk] button")
    status = page.locator("#bulk-status")
    expect(status).to_have_attribute("data-finished", "1", timeout=120_000)
    expect(status).to_have_text("Done: 1000 of 1000 run(s) done.")
    assert page.locator("#bulk-progress progress").get_attribute("max") == "1000"
    assert page.locator("#bulk-skipped li").count() == 0

    assert _statuses(app, "bulk-") == {"pending": 1000}
    assert _statuses(app, "keep-") == {"failed": 20}
    assert app.get("flaky-0").status == "failed"  # type: ignore[union-attr]


def test_runs_list__refreshes_itself(served: str, app: acidic.App, page: Page) -> None:
    copy_run(app, "flaky-1", ["live-1"])
    page.goto(served + "/runs?status=failed&q=live-")
    expect(page.locator("#total")).to_have_text("1")
    page.evaluate("window.__notReloaded = true")
    copy_run(app, "flaky-1", ["live-2"])
    expect(page.locator("tr[data-key='live-2']")).to_be_visible(timeout=10_000)
    expect(page.locator("#total")).to_have_text("2")
    assert page.evaluate("window.__notReloaded") is True
    # The filter form, outside the refreshed part, keeps what the user typed.
    assert page.locator("form.filters input[name=q]").input_value() == "live-"


def test_jobs_and_scheduled_pages(served: str, app: acidic.App, page: Page) -> None:
    app.enqueue(
        ops_app.Flaky(n=90), key="due-later", run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    )
    page.goto(served + "/jobs")
    expect(page.locator("tr[data-job=Flaky] .failure-rate")).to_have_text("100.0%")
    expect(page.locator("tr[data-job=Ride] .ended-succeeded")).to_have_text("3")
    page.click("header nav a:text('Scheduled')")
    expect(page).to_have_url(re.compile(r"/scheduled$"))
    expect(page.locator("[data-period='next 24 h'] .count")).to_have_text("1")
    # The runs retried by the bulk test wait first: overdue, since no worker runs here.
    expect(page.locator("tbody tr[data-key] .due").first).to_contain_text("overdue")
    # The favicon is served.
    icon = page.context.request.get(served + "/favicon.ico")
    assert icon.status == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")


@pytest.mark.private_postgresql
@pytest.mark.parametrize("backend", ["postgresql"])
def test_database_down__styled_503_then_back_by_itself(
    database_url: str, private_postgresql: PrivateCluster, page: Page
) -> None:
    application = ops_app.make_app(database_url)
    application.migrate()
    seed(application)
    application.close()
    with dashboard(database_url) as base:
        page.goto(base + "/")
        expect(page.locator(".card.status-failed .count")).to_have_text("2")
        private_postgresql.stop()
        try:
            # The live overview keeps its data and says the database is unreachable.
            expect(page.locator("#offline")).to_be_visible(timeout=10_000)
            expect(page.locator(".card.status-failed .count")).to_have_text("2")

            other = page.context.new_page()
            response = other.goto(base + "/runs?status=failed")
            assert response is not None
            assert response.status == 503
            assert response.headers["retry-after"] == "5"
            expect(other.locator("h1")).to_have_text("Database unreachable")
            expect(other.locator(".reason")).to_contain_text("connection refused")
            # Styled by the dashboard's stylesheet, not a plain-text error.
            border = other.locator(".unavailable").evaluate(
                "e => getComputedStyle(e).borderTopStyle"
            )
            assert border == "solid"
        finally:
            private_postgresql.ensure_running()
        # Both pages recover without anyone reloading them.
        expect(other.locator("tr[data-key='flaky-0']")).to_be_visible(timeout=20_000)
        expect(page.locator("#offline")).to_be_hidden(timeout=10_000)


def test_run_page__a_killed_workers_run_shows_orphaned_with_its_takeover_time(
    served: str, app: acidic.App, url: str, page: Page
) -> None:
    with worker(url) as first:
        # Ahead of the runs the bulk test retried, which wait in the same queue.
        app.enqueue(ops_app.Slow(n=1), key="slow-1", priority=100)
        wait_status(app, "slow-1", "running", timeout=60)
        page.goto(served + "/run?key=slow-1")
        expect(page.locator("#run-owner")).to_contain_text(f":{first.pid}:")
        expect(page.locator("#run-lock-expiry")).not_to_have_text("-")
        expect(page.locator("#orphaned")).to_have_count(0)
        page.goto(served + "/workers")
        row = page.locator(f"tr[data-worker*=':{first.pid}:']")
        expect(row.locator(".held")).to_contain_text("slow-1")

        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        page.goto(served + "/run?key=slow-1")
        orphaned = page.locator("#orphaned")
        expect(orphaned).to_be_visible(timeout=20_000)
        expect(orphaned).to_contain_text(f":{first.pid}:")
        summary = Admin(app).summary("slow-1")
        assert summary is not None
        assert summary.status == "running"
        assert summary.orphaned
        assert summary.takeover_at is not None
        expect(page.locator("#takeover-at")).to_have_text(fmt_time(summary.takeover_at))
        page.goto(served + "/workers")
        expect(row.locator(".badge")).to_have_text("gone", timeout=20_000)

    # Another worker takes it over once the lock expires; the page follows by itself.
    page.goto(served + "/run?key=slow-1")
    with worker(url):
        expect(page.locator("#run-status")).to_have_text("succeeded", timeout=40_000)
    expect(page.locator("#result")).to_contain_text('"attempt": 2')
    expect(page.locator("#orphaned")).to_have_count(0)
