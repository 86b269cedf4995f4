"""Fixtures of the dashboard tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import acidic
from tests.support.dashboard import ops_app
from tests.support.dashboard.client import serve_host
from tests.support.dashboard.helpers import seed


@pytest.fixture
def mounted(database_url: str) -> Iterator[tuple[str, acidic.App]]:
    """``tests.support.dashboard.host_app`` served by uvicorn in a child process, on a
    seeded database; its base URL and an App on the same database."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    app = ops_app.make_app(database_url)
    app.migrate()
    seed(app)
    try:
        with serve_host(database_url) as base:
            yield base, app
    finally:
        app.close()
