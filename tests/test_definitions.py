"""Job definitions: what a job class may be, how it is registered, and how the code of a
job may change while runs are unfinished.

Class-definition errors need no database. The definition-change tests start a run with
one class, then run the same key with another class registered under the same name on
a new App over the same database, as a deploy would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from tests.support.jobs import create_tables, effect_counts, effects

FAIL: set[str] = set()
RAN: list[str] = []  # "<Class>.<step>" for every step body that ran


class Boom(Exception):
    pass


def _do(job: acidic.Job, name: str, tx: sa.Connection) -> None:
    RAN.append(f"{type(job).__name__}.{name}")
    tx.execute(effects.insert().values(run_key=job.key, step=name))
    if name in FAIL:
        raise Boom(f"{name} failed")


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    FAIL.clear()
    RAN.clear()
    yield
    FAIL.clear()
    RAN.clear()


# -- errors at class definition --------------------------------------------------------


def test_definition__job_without_steps_raises() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="no steps"):

        class NoSteps(acidic.Job):
            x: int

            def not_a_step(self, tx: sa.Connection) -> None: ...


def test_definition__transactional_step_without_tx_parameter_raises() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="lonely"):

        class NoTx(acidic.Job):
            @acidic.step
            def lonely(self) -> None: ...


def test_definition__transactional_step_with_extra_parameter_raises() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="greedy"):

        class ExtraTx(acidic.Job):
            @acidic.step
            def greedy(self, tx: sa.Connection, more: int) -> None: ...


def test_definition__non_transactional_step_with_extra_parameter_raises() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="foreign"):

        class ForeignWithTx(acidic.Job):
            @acidic.step(transactional=False)
            def foreign(self, tx: sa.Connection) -> None: ...


def test_definition__step_with_keyword_only_parameter_raises() -> None:
    with pytest.raises(acidic.JobDefinitionError):

        class KeywordTx(acidic.Job):
            @acidic.step
            def kw(self, *, tx: sa.Connection) -> None: ...


@pytest.mark.parametrize("field_name", ["key", "ctx"])
def test_definition__reserved_field_name_raises(field_name: str) -> None:
    namespace = {
        "__annotations__": {field_name: "str"},
        "only": acidic.step(lambda self, tx: None),
        "__module__": __name__,
    }

    with pytest.raises(acidic.JobDefinitionError, match=f"{field_name!r}.*reserved"):
        type(f"Reserved_{field_name}", (acidic.Job,), namespace)


def test_definition__field_starting_with_underscore_raises() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="_secret"):

        class Private(acidic.Job):
            _secret: int

            @acidic.step
            def only(self, tx: sa.Connection) -> None: ...


def test_definition__same_step_under_two_attribute_names_raises() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="duplicate"):

        class Twice(acidic.Job):
            @acidic.step
            def once(self, tx: sa.Connection) -> None: ...

            again = once


def test_definition__override_without_step_decorator_raises() -> None:
    """An undecorated override would silently leave the parent's step running."""

    class Base(acidic.Job, abstract=True):
        @acidic.step
        def charge(self, tx: sa.Connection) -> None:
            pass

    with pytest.raises(acidic.JobDefinitionError, match=r"without @acidic\.step"):

        class Child(Base):
            def charge(self, tx: sa.Connection) -> None:
                pass


def test_definition__async_steps_make_an_async_job() -> None:
    class Async(acidic.Job):
        @acidic.step
        async def wait(self, tx: sa.Connection) -> None: ...

        @acidic.step(transactional=False)
        async def call(self) -> None: ...

    assert Async.__acidic_definition__.is_async


def test_definition__sync_and_async_steps_mixed_raise() -> None:
    with pytest.raises(acidic.JobDefinitionError, match="async"):

        class Mixed(acidic.Job):
            @acidic.step
            def book(self, tx: sa.Connection) -> None: ...

            @acidic.step(transactional=False)
            async def call(self) -> None: ...


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -0.5])
def test_definition__lock_timeout_not_positive_raises(timeout: float) -> None:
    namespace = {
        "lock_timeout": timeout,
        "only": acidic.step(lambda self, tx: None),
        "__module__": __name__,
    }

    with pytest.raises(acidic.JobDefinitionError, match="lock_timeout"):
        type("BadTimeout", (acidic.Job,), namespace)


