"""Fixtures shared by the whole suite.

Every database-backed test runs once per backend (``sqlite``, ``postgresql``,
``mysql``) against a database of its own, created for it and dropped afterwards.
Locally a backend whose server is unreachable is skipped; with ``CI`` set in the
environment it is a failure, so CI can never pass without testing all three.

Server addresses can be changed with ``ACIDIC_TEST_POSTGRESQL`` and
``ACIDIC_TEST_MYSQL`` (SQLAlchemy URLs of an admin connection).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic

POSTGRESQL_ADMIN = os.environ.get("ACIDIC_TEST_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("ACIDIC_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
BACKENDS = ("sqlite", "postgresql", "mysql")
IN_CI = bool(os.environ.get("CI"))


def _unavailable(backend: str, exc: Exception) -> None:
    message = f"{backend} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(f"{message} (CI is set: database tests must run, not skip)")
    pytest.skip(message)


def _admin_engine(backend: str) -> sa.Engine:
    if backend == "postgresql":
        url = sa.make_url(POSTGRESQL_ADMIN).set(drivername="postgresql+psycopg")
    else:
        url = sa.make_url(MYSQL_ADMIN).set(drivername="mysql+pymysql")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def create_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new, empty database of ``backend``; drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'acidic.sqlite3'}"
        return
    name = f"acidic_t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(backend)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _unavailable(backend, exc)
    url = admin.url.set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend in turn."""
    yield from create_database(backend, tmp_path)


@pytest.fixture
def app(database_url: str) -> Iterator[acidic.App]:
    """A migrated App on a fresh database, with the test jobs of ``tests.jobs`` registered."""
    from tests import jobs

    application = jobs.make_app(database_url)
    application.migrate()
    jobs.create_tables(application.engine)
    try:
        yield application
    finally:
        application.close()
