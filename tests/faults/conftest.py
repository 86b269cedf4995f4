"""Fixtures of the fault suite (see tests/conftest.py for ``backend`` and
``database_url``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import acidic
from tests.support import worker_app as wa
from tests.support.faults import fault_app
from tests.support.faults.helpers import admin_engine


@pytest.fixture
def chaos_app(database_url: str) -> Iterator[acidic.App]:
    """A migrated App with :class:`tests.support.faults.fault_app.Chaos` registered and the
    worker tests' tables (``worker_effects``) created."""
    with wa.migrated(database_url, fault_app.make_app) as application:
        yield application


@pytest.fixture
def admin(database_url: str) -> Iterator[sa.Engine]:
    """An admin engine on the test's database server (to terminate sessions, revoke
    rights); disposed afterwards."""
    engine = admin_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()
