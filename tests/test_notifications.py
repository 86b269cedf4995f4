"""PostgreSQL wake-ups stay within one App's tables.

A NOTIFY channel belongs to the whole database: Apps in other schemas of the same database
(a schema per tenant; this suite's tests, each in a schema of its own) hear every
notification on it. An enqueue must wake the workers of its own acidic_runs table only,
or every enqueue anywhere sends an empty claim from every other tenant's workers.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from tests.support.databases import create_database


class Hello(acidic.Job):
    name: str

    @acidic.step
    def greet(self, tx: sa.Connection) -> None:
        del tx


class Listener:
    """A worker's listener (``manager.notifications``) in a thread, recording what it hears."""

    def __init__(self, app: acidic.App, queues: tuple[str, ...]) -> None:
        self.heard: list[str] = []
        self._stopped = threading.Event()
        self._app = app
        self._queues = queues
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        notes = self._app.manager.notifications(self._queues, self._stopped.is_set)
        assert notes is not None
        for queue in notes:
            self.heard.append(queue)

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.heard) < count:
            assert time.monotonic() < deadline, f"heard only {self.heard}"
            time.sleep(0.01)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)


@contextlib.contextmanager
def _schema_app(tmp_path: Path) -> Iterator[acidic.App]:
    with contextlib.contextmanager(create_database)("postgresql", tmp_path) as url:
        app = acidic.App(url, queues=("default", "mail"))
        app.job(name="hello")(Hello)
        app.migrate()
        try:
            yield app
        finally:
            app.close()


@pytest.fixture
def two_apps(tmp_path: Path) -> Iterator[tuple[acidic.App, acidic.App]]:
    with _schema_app(tmp_path / "a") as a, _schema_app(tmp_path / "b") as b:
        yield a, b


def _listening(app: acidic.App) -> Listener:
    listener = Listener(app, ("default", "mail"))
    listener.wait_for(2)  # the queues it yields at once, for runs enqueued before it listened
    listener.heard.clear()
    return listener


def test_notifications__an_enqueue_wakes_the_listeners_of_its_own_schema_only(
    two_apps: tuple[acidic.App, acidic.App],
) -> None:
    a, b = two_apps
    heard_a, heard_b = _listening(a), _listening(b)
    try:
        a.enqueue(Hello(name="x"), key="in-a", queue="mail")
        with a.engine.connect() as conn:  # the caller's transaction
            a.enqueue(Hello(name="y"), key="in-a-2", connection=conn)
            conn.commit()
        heard_a.wait_for(2)
        b.enqueue(Hello(name="z"), key="in-b")
        heard_b.wait_for(1)
        time.sleep(0.3)  # anything misdelivered has arrived by now
        assert heard_a.heard == ["mail", "default"]
        assert heard_b.heard == ["default"]
    finally:
        heard_a.stop()
        heard_b.stop()


def test_notifications__a_wake_up_reaches_its_own_schema_only(
    two_apps: tuple[acidic.App, acidic.App],
) -> None:
    a, b = two_apps
    heard_a, heard_b = _listening(a), _listening(b)
    try:
        with a.engine.begin() as conn:  # the statement resume, signal and retry send
            a.manager.store.dialect.notify(conn, "default")
        heard_a.wait_for(1)
        time.sleep(0.3)
        assert heard_a.heard == ["default"]
        assert heard_b.heard == []
    finally:
        heard_a.stop()
        heard_b.stop()


def test_notifications__a_bare_queue_name_from_an_older_acidic_still_wakes(
    two_apps: tuple[acidic.App, acidic.App],
) -> None:
    a, b = two_apps
    # A queue name of this test alone: a bare payload reaches every listener of the
    # database, including those of the tests running beside this one.
    queue = f"old-{uuid.uuid4().hex[:8]}"
    heard_a, heard_b = Listener(a, (queue,)), Listener(b, (queue,))
    try:
        heard_a.wait_for(1)
        heard_b.wait_for(1)
        with a.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_notify('acidic_runs', :queue)"), {"queue": queue})
            conn.commit()
        heard_a.wait_for(2)
        heard_b.wait_for(2)
        assert heard_a.heard == heard_b.heard == [queue, queue]
    finally:
        heard_a.stop()
        heard_b.stop()


def test_notifications__a_run_finishing_wakes_the_waiters_of_its_own_schema_only(
    two_apps: tuple[acidic.App, acidic.App],
) -> None:
    a, b = two_apps
    # Both schemas number their runs from 1: the first run of each has the same id.
    a.enqueue(Hello(name="a"), key="first")
    b.enqueue(Hello(name="b"), key="first")
    with a.manager.store.finished_runs() as heard_a, b.manager.store.finished_runs() as heard_b:
        assert heard_a is not None
        assert heard_b is not None
        first = _run_id(b, "first")
        assert _run_id(a, "first") == first
        assert b.drain() == 1
        assert heard_a(0.3) == set()
        assert heard_b(2.0) == {first}
        assert a.drain() == 1
        assert heard_a(2.0) == {first}
        assert heard_b(0.3) == set()


def _run_id(app: acidic.App, key: str) -> int:
    with app.engine.connect() as conn:
        query = sa.text("SELECT id FROM acidic_runs WHERE idempotency_key = :key")
        return int(conn.execute(query, {"key": key}).scalar_one())


def test_notifications__a_schema_chosen_by_the_engines_connect_args_is_heard(
    tmp_path: Path,
) -> None:
    # The listening connection is opened from the engine's URL alone; the schema of an
    # engine made with connect_args is not in it, and its table must still be found.
    with contextlib.contextmanager(create_database)("postgresql", tmp_path) as url:
        given = sa.make_url(url)
        options = given.query["options"]
        assert isinstance(options, str)
        engine = sa.create_engine(
            given.difference_update_query(["options"]), connect_args={"options": options}
        )
        app = acidic.App(engine, queues=("default", "mail"))
        app.job(name="hello")(Hello)
        app.migrate()
        try:
            heard = _listening(app)
            try:
                app.enqueue(Hello(name="x"), key="k", queue="mail")
                heard.wait_for(1)
                assert heard.heard == ["mail"]
                with app.manager.store.finished_runs() as finished:
                    assert finished is not None
                    assert app.drain() == 1
                    assert finished(2.0) == {_run_id(app, "k")}
            finally:
                heard.stop()
        finally:
            app.close()
            engine.dispose()
