"""Jobs with children for the fan-out/fan-in tests, and the App a worker process or a
child process of the tests builds from ``$ACIDIC_TEST_URL``
(``tests.support.family_jobs:app``)."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

import acidic

metadata = sa.MetaData()
#: One row per committed execution of a parent's steps (so "continued once" is countable).
family_steps = sa.Table(
    "family_steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(255), nullable=False),
    sa.Column("step", sa.String(100), nullable=False),
)


def record(tx: sa.Connection, key: str, step: str) -> None:
    tx.execute(family_steps.insert().values(run_key=key, step=step))


class Square(acidic.Job):
    """A child: returns n * n, or fails for good (max_attempts 1) when ``fail``."""

    n: int
    fail: bool = False
    max_attempts = 1

    @acidic.step
    def square(self, tx: sa.Connection) -> acidic.Response:
        if self.fail:
            raise ValueError(f"cannot square {self.n}")
        return acidic.Response(self.n * self.n)


class FanOut(acidic.Job):
    """Spawns ``count`` children in its transactional first step, awaits them, then sums
    the squares of those that succeeded and lists the errors of those that failed."""

    count: int
    failing: int = -1  # the child that fails, if any

    @acidic.step
    def fan_out(self, tx: sa.Connection) -> acidic.Await:
        record(tx, self.key, "fan_out")
        keys = [self.spawn(Square(n=i, fail=i == self.failing)) for i in range(self.count)]
        self.ctx["children"] = keys
        return acidic.Await(*keys)

    @acidic.step
    def fan_in(self, tx: sa.Connection) -> acidic.Response:
        record(tx, self.key, "fan_in")
        children = self.children()
        assert [c.key for c in children] == self.ctx["children"]
        total = sum(c.result for c in children if c.status == acidic.RunStatus.SUCCEEDED)
        errors = [c.error.message for c in children if c.error is not None]
        return acidic.Response({"total": total, "errors": errors, "count": len(children)})


class SpawnThenFail(acidic.Job):
    """Spawns a child, then raises: the child must not exist."""

    @acidic.step
    def spawn_and_raise(self, tx: sa.Connection) -> None:
        self.spawn(Square(n=7))
        raise RuntimeError("after the spawn")

    @acidic.step
    def unreachable(self, tx: sa.Connection) -> None:  # pragma: no cover
        pass


class ForeignSpawn(acidic.Job):
    """Spawns from a non-transactional step that fails on its first attempt after the
    spawn: the retried step finds the same child."""

    def backoff(self, attempt: int) -> float:
        return 0.0

    @acidic.step(transactional=False)
    def spawn_child(self) -> acidic.Await:
        key = self.spawn(Square(n=3))
        if self.attempt == 1:
            raise RuntimeError("crash after the spawn")
        return acidic.Await(key)

    @acidic.step
    def collect(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response([c.result for c in self.children()])


class AwaitNobody(acidic.Job):
    @acidic.step
    def wait(self, tx: sa.Connection) -> acidic.Await:
        return acidic.Await("no-such-key")

    @acidic.step
    def after(self, tx: sa.Connection) -> None:  # pragma: no cover
        pass


JOBS: dict[str, type[acidic.Job]] = {
    "Square": Square,
    "FanOut": FanOut,
    "SpawnThenFail": SpawnThenFail,
    "ForeignSpawn": ForeignSpawn,
    "AwaitNobody": AwaitNobody,
}


def make_app(url: str) -> acidic.App:
    application = acidic.App(url)
    for name, cls in JOBS.items():
        application.job(name=name)(cls)
    return application


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    application = make_app(os.environ["ACIDIC_TEST_URL"])
    globals()["app"] = application
    return application
