"""The connection a transactional step runs on, and its guards.

While a step runs, a COMMIT on its connection would commit the step's writes without
the move of its recovery point (the step would run again after a crash, and write
twice). acidic refuses it before COMMIT is sent. It used to do so with an engine-wide
``commit`` listener; but any engine-wide listener of connection events makes SQLAlchemy
dispatch events around every statement and transaction of the engine (about 0.6 ms of
client CPU per ride job on PostgreSQL, 7% of a worker's; ``python -m bench.cpu``). The
guard is therefore a subclass of the engine's connection class, which checks a flag
where SQLAlchemy commits: statements pay nothing for it.

The second guard, against statements in a step whose transaction the database ended
(a MariaDB deadlock, a full SQLite disk; see ``Connected``), is a listener of that one
connection, put on it only once the break has happened.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Engine

from .._errors import JobDefinitionError, StorageError

__all__ = ["StepGuard", "guard_engine", "in_step", "mark_step"]


class StepGuard:
    """Mixed into the class of a step engine's connections (see :func:`guard_engine`)."""

    #: What runs on the connection ("step charge of job Ride"), while a step runs.
    acidic_step: str | None = None

    def _commit_impl(self) -> None:
        # SQLAlchemy's one path to a COMMIT (Connection.commit, a Transaction's commit,
        # a Session's): refused before the driver sends it.
        if self.acidic_step:
            raise JobDefinitionError(
                f"{self.acidic_step} tried to commit its transaction: a transactional step "
                "must leave commit and rollback to acidic, which commits its writes with "
                "its progress"
            )
        super()._commit_impl()  # type: ignore[misc]


_GUARDED: dict[type[Connection], type[Connection]] = {}


def _guarded_class(base: type[Connection]) -> type[Connection]:
    if issubclass(base, StepGuard):
        return base
    made = _GUARDED.get(base)
    if made is None:
        # The engine's own class stays the base (an application may have its own).
        made = _GUARDED[base] = type(f"Step{base.__name__}", (StepGuard, base), {})
    return made


def guard_engine(engine: Engine, *, owned: bool) -> Engine:
    """The engine steps run on: ``engine``'s pool and dialect, connections of a class
    that refuses a COMMIT while a step runs. An engine acidic made (``owned``) is
    changed in place; an application's is left as it is, and a proxy of it sharing
    its pool (``Engine.execution_options()``) is changed instead."""
    target = engine if owned else engine.execution_options()
    # ``_connection_cls``: the class Engine.connect() makes (SQLAlchemy 1.4 to 2.1);
    # tests/test_step_guard.py fails if a release stops using it.
    target._connection_cls = _guarded_class(engine._connection_cls)
    return target


def mark_step(conn: Connection, step: str | None) -> None:
    """Mark ``conn`` as running ``step`` (None: no step any more)."""
    if not isinstance(conn, StepGuard):
        raise StorageError(
            "internal error: a step's connection is not guarded against COMMIT "
            f"({type(conn).__qualname__}); this SQLAlchemy release is not supported"
        )
    conn.acidic_step = step


def in_step(conn: Any) -> str | None:
    """The step running on ``conn`` (a SQLAlchemy Connection, or None), if any."""
    return getattr(conn, "acidic_step", None)
