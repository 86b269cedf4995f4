"""SQLAlchemy on Django's own database connection.

acidic writes through SQLAlchemy Core; Django's ORM through its own connection. For a
step's ORM writes to commit with the step's progress, acidic's statements of that
step go through Django's connection of the calling thread, and the step's transaction
is Django's ``transaction.atomic``:

* SQLAlchemy's pool hands out :class:`DjangoConnection`, a DBAPI connection that is
  Django's (``connections[alias].connection``) for every statement;
* beginning a transaction enters ``transaction.atomic(using=alias)``; SQLAlchemy's
  commit and rollback leave it (so ``transaction.on_commit`` callbacks run after the
  commit, and Django, not SQLAlchemy, sends BEGIN and COMMIT).

Three modes, one engine each:

``step``
    A transactional step: refused inside an open ``atomic`` block (the step's writes
    would commit with the caller's transaction, later or never, while acidic records
    the step as done).
``nest``
    Django's migrations of ``acidic.django``: a savepoint inside the migration's
    transaction.
``join``
    ``app.enqueue`` inside the caller's ``atomic``: no transaction of its own; the
    run exists only if the caller's transaction commits.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import sqlalchemy as sa
from django.db import DatabaseError, connections, transaction
from sqlalchemy.pool import SingletonThreadPool

from .._errors import AcidicError
from ._settings import database_url

__all__ = ["DjangoConnection", "Mode", "django_engine"]

Mode = Literal["step", "nest", "join"]


class DjangoConnection:
    """A DBAPI connection standing for Django's connection ``alias`` in this thread."""

    def __init__(self, alias: str, mode: Mode) -> None:
        self._alias = alias
        self._mode = mode
        self._atomic: Any = None
        self._thread = 0

    def _raw(self) -> Any:
        connection = connections[self._alias]
        connection.ensure_connection()
        return connection.connection

    def begin(self) -> None:
        """Enter ``transaction.atomic`` (SQLAlchemy's ``begin`` event calls it)."""
        if self._mode == "join":
            return
        connection = connections[self._alias]
        if self._mode == "step" and connection.in_atomic_block:
            raise AcidicError(
                f"a transactional step cannot run inside an open transaction.atomic() on "
                f"database {self._alias!r}: its writes would commit with that transaction "
                "(or never) while acidic records the step as done; run the job outside "
                "the atomic block (or enqueue it there: it starts after the commit)"
            )
        atomic = transaction.atomic(using=self._alias)
        atomic.__enter__()
        self._atomic = atomic
        self._thread = threading.get_ident()

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return self._raw().cursor(*args, **kwargs)

    def commit(self) -> None:
        self._leave(rollback=False)

    def rollback(self) -> None:
        self._leave(rollback=True)

    def close(self) -> None:
        # Django's connection is Django's to close; but a transaction of ours still open
        # is rolled back (SQLAlchemy invalidates a connection whose transaction a step
        # broke, e.g. by committing it itself), in the thread that opened it only: the
        # pool may close connections of other threads.
        if self._atomic is not None and self._thread == threading.get_ident():
            self._leave(rollback=True)

    def _leave(self, *, rollback: bool) -> None:
        atomic, self._atomic = self._atomic, None
        if atomic is None:  # autocommit, or joined to the caller's transaction
            return
        if rollback:
            transaction.set_rollback(True, using=self._alias)
        try:
            atomic.__exit__(None, None, None)
        except DatabaseError as exc:
            # Django wraps the driver's error; SQLAlchemy (and acidic's runner, which
            # checks whether a failed commit landed) expects the driver's own.
            raise (exc.__cause__ or exc) from None

    def __getattr__(self, name: str) -> Any:
        # Whatever else a SQLAlchemy dialect asks of its driver's connection.
        return getattr(self._raw(), name)


_engines: dict[tuple[str, Mode], sa.Engine] = {}
_lock = threading.Lock()


def django_engine(alias: str, mode: Mode) -> sa.Engine:
    """The SQLAlchemy engine on Django's connection ``alias`` in ``mode``."""
    with _lock:
        engine = _engines.get((alias, mode))
        if engine is None:
            engine = _engines[(alias, mode)] = _create(alias, mode)
        return engine


def _create(alias: str, mode: Mode) -> sa.Engine:
    # One DjangoConnection per thread, as Django has one connection per thread; a pool
    # as large as the threads there may be (its connections cost nothing to keep).
    url = database_url(alias, django_driver=True)
    options: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        # It would look hstore up through the driver's own connection class.
        options["use_native_hstore"] = False
    engine = sa.create_engine(
        url,
        creator=lambda: DjangoConnection(alias, mode),
        poolclass=SingletonThreadPool,
        pool_size=100_000,
        **options,
    )

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        dbapi_connection = conn.connection.dbapi_connection
        assert isinstance(dbapi_connection, DjangoConnection)
        dbapi_connection.begin()

    return engine
