"""Fixtures shared by the whole suite.

Every database-backed test runs once per backend (``sqlite``, ``postgresql``,
``mysql``) against a database of its own, created for it and dropped afterwards.
Locally a backend whose server is unreachable is skipped; with ``CI`` set in the
environment it is a failure, so CI can never pass without testing all three.

How the databases are made, and which servers hold them: tests/support/databases.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import acidic
from tests.support.databases import BACKENDS, create_database


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend in turn."""
    yield from create_database(backend, tmp_path)


@pytest.fixture
def app(database_url: str) -> Iterator[acidic.App]:
    """A migrated App on a fresh database, with the test jobs of ``tests.support.jobs``
    registered."""
    from tests.support import jobs

    application = jobs.make_app(database_url)
    application.migrate()
    jobs.create_tables(application.engine)
    try:
        yield application
    finally:
        application.close()
