"""acidic's runs in the Django admin, in Chromium (Playwright): staff with the
permissions see and operate runs, staff without ``acidic.operate_run`` only see them,
other users are refused."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from .conftest import Project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHROMIUM = "/usr/bin/chromium"

SEED = """
from django.contrib.auth.models import Permission, User
from acidic.django import app
from tests.django.project.rides.jobs import Pay
try:
    app.run(Pay(card="4111-1111", amount=12), key="pay:admin")
except RuntimeError:
    pass
view = Permission.objects.get(codename="view_run")
operate = Permission.objects.get(codename="operate_run")
op = User.objects.create_user("op", password="pw", is_staff=True)
op.user_permissions.add(view, operate)
viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
viewer.user_permissions.add(view)
User.objects.create_user("joe", password="pw")
print(app.get("pay:admin").status.value)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(project: Project) -> Iterator[str]:
    if project.backend != "sqlite":
        pytest.skip("the admin reads through the ORM alike on every backend: SQLite is enough")
    assert project.shell(SEED).strip() == "failed"
    port = _free_port()
    proc = project.start("runserver", "--noreload", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/admin/login/", timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "runserver did not start"
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.communicate(timeout=30)


def test_admin__staff_see_and_operate_others_are_refused(server: str) -> None:
    from playwright.sync_api import Page, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)

        def login(user: str) -> Page:
            page = browser.new_context().new_page()
            page.goto(f"{server}/admin/login/?next=/admin/acidic/run/")
            page.fill("#id_username", user)
            page.fill("#id_password", "pw")
            with page.expect_navigation():
                page.click("input[type=submit]")
            return page

        try:
            # Not staff: the admin refuses the login, and the runs stay out of reach.
            joe = login("joe")
            assert "staff account" in joe.content()
            joe.goto(f"{server}/admin/acidic/run/")
            assert "/admin/login/" in joe.url

            # Staff with acidic.view_run: list, filter, search, run page; no actions.
            viewer = login("viewer")
            assert "pay:admin" in viewer.content()
            viewer.goto(f"{server}/admin/acidic/run/?status__exact=succeeded")
            assert "pay:admin" not in viewer.content()
            viewer.goto(f"{server}/admin/acidic/run/?q=pay:adm")
            with viewer.expect_navigation():
                viewer.click("text=pay:admin")
            assert viewer.inner_text("#run-status") == "failed"
            args = viewer.inner_text("#run-args")
            assert "[redacted]" in args
            assert "4111" not in args
            assert '"amount": 12' in args
            assert "card declined" in viewer.inner_text("#run-error")
            assert "errored" in viewer.inner_text("#run-steps")
            assert viewer.locator("#run-actions").count() == 0
            refused = viewer.request.post(viewer.url, form={"action": "retry"})
            assert refused.status == 403

            # Staff with acidic.operate_run: the run page's retry makes the run due again.
            op = login("op")
            op.goto(f"{server}/admin/acidic/run/?q=pay:admin")
            with op.expect_navigation():
                op.click("text=pay:admin")
            with op.expect_navigation():
                op.click("#run-actions button[value=retry]")
            assert op.inner_text("#run-status") == "pending"
            # A refused action is reported, not applied: a pending run cannot be retried.
            with op.expect_navigation():
                op.click("#run-actions button[value=retry]")
            assert "retry" in op.inner_text(".messagelist")
            assert op.inner_text("#run-status") == "pending"
            with op.expect_navigation():
                op.click("#run-actions button[value=cancel]")
            assert op.inner_text("#run-status") == "cancelled"
        finally:
            browser.close()
