"""The dashboard on a big table, in a real browser on PostgreSQL: a status with more than
ESTIMATE_OVER runs is shown as an estimate (with a note saying so), the others exactly;
a search counts up to one page and says "more than". Chromium drives ``acidic dashboard``
run as a process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import acidic
from acidic._admin import ESTIMATE_OVER, Admin
from tests.support.dashboard import ops_app
from tests.support.dashboard.helpers import CHROMIUM, copy_run, dashboard, seed

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # pragma: no cover - .ci/run installs it
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard-browser")]

expect = playwright_api.expect
MANY = ESTIMATE_OVER + 500


@pytest.fixture
def big(database_url: str) -> Iterator[acidic.App]:
    """The dashboard's seed, plus MANY copies of a succeeded run, analysed."""
    app = ops_app.make_app(database_url)
    app.migrate()
    seed(app)
    copy_run(app, "ride-0", [f"copy-{i:05d}" for i in range(MANY)])
    with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE acidic_runs")
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def page() -> Iterator[Page]:
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium.new_context().new_page()
        finally:
            chromium.close()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_overview__estimates_a_big_status_and_says_so(
    big: acidic.App, database_url: str, page: Page
) -> None:
    exact = Admin(big).stats().by_status
    estimated = Admin(big).stats(estimate=True)
    assert estimated.estimated == {"succeeded"}
    # ANALYZE read every row of a table this small: the estimate is the count, give or
    # take the rounding of the shares.
    assert abs(estimated.by_status["succeeded"] - exact["succeeded"]) <= 5
    assert {k: v for k, v in estimated.by_status.items() if k != "succeeded"} == {
        k: v for k, v in exact.items() if k != "succeeded"
    }
    with dashboard(database_url) as base:
        page.goto(base + "/")
        card = page.locator(".card.status-succeeded .count")
        expect(card).to_contain_text("\u2248")
        assert card.get_attribute("title") == "estimated from the database's statistics"
        expect(page.locator(".card.status-failed .count")).to_have_text(str(exact["failed"]))
        expect(page.locator("#estimated-note")).to_contain_text(
            f"more than {ESTIMATE_OVER:,} runs, estimated from PostgreSQL's statistics"
        )

        page.goto(base + "/runs?q=copy-")
        expect(page.locator("#total")).to_have_text("more than 50")
        expect(page.locator("table.runs tbody tr")).to_have_count(50)
