"""The dashboard in a real browser: ``acidic dashboard`` and ``acidic worker`` run as
processes on a SQLite database, headless Chromium (Debian's) drives the pages."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import acidic
from acidic._admin import Admin
from tests.support.dashboard import ops_app
from tests.support.dashboard.helpers import (
    ACIDIC,
    CHROMIUM,
    ROOT,
    dashboard,
    seed,
    status_of,
    wait_status,
    worker,
)

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # pragma: no cover - .ci/run installs it
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard-browser")]

expect = playwright_api.expect


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('dash') / 'acidic.sqlite3'}"


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
    """The dashboard's base URL, with a worker executing enqueued runs."""
    with worker(url), dashboard(url) as base:
        wait_status(app, "queued-ride", "succeeded")  # the worker took the pending run
        yield base


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
    tab = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        message = dialog.message
        dialogs.append(message)
        if "alert" in dialog.type:
            dialog.dismiss()
        else:
            dialog.accept()

    tab.on("dialog", on_dialog)
    tab.dialogs = dialogs  # type: ignore[attr-defined]
    try:
        yield tab
    finally:
        context.close()
    # Error messages hold "<script>alert(1)</script>": escaped, they never run.
    assert not [d for d in dialogs if d == "1"], dialogs


def test_overview__counts_charts_and_live_updates(served: str, app: acidic.App, page: Page) -> None:
    counts = Admin(app).stats().by_status
    page.goto(served + "/")
    expect(page.locator(".card.status-failed .count")).to_have_text(str(counts["failed"]))
    succeeded = page.locator(".card.status-succeeded .count")
    expect(succeeded).to_have_text(str(counts["succeeded"]))
    assert page.locator(".charts svg").count() == 2
    assert page.locator(".charts svg rect.bar").count() == 24
    expect(page.locator(".failures")).to_contain_text("flaky-1")
    page.evaluate("window.__notReloaded = true")

    app.enqueue(ops_app.Ride(user_id=50, card="4242-live"), key="live-ride")
    wait_status(app, "live-ride", "succeeded")

    expect(succeeded).to_have_text(str(counts["succeeded"] + 1), timeout=10_000)
    assert page.evaluate("window.__notReloaded") is True


def test_runs__list_filter_and_search(served: str, page: Page) -> None:
    page.goto(served + "/runs")
    expect(page.locator("tr[data-key='ride-0']")).to_be_visible()
    assert page.locator("tbody tr[data-key]").count() >= 7

    page.select_option("select[name=status]", "failed")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"status=failed"))
    keys = page.locator("tbody tr[data-key]").evaluate_all("rs => rs.map(r => r.dataset.key)")
    assert set(keys) >= {"flaky-0", "flaky-1"}
    assert all(k.startswith("flaky") for k in keys)
    # The error's markup is shown as text.
    expect(page.locator("tr[data-key='flaky-0'] .err")).to_contain_text("<script>alert(1)</script>")

    page.fill(".top .search input", "ride-")
    page.press(".top .search input", "Enter")
    keys = page.locator("tbody tr[data-key]").evaluate_all("rs => rs.map(r => r.dataset.key)")
    assert sorted(keys) == ["ride-0", "ride-1", "ride-2"]


def test_run_page__timeline_redaction_and_escaping(served: str, page: Page) -> None:
    page.goto(served + "/run?key=ride-1")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    assert page.locator("table.timeline tbody tr").count() == 3
    expect(page.locator("#args")).to_contain_text('"card": "[redacted]"')
    expect(page.locator("#ctx")).to_contain_text('"token": "[redacted]"')
    expect(page.locator("#ctx")).to_contain_text('"seat": "12A"')
    expect(page.locator("#result")).to_contain_text('"seat": "12A"')
    html = page.content()
    assert "4242-secret" not in html
    assert "tok_secret" not in html

    page.goto(served + "/run?key=flaky-0")
    expect(page.locator(".error-box")).to_contain_text("Traceback (most recent call last)")
    expect(page.locator(".err-line")).to_contain_text("<script>alert(1)</script>")
    page.click("tr.span-error summary")
    expect(page.locator("tr.span-error pre.traceback")).to_contain_text("ValueError")


def test_run_page__retry_then_see_it_succeed_without_reloading(
    served: str, app: acidic.App, page: Page
) -> None:
    app.enqueue(ops_app.Flaky(n=7), key="flaky-bg")
    wait_status(app, "flaky-bg", "failed")

    page.goto(served + "/run?key=flaky-bg")
    expect(page.locator("#run-status")).to_have_text("failed")
    page.click("form[action$='/run/retry'] button")
    expect(page.locator(".banner.notice")).to_contain_text("Retry requested")
    page.evaluate("window.__notReloaded = true")

    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=15_000)
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator("#result")).to_contain_text('"attempt": 2')
    assert status_of(app, "flaky-bg") == "succeeded"


