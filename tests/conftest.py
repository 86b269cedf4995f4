"""Fixtures shared by the whole suite.

Every database-backed test runs once per backend (``sqlite``, ``postgresql``,
``mysql``) against a database of its own, created for it and dropped afterwards.
Locally a backend whose server is unreachable is skipped; with ``CI`` set in the
environment it is a failure, so CI can never pass without testing all three.

How the databases are made, and which servers hold them: tests/support/databases.py.

Tests marked ``private_postgresql`` stop, restart or kill PostgreSQL: their database is
on a private cluster that the suite starts itself (tests/support/pg_cluster.py), never
on the server of ``ACIDIC_TEST_POSTGRESQL``, which other people may be using. They all
run in one xdist worker, so that a run starts one such cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import acidic
from tests.support.databases import BACKENDS, IN_CI, create_database
from tests.support.flavours import FLAVOURS, flavoured
from tests.support.pg_cluster import ClusterUnavailable, PrivateCluster, private_cluster

PRIVATE = "private_postgresql"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test marked only_flavours(...) is not collected in the other flavours of step.
    dropped = [item for item in items if not _in_its_flavours(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]
    for item in items:
        if item.get_closest_marker(PRIVATE) is not None:
            item.add_marker(pytest.mark.xdist_group(PRIVATE))
        # The async and ORM flavours of the semantics tests: scripts/test-flavours.
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("flavour", "sync") != "sync":
            item.add_marker(pytest.mark.flavours)


def _in_its_flavours(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("only_flavours")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "flavour" not in callspec.params:
        return True
    return callspec.params["flavour"] in marker.args


@pytest.fixture(scope="session")
def private_postgresql() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test session's own, for the tests that stop,
    restart or kill the server; stopped and removed at the end of the session.

    Where it cannot run (no PostgreSQL binaries) its tests are skipped, unless ``CI``
    is set: then they fail, like an unreachable database server."""
    try:
        with private_cluster() as cluster:
            yield cluster
    except ClusterUnavailable as exc:
        message = f"no private PostgreSQL cluster: {exc}"
        if IN_CI:
            pytest.fail(f"{message} (CI is set: these tests must run, not skip)")
        pytest.skip(message)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database of each backend in turn (on the private cluster for the
    tests marked ``private_postgresql``)."""
    if request.node.get_closest_marker(PRIVATE) is None:
        yield from create_database(backend, tmp_path)
        return
    if backend != "postgresql":
        raise pytest.UsageError(f"{request.node.nodeid}: {PRIVATE} is for postgresql only")
    cluster: PrivateCluster = request.getfixturevalue(PRIVATE)
    cluster.ensure_running()  # whatever the previous test left
    yield from create_database(
        backend, tmp_path, admin_url=cluster.admin_url, before_drop=cluster.ensure_running
    )


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


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test of a module that uses it, once per flavour of step (sync, async, ORM
    session, async ORM session; see tests/support/flavours.py): the jobs of
    ``tests.support.jobs`` and of the module's ``JOBS`` swapped for the test."""
    from tests.support import jobs

    classes = [*jobs.JOBS.values(), *getattr(request.module, "JOBS", {}).values()]
    with flavoured(classes, str(request.param)):
        yield str(request.param)
