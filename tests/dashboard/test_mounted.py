"""The dashboard mounted in another ASGI application (``create_app`` with an auth
callback, :mod:`tests.support.dashboard.host_app`), served by a real uvicorn process on each
database, spoken to over HTTP."""

from __future__ import annotations

import re

import pytest

import acidic
from tests.support.dashboard import ops_app
from tests.support.dashboard.client import Client
from tests.support.dashboard.helpers import status_of

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def test_mounted__auth_callback_pages_and_a_csrf_checked_retry(
    mounted: tuple[str, acidic.App],
) -> None:
    base, app = mounted
    assert Client(base).send("/").status == 403
    admin = Client(base, {"X-User": "admin"})

    overview = admin.send("/")
    assert overview.status == 200
    assert 'href="/ops/runs?status=failed"' in overview.body
    assert re.search(r'status-failed"[^>]*>\s*<span class="count">2<', overview.body)

    listing = admin.send("/runs?status=failed")
    assert listing.status == 200
    assert set(re.findall(r'data-key="([^"]+)"', listing.body)) == {"flaky-0", "flaky-1"}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing.body
    assert "<script>alert" not in listing.body

    search = admin.send("/runs?q=lak")
    assert set(re.findall(r'data-key="([^"]+)"', search.body)) == {"flaky-0", "flaky-1"}
    exact = admin.send("/runs?q=LAK")  # keys compare exactly, case included
    assert re.findall(r'data-key="([^"]+)"', exact.body) == []

    page = admin.send("/run?key=flaky-0")
    assert page.status == 200
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.body)
    assert token is not None

    refused = admin.send("/run/retry", {"key": "flaky-0"})
    assert refused.status == 403
    assert status_of(app, "flaky-0") == "failed"

    done = admin.send("/run/retry", {"key": "flaky-0", "csrf_token": token[1]})
    assert done.status == 303
    assert done.location == "/ops/run?key=flaky-0&notice=retried"
    assert status_of(app, "flaky-0") == "pending"
    # flaky-0 was started by app.run: retried, it joins the default queue for workers.
    retried = app.get("flaky-0")
    assert retried is not None
    assert retried.queue == "default"
    assert "a worker will pick it up" in admin.send(done.location.removeprefix("/ops")).body

    again = admin.send("/run/retry", {"key": "flaky-0", "csrf_token": token[1]})
    assert again.status == 409
    assert "cannot retry key &#39;flaky-0&#39;: it is pending" in again.body

    unknown = admin.send(
        "/run/resume", {"key": "parked-1", "from_step": "nope", "csrf_token": token[1]}
    )
    assert unknown.status == 400
    assert "has no such step" in unknown.body

    ride = admin.send("/run?key=ride-1")
    assert "[redacted]" in ride.body
    assert "4242-secret" not in ride.body
    assert admin.send("/run?key=missing").status == 404


def test_mounted__an_action_whose_run_changed_since_the_page_is_refused_by_the_app(
    mounted: tuple[str, acidic.App],
) -> None:
    """The page offered Cancel and Resume from step; before the button is pressed,
    another process finishes or cancels the run. The App refuses (RunStateError): the
    run's page says why with status 409 and no longer offers the button."""
    base, app = mounted
    admin = Client(base, {"X-User": "admin"})

    page = admin.send("/run?key=queued-ride")
    assert "/run/cancel" in page.body
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.body)
    assert token is not None
    # Meanwhile the queued run is taken and finished elsewhere.
    app.run(ops_app.Ride(user_id=9, card="4242-queued"), key="queued-ride")
    cancel = admin.send("/run/cancel", {"key": "queued-ride", "csrf_token": token[1]})
    assert cancel.status == 409
    assert "cannot cancel key &#39;queued-ride&#39;: it is succeeded" in cancel.body
    assert "/run/cancel" not in cancel.body
    assert status_of(app, "queued-ride") == "succeeded"

    parked = admin.send("/run?key=parked-1")
    assert 'name="from_step"' in parked.body
    app.cancel("parked-1")  # meanwhile, by another operator
    resume = admin.send(
        "/run/resume", {"key": "parked-1", "from_step": "start", "csrf_token": token[1]}
    )
    assert resume.status == 409
    assert "cannot resume key &#39;parked-1&#39;: it is cancelled" in resume.body
    assert status_of(app, "parked-1") == "cancelled"

    again = admin.send("/run/cancel", {"key": "parked-1", "csrf_token": token[1]})
    assert again.status == 409
    assert "cannot cancel key &#39;parked-1&#39;: it is cancelled" in again.body
    assert admin.send("/run/resume_from", {"key": "parked-1", "csrf_token": token[1]}).status == 400