def test_definition__positive_lock_timeout_is_accepted() -> None:
    class Patient(acidic.Job):
        lock_timeout = 0.5

        @acidic.step
        def only(self, tx: sa.Connection) -> None: ...

    assert Patient.lock_timeout == 0.5


# -- inheritance -----------------------------------------------------------------------


class Base(acidic.Job, abstract=True):
    """An abstract base with two steps; subclasses add or override."""

    n: int = 0

    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        _do(self, "first", tx)

    @acidic.step
    def second(self, tx: sa.Connection) -> None:
        _do(self, "second", tx)


class Child(Base):
    @acidic.step
    def third(self, tx: sa.Connection) -> None:
        _do(self, "third", tx)


class Override(Base):
    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        RAN.append("Override.first")
        tx.execute(effects.insert().values(run_key=self.key, step="first-override"))


class Empty(acidic.Job, abstract=True):
    """An abstract base with no steps at all."""

    n: int = 0


class FromEmpty(Empty):
    @acidic.step
    def only(self, tx: sa.Connection) -> None:
        _do(self, "only", tx)


class Unregistered(acidic.Job):
    @acidic.step
    def only(self, tx: sa.Connection) -> None:
        _do(self, "only", tx)


@pytest.fixture
def defs_app(database_url: str) -> Iterator[acidic.App]:
    """A migrated App on a fresh database with the inheritance jobs registered."""
    app = acidic.App(database_url)
    app.migrate()
    for cls in (Base, Child, Override, FromEmpty):
        app.job(name=f"defs.{cls.__name__}")(cls)
    create_tables(app.engine)
    try:
        yield app
    finally:
        app.close()


def _get(app: acidic.App, key: str) -> acidic.Run:
    run = app.get(key)
    assert run is not None
    return run


def _stored_keys(app: acidic.App) -> list[str]:
    with app.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT idempotency_key FROM acidic_runs")).scalars())


def test_abstract__base_with_steps_runs_them_in_order(defs_app: acidic.App) -> None:
    defs_app.run(Base(), key="b")

    assert RAN == ["Base.first", "Base.second"]
    assert _get(defs_app, "b").steps == ["first", "second"]


def test_abstract__subclass_inherits_steps_in_order_then_its_own(defs_app: acidic.App) -> None:
    defs_app.run(Child(), key="c")

    assert RAN == ["Child.first", "Child.second", "Child.third"]
    run = _get(defs_app, "c")
    assert run.steps == ["first", "second", "third"]
    assert [e.step for e in run.history if e.event == "succeeded"] == ["first", "second", "third"]


def test_abstract__base_without_steps_is_allowed_and_subclass_runs(defs_app: acidic.App) -> None:
    defs_app.run(FromEmpty(), key="e")

    assert RAN == ["FromEmpty.only"]
    assert _get(defs_app, "e").status == "succeeded"


def test_abstract__base_without_steps_cannot_be_registered(tmp_path: Path) -> None:
    app = acidic.App(f"sqlite:///{tmp_path / 'a.sqlite3'}")

    with pytest.raises(acidic.JobDefinitionError):
        app.job(name="defs.Empty")(Empty)


def test_subclass__overridden_step_keeps_its_position_and_runs(defs_app: acidic.App) -> None:
    defs_app.run(Override(), key="o")

    assert RAN == ["Override.first", "Override.second"]
    run = _get(defs_app, "o")
    assert run.steps == ["first", "second"]
    assert effect_counts(defs_app.engine, "o") == {"first-override": 1, "second": 1}


# -- registration ----------------------------------------------------------------------


def test_registration__running_an_unregistered_job_raises_unknown_job_error(
    defs_app: acidic.App,
) -> None:
    with pytest.raises(acidic.UnknownJobError, match="Unregistered"):
        defs_app.run(Unregistered(), key="u")

    assert RAN == []
    assert _stored_keys(defs_app) == []