def test_run_page__cancel_and_resume_from_a_step(served: str, app: acidic.App, page: Page) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    app.enqueue(ops_app.Ride(user_id=77, card="4242-later"), key="later-ride", run_at=later)
    page.goto(served + "/run?key=later-ride")
    expect(page.locator("#run-status")).to_have_text("pending")
    page.click("form[action$='/run/cancel'] button")
    expect(page.locator("#run-status")).to_have_text("cancelled")
    assert "Cancel this run?" in page.dialogs[-1]  # type: ignore[attr-defined]
    assert status_of(app, "later-ride") == "cancelled"
    assert page.locator("form[action$='/run/cancel']").count() == 0

    page.goto(served + "/run?key=parked-1")
    expect(page.locator("#run-status")).to_have_text("halted")
    page.select_option("form.from-step select", "start")
    page.click("form.from-step button")
    expect(page.locator(".banner.notice")).to_contain_text("Resumed")
    # The worker runs it from "start" again; it halts again waiting for its signal.
    wait_for_attempt = 2
    expect(page.locator("#run-status")).to_have_text("halted", timeout=15_000)
    run = app.get("parked-1")
    assert run is not None
    again = [(e.step, e.event) for e in run.history if e.attempt == wait_for_attempt]
    assert again[:2] == [("start", "started"), ("start", "succeeded")]


def test_actions__refuse_requests_without_a_valid_csrf_token(
    served: str, app: acidic.App, page: Page
) -> None:
    page.goto(served + "/run?key=flaky-1")
    request = page.context.request
    missing = request.post(served + "/run/cancel", form={"key": "flaky-1"})
    assert missing.status == 403
    assert "CSRF" in missing.text()
    forged = request.post(served + "/run/cancel", form={"key": "flaky-1", "csrf_token": "0" * 64})
    assert forged.status == 403
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    cross_site = request.post(
        served + "/run/cancel",
        form={"key": "flaky-1", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status == 403
    assert status_of(app, "flaky-1") == "failed"
    assert request.get(served + "/run/cancel").status == 405


def test_loopback_only__refuses_another_host_name(served: str) -> None:
    """Without authentication, a page asked for under another name (DNS rebinding) is refused."""
    port = urllib.parse.urlsplit(served).port
    for host, expected in ((f"localhost:{port}", 200), (f"evil.example:{port}", 403)):
        request = urllib.request.Request(served + "/runs", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        assert status == expected, host


def test_token__login_required_wrong_token_refused_right_one_accepted(
    app: acidic.App, url: str, page: Page
) -> None:
    with dashboard(url, "--token", "s3cret-token-123") as base:
        page.goto(base + "/runs?status=failed")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        # A logged-out visitor sees no navigation, no search and no log-out button.
        assert page.locator("header nav, header form.search, header form.logout").count() == 0
        assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
        page.fill("input[name=token]", "wrong-token-000")
        page.click(".login button")
        expect(page.locator(".banner.error")).to_contain_text("not valid")
        page.fill("input[name=token]", "s3cret-token-123")
        page.click(".login button")
        expect(page).to_have_url(re.compile(r"/runs\?status=failed$"))
        expect(page.locator("tr[data-key='flaky-0']")).to_be_visible()

        other = page.context.browser.new_context()  # type: ignore[union-attr]
        try:
            api = other.request
            assert api.get(base + "/", max_redirects=0).status == 303
            # A script with a wrong token gets 401, not the login page meant for people.
            wrong = api.get(base + "/", headers={"Authorization": "Bearer nope"}, max_redirects=0)
            assert wrong.status == 401
            assert wrong.headers["www-authenticate"].startswith("Bearer")
            assert "login" not in wrong.text().lower()
            bearer = api.get(base + "/", headers={"Authorization": "Bearer s3cret-token-123"})
            assert bearer.status == 200
            link = other.new_page()
            link.goto(base + "/?token=s3cret-token-123")
            expect(link.locator(".card.status-failed")).to_be_visible()
            assert "token=" not in link.url
        finally:
            other.close()


def test_auth_callback__decides_who_gets_in(app: acidic.App, url: str) -> None:
    with dashboard(url, "--auth", "tests.support.dashboard.host_app:allowed") as base:
        for headers, expected in (({}, 403), ({"X-User": "admin"}, 200)):
            request = urllib.request.Request(base + "/", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
            assert status == expected, headers


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--host", "0.0.0.0"), "refusing to serve the dashboard on 0.0.0.0"),
        (("--token", "short"), "at least 8 characters"),
        (("--token", "long-enough", "--auth", "x:y"), "not both"),
    ],
)
def test_cli__refuses_to_start_without_authentication_or_with_bad_options(
    url: str, args: tuple[str, ...], says: str
) -> None:
    done = subprocess.run(
        [str(ACIDIC), "dashboard", "--database-url", url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr


def test_pages__read_and_act_with_javascript_disabled(
    served: str, app: acidic.App, browser: Browser
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(served + "/")
        expect(page.locator(".card.status-failed")).to_be_visible()
        page.goto(served + "/runs?status=halted")
        page.click("tr[data-key] .key a")
        expect(page.locator("#run-status")).to_be_visible()
        app.enqueue(
            ops_app.Ride(user_id=78, card="4242-nojs"),
            key="nojs-ride",
            run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
        page.goto(served + "/run?key=nojs-ride")
        page.click("form[action$='/run/cancel'] button")  # no confirm() without JavaScript
        expect(page.locator("#run-status")).to_have_text("cancelled")
        assert status_of(app, "nojs-ride") == "cancelled"
    finally:
        context.close()
