"""acidic.django under pytest-django, in the test process: the test database that
pytest-django creates (another name than the settings') is where acidic's own
connections and Django's both go; jobs, enqueue and the middleware work there.

Run by scripts/test-django in a pytest run of its own with pytest-django active
(``DJANGO_SETTINGS_MODULE`` set, PostgreSQL, a test database of a fresh name); skipped
in the other runs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.skipif(
    not os.environ.get("ACIDIC_TEST_PYTEST_DJANGO"),
    reason="run by scripts/test-django with pytest-django and DJANGO_SETTINGS_MODULE",
)


@pytest.fixture(scope="module", autouse=True)
def _close_acidic() -> Iterator[None]:
    """Close acidic's own connections before pytest-django drops the test database."""
    yield
    from acidic.django import app

    app.close()


@pytest.mark.django_db(transaction=True)
def test_pytest_django__jobs_run_in_the_test_database(client: object) -> None:
    from django.db import connection, transaction

    from acidic import JobDefinitionError
    from acidic.django import app
    from tests.django.project.rides.jobs import BookRide, Commits
    from tests.django.project.rides.models import Booking, Ride

    test_name = os.environ["ACIDIC_TEST_DJANGO_TEST_NAME"]
    assert connection.settings_dict["NAME"] == test_name
    result = app.run(BookRide(rider="pd"), key="ride:pd")
    assert result == {"rides": 5, "reserved": True, "charged": 4}
    assert Ride.objects.filter(rider="pd").count() == 5
    # acidic's own connections follow Django to the test database.
    with app.engine.connect() as conn:
        assert conn.connection.dbapi_connection.info.dbname == test_name  # type: ignore[union-attr]
    run = app.get("ride:pd")
    assert run is not None
    assert run.status.value == "succeeded"

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            app.enqueue(BookRide(rider="gone"), key="ride:gone")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    assert app.get("ride:gone") is None

    # A step that commits its transaction itself is refused, its writes rolled back.
    with pytest.raises(JobDefinitionError, match="tried to commit"):
        app.run(Commits(), key="commits")
    assert not Ride.objects.filter(rider="commits").exists()

    key = {"Idempotency-Key": "pd-1"}
    first = client.post("/book/", {"seat": "7G"}, headers=key)  # type: ignore[attr-defined]
    again = client.post("/book/", {"seat": "7G"}, headers=key)  # type: ignore[attr-defined]
    assert first.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Booking.objects.filter(seat="7G").count() == 1