def test_registration__two_classes_under_one_name_raise(tmp_path: Path) -> None:
    app = acidic.App(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    app.job(name="defs.same")(Child)

    with pytest.raises(acidic.JobDefinitionError, match=r"defs\.same"):
        app.job(name="defs.same")(Override)

    assert app.jobs == {"defs.same": Child}


def test_registration__same_class_on_two_apps_is_allowed(tmp_path: Path) -> None:
    one = acidic.App(f"sqlite:///{tmp_path / 'one.sqlite3'}")
    two = acidic.App(f"sqlite:///{tmp_path / 'two.sqlite3'}")

    one.job(name="defs.Child")(Child)
    two.job(name="defs.Child")(Child)

    assert one.jobs == two.jobs == {"defs.Child": Child}


# -- changing a job's steps while runs are unfinished ----------------------------------


class V1(acidic.Job):
    """The deployed version: a, b, c."""

    @acidic.step
    def a(self, tx: sa.Connection) -> None:
        _do(self, "a", tx)

    @acidic.step
    def b(self, tx: sa.Connection) -> None:
        _do(self, "b", tx)

    @acidic.step
    def c(self, tx: sa.Connection) -> acidic.Response:
        _do(self, "c", tx)
        return acidic.Response(type(self).__name__)


class RemovedLast(acidic.Job):
    """a, b: c removed."""

    @acidic.step
    def a(self, tx: sa.Connection) -> None:
        _do(self, "a", tx)

    @acidic.step
    def b(self, tx: sa.Connection) -> None:
        _do(self, "b", tx)


class RenamedFirst(acidic.Job):
    """a renamed to a2."""

    @acidic.step
    def a2(self, tx: sa.Connection) -> None:
        _do(self, "a2", tx)

    @acidic.step
    def b(self, tx: sa.Connection) -> None:
        _do(self, "b", tx)

    @acidic.step
    def c(self, tx: sa.Connection) -> None:
        _do(self, "c", tx)


class Reordered(acidic.Job):
    """b, a, c: a and b swapped."""

    @acidic.step
    def b(self, tx: sa.Connection) -> None:
        _do(self, "b", tx)

    @acidic.step
    def a(self, tx: sa.Connection) -> None:
        _do(self, "a", tx)

    @acidic.step
    def c(self, tx: sa.Connection) -> None:
        _do(self, "c", tx)


class InsertedBefore(acidic.Job):
    """a, new, b, c: a step inserted before the recovery point."""

    @acidic.step
    def a(self, tx: sa.Connection) -> None:
        _do(self, "a", tx)

    @acidic.step
    def new(self, tx: sa.Connection) -> None:
        _do(self, "new", tx)

    @acidic.step
    def b(self, tx: sa.Connection) -> None:
        _do(self, "b", tx)

    @acidic.step
    def c(self, tx: sa.Connection) -> None:
        _do(self, "c", tx)


class InsertedAfter(acidic.Job):
    """a, b, new, c: a step inserted after the recovery point, not at the end."""

    @acidic.step
    def a(self, tx: sa.Connection) -> None:
        _do(self, "a", tx)

    @acidic.step
    def b(self, tx: sa.Connection) -> None:
        _do(self, "b", tx)

    @acidic.step
    def new(self, tx: sa.Connection) -> None:
        _do(self, "new", tx)

    @acidic.step
    def c(self, tx: sa.Connection) -> None:
        _do(self, "c", tx)


class Appended(acidic.Job):
    """a, b, c, d: a step appended at the end (compatible)."""

    @acidic.step
    def a(self, tx: sa.Connection) -> None:
        _do(self, "a", tx)

    @acidic.step
    def b(self, tx: sa.Connection) -> None:
        _do(self, "b", tx)

    @acidic.step
    def c(self, tx: sa.Connection) -> None:
        _do(self, "c", tx)

    @acidic.step
    def d(self, tx: sa.Connection) -> acidic.Response:
        _do(self, "d", tx)
        return acidic.Response(type(self).__name__)


JOB_NAME = "defs.evolving"
Deploy = Callable[[type[acidic.Job]], acidic.App]


@pytest.fixture
def failed_at_b(database_url: str) -> Iterator[acidic.App]:
    """An App with V1 registered whose run of key "r" failed at step b."""
    app = acidic.App(database_url)
    app.migrate()
    app.job(name=JOB_NAME)(V1)
    create_tables(app.engine)
    FAIL.add("b")
    with pytest.raises(Boom):
        app.run(V1(), key="r")
    FAIL.clear()
    RAN.clear()
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def deploy(database_url: str) -> Iterator[Deploy]:
    """Make new Apps on the same database (closed at the end): ``deploy(cls)``."""
    made: list[acidic.App] = []

    def make(cls: type[acidic.Job]) -> acidic.App:
        app = acidic.App(database_url)
        app.job(name=JOB_NAME)(cls)
        made.append(app)
        return app

    try:
        yield make
    finally:
        for app in made:
            app.close()


@pytest.mark.parametrize(
    "new_cls",
    [RemovedLast, RenamedFirst, Reordered, InsertedBefore, InsertedAfter],
    ids=["removed_last", "renamed_first", "reordered", "inserted_before", "inserted_after"],
)
def test_definition_change__incompatible_steps_raise_definition_mismatch(
    failed_at_b: acidic.App, deploy: Deploy, new_cls: type[acidic.Job]
) -> None:
    before = _get(failed_at_b, "r")
    new_app = deploy(new_cls)

    with pytest.raises(acidic.DefinitionMismatchError) as caught:
        new_app.run(new_cls(), key="r")

    message = str(caught.value)
    assert "'r'" in message
    assert JOB_NAME in message or new_cls.__name__ in message
    assert "['a', 'b', 'c']" in message
    assert RAN == []
    assert effect_counts(failed_at_b.engine, "r") == {"a": 1}
    assert _get(failed_at_b, "r") == before


def test_definition_change__appended_step_is_compatible_and_runs(
    failed_at_b: acidic.App, deploy: Deploy
) -> None:
    new_app = deploy(Appended)

    assert new_app.run(Appended(), key="r") == "Appended"

    assert RAN == ["Appended.b", "Appended.c", "Appended.d"]
    assert effect_counts(failed_at_b.engine, "r") == {"a": 1, "b": 1, "c": 1, "d": 1}
    run = _get(new_app, "r")
    assert run.status == "succeeded"
    assert run.steps == ["a", "b", "c", "d"]
    assert [e.step for e in run.history if e.event == "succeeded"] == ["a", "b", "c", "d"]


def test_definition_change__same_steps_resume_normally(
    failed_at_b: acidic.App, deploy: Deploy
) -> None:
    new_app = deploy(V1)

    assert new_app.run(V1(), key="r") == "V1"

    assert RAN == ["V1.b", "V1.c"]


def test_definition_change__finished_run_returns_its_result_whatever_the_steps(
    database_url: str, deploy: Deploy
) -> None:
    app = acidic.App(database_url)
    app.migrate()
    app.job(name=JOB_NAME)(V1)
    create_tables(app.engine)
    try:
        assert app.run(V1(), key="done") == "V1"
    finally:
        app.close()
    RAN.clear()
    new_app = deploy(Reordered)

    assert new_app.run(Reordered(), key="done") == "V1"
    assert RAN == []


def test_definition_change__stored_recovery_point_not_a_step_raises(
    failed_at_b: acidic.App,
) -> None:
    with failed_at_b.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE acidic_runs SET recovery_point = :rp WHERE idempotency_key = :k"),
            {"rp": "vanished", "k": "r"},
        )
    before = _get(failed_at_b, "r")

    with pytest.raises(acidic.UnknownRecoveryPointError) as caught:
        failed_at_b.run(V1(), key="r")

    message = str(caught.value)
    assert "'r'" in message
    assert "vanished" in message
    assert RAN == []
    assert effect_counts(failed_at_b.engine, "r") == {"a": 1}
    assert _get(failed_at_b, "r") == before
