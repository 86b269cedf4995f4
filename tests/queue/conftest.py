"""Fixtures of the queue tests: a fresh App with the jobs of :mod:`tests.support.queue.jobs`
on each database, and that module's in-process records emptied around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import acidic
from tests.support.flavours import FLAVOURS, flavoured
from tests.support.queue.jobs import JOBS, build_app, reset


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    reset()
    yield
    reset()


@pytest.fixture
def app(database_url: str) -> Iterator[acidic.App]:
    application = build_app(database_url)
    try:
        yield application
    finally:
        application.close()


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test of a module that uses it once per flavour of step (see
    tests/support/flavours.py), with the queue tests' jobs."""
    with flavoured(JOBS.values(), str(request.param)):
        yield str(request.param)
