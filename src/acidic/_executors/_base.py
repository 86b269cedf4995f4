"""The executor port: what ``App(executor=...)`` needs of a queue, and what every queue's
adapter (:mod:`acidic.celery`, :mod:`acidic.rq`, :mod:`acidic.dramatiq`) shares.

An adapter implements one method, :meth:`Executor.send` (put a message naming a key on
its queue, delayed by some seconds), and registers with its queue a task that calls
:meth:`Executor.execute`. Everything else is here: publishing after the enqueuing
transaction commits, answering a message through the engine's deliveries, and the
relay that republishes runs whose message was lost.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import sqlalchemy as sa

from .._engine._delivery import Delivery, deliver, relay_pass
from .._errors import InvalidArgumentError

if TYPE_CHECKING:
    from .._app import App

__all__ = ["DEFAULT_GRACE", "Executor"]

log = logging.getLogger("acidic.executor")

#: Seconds a due run may wait for its message before a relay republishes it.
DEFAULT_GRACE = 30.0
#: Seconds after which a message whose delivery hit a database error comes again.
_ERROR_DELAY = 2.0
#: Where the keys to publish after a caller's transaction commits wait (Connection.info).
_PENDING = "acidic_executor_publish"


class Executor(ABC):
    """Hands an App's runs to another queue: a message per key, the run row the truth.

    ``grace`` is how long (seconds) a due run may wait for its message before a relay
    republishes it; keep it above the queue's usual latency, or runs are published
    twice (harmless: the key's lock lets one execution through).
    """

    #: The executor's name, stored with its runs (``Run.executor``).
    name: ClassVar[str]

    def __init__(self, *, grace: float = DEFAULT_GRACE) -> None:
        if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
            raise InvalidArgumentError(f"grace must be seconds >= 0, not {grace!r}")
        self.grace = float(grace)
        self._app: App | None = None

    # -- wiring -----------------------------------------------------------------------

    def attach(self, app: App) -> None:
        """Called by ``App(executor=self)``: this executor serves that App."""
        if self._app is not None and self._app is not app:
            raise InvalidArgumentError(
                f"this {type(self).__name__} already serves {self._app!r}: make one per App"
            )
        if app.engine.dialect.name == "sqlite":
            raise InvalidArgumentError(
                f"{type(self).__name__}: the {self.name} worker forks processes, and a "
                "SQLite database cannot be shared safely by forked processes; use "
                "PostgreSQL or MariaDB/MySQL with a queue's executor (or acidic's own worker)"
            )
        self._app = app
        # The queue's worker forks after importing the App: a child must not reuse the
        # parent's pooled connections (two processes on one socket).
        engine = weakref.ref(app.engine)

        def fresh_pool() -> None:
            alive = engine()
            if alive is not None:
                alive.dispose(close=False)

        os.register_at_fork(after_in_child=fresh_pool)

    @property
    def app(self) -> App:
        """The App this executor serves."""
        if self._app is None:
            raise InvalidArgumentError(
                f"this {type(self).__name__} serves no App yet: pass it as "
                "App(url, executor=...) in the module the queue's worker imports"
            )
        return self._app

    # -- publishing -------------------------------------------------------------------

    @abstractmethod
    def send(self, key: str, *, delay: float = 0.0, missing: int = 0) -> None:
        """Put a message for ``key`` on the queue, delivered after ``delay`` seconds
        (``missing``: how many deliveries found no run yet, carried in the message)."""

    def publish(self, key: str, *, delay: float = 0.0) -> None:
        """Hand ``key``'s run to the queue now (or after ``delay`` seconds)."""
        self.send(key, delay=max(float(delay), 0.0))

    def publish_after_commit(self, key: str, connection: sa.Connection, delay: float) -> None:
        """Publish ``key`` once ``connection``'s transaction commits; nothing if it rolls
        back. A crash in between leaves the run to the relay."""
        if not connection.in_transaction():
            self.publish(key, delay=delay)
            return
        # Connection.info belongs to the pooled connection, shared by later Connection
        # objects: the listeners are on this object, added once.
        if not sa.event.contains(connection, "commit", _published_on_commit):
            sa.event.listen(connection, "commit", _published_on_commit)
            sa.event.listen(connection, "rollback", _dropped_on_rollback)
        connection.info.setdefault(_PENDING, []).append((self, key, delay))

    # -- the queue's worker -----------------------------------------------------------

    def execute(self, key: str, missing: int = 0) -> Delivery:
        """What the queue's task does with a message: execute the run if it is due (see
        :func:`acidic._engine._delivery.deliver`) and publish its next wake-up."""
        try:
            delivery = deliver(self.app.manager, key, missing=missing)
        except Exception:
            # The database is unreachable (or the job unknown here): the message must not
            # be lost with the error; the run row still says what is to be done.
            log.exception("delivering key %r failed; it comes again in %.0f s", key, _ERROR_DELAY)
            self.send(key, delay=_ERROR_DELAY, missing=missing)
            return Delivery("error", _ERROR_DELAY)
        if delivery.again is not None:
            self.send(key, delay=delivery.again, missing=delivery.missing)
        return delivery

    def relay(self, *, limit: int = 500) -> int:
        """One relay pass: republish the runs of this executor that are due but not in
        flight (due for more than ``grace``, or running under an expired lock); return
        how many. Several relays at once publish each run once."""
        published = 0
        while True:
            keys = relay_pass(self.app.manager, self.name, grace=self.grace, limit=limit)
            for key in keys:
                self.send(key)
            published += len(keys)
            if len(keys) < limit:
                return published

    def relay_forever(self, *, interval: float = 5.0, stopped: Callable[[], bool]) -> None:
        """Relay passes every ``interval`` seconds until ``stopped()``; a pass that
        fails (database or broker unreachable) is logged and tried again."""
        while not stopped():
            try:
                count = self.relay()
                if count:
                    log.info("relay republished %d run(s) to %s", count, self.name)
            except Exception:
                log.exception("relay pass failed; trying again in %.1f s", interval)
            # Short slices, no lock: a signal handler only sets a flag.
            deadline = time.monotonic() + interval
            while not stopped() and time.monotonic() < deadline:
                time.sleep(min(0.1, interval))

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__}>"


def _published_on_commit(connection: sa.Connection) -> None:
    # Fired as the commit is sent: the message may arrive before the row is visible,
    # which a delivery answers by looking again shortly (Delivery "missing").
    for executor, key, delay in connection.info.pop(_PENDING, ()):
        try:
            executor.publish(key, delay=delay)
        except Exception:  # the relay republishes it; the caller's commit must go on
            log.exception("publishing key %r failed; the relay will republish it", key)


def _dropped_on_rollback(connection: sa.Connection) -> None:
    connection.info.pop(_PENDING, None)
