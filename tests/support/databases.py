"""The databases the tests run on: a fresh database of each backend per test (see
tests/conftest.py), and the URLs of the servers that hold them.

On PostgreSQL a test's "database" is a schema of its own in the ``test`` database
(selected through ``search_path`` in the URL): creating a schema takes milliseconds
where CREATE DATABASE takes a second. Server addresses can be changed with
``ACIDIC_TEST_POSTGRESQL`` and ``ACIDIC_TEST_MYSQL`` (URLs of an admin connection).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRESQL_ADMIN = os.environ.get(
    "ACIDIC_TEST_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_ADMIN = os.environ.get("ACIDIC_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
BACKENDS = ("sqlite", "postgresql", "mysql")
IN_CI = bool(os.environ.get("CI"))


def _unavailable(backend: str, exc: Exception) -> None:
    message = f"{backend} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(f"{message} (CI is set: database tests must run, not skip)")
    pytest.skip(message)


def _admin_engine(backend: str, admin_url: str | None = None) -> sa.Engine:
    if backend == "postgresql":
        url = sa.make_url(admin_url or POSTGRESQL_ADMIN).set(drivername="postgresql+psycopg")
    else:
        url = sa.make_url(MYSQL_ADMIN).set(drivername="mysql+pymysql")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def create_database(
    backend: str,
    tmp_path: Path,
    *,
    admin_url: str | None = None,
    before_drop: Callable[[], None] | None = None,
) -> Iterator[str]:
    """Yield the URL of a new, empty database of ``backend``; drop it afterwards.

    ``admin_url`` names another PostgreSQL server than ``ACIDIC_TEST_POSTGRESQL`` (the
    private cluster); ``before_drop`` is called before the drop (to start that server
    again if the test left it stopped)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'acidic.sqlite3'}"
        return
    name = f"acidic_t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(backend, admin_url)
    kind = "SCHEMA" if backend == "postgresql" else "DATABASE"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE {kind} {name}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if admin_url is not None:  # a server the suite started: it must be there
            raise
        _unavailable(backend, exc)
    if backend == "postgresql":
        url = admin.url.update_query_dict(
            {"options": f"-csearch_path={name}", "application_name": name}
        )
    else:
        url = admin.url.set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        if before_drop is not None:
            before_drop()
        with admin.connect() as conn:
            if backend == "postgresql":
                # End the test's leftover sessions (e.g. of killed children) first.
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE application_name = '{name}'"
                )
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()
