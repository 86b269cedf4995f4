"""Run acidic jobs on Dramatiq: :class:`DramatiqExecutor`
(``pip install 'acidic[dramatiq]'``).

::

    # myproject/tasks.py
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    import acidic
    from acidic.dramatiq import DramatiqExecutor

    broker = RabbitmqBroker(url="amqp://...")
    app = acidic.App("postgresql://...", executor=DramatiqExecutor(broker, queue_name="acidic"))

    # dramatiq myproject.tasks:broker -Q acidic

See ``docs/executors.md``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

import dramatiq
from dramatiq.middleware import Middleware

from ._errors import InvalidArgumentError
from ._executors import DEFAULT_GRACE, Executor

__all__ = ["DramatiqExecutor"]

log = logging.getLogger("acidic.executor")

#: Dramatiq's TimeLimit middleware kills an actor after 10 minutes by default; a step
#: may legitimately run longer (its lock is renewed meanwhile): a week, in milliseconds.
TIME_LIMIT_MS = 7 * 24 * 3600 * 1000


class DramatiqExecutor(Executor):
    """Hands an App's runs to Dramatiq (``App(url, executor=DramatiqExecutor(broker))``).

    Constructing it declares an actor on ``broker`` (``actor_name``, default
    ``acidic_execute``, on ``queue_name``), so that the stock worker (``dramatiq
    module:broker``) finds it by importing the module that builds the App. The actor's
    options keep Dramatiq's middleware from ending a run: ``max_retries=None`` (its
    ``Retries`` only ever re-delivers a message whose delivery hit a broker error;
    acidic's attempts and ``max_attempts`` decide about runs), and a ``time_limit`` of a
    week (``TimeLimit`` would interrupt a long step after 10 minutes). Later deliveries
    (``Sleep``, retries, a lock held elsewhere) are delayed messages.

    ``relay_every`` (seconds, default 30; None: off) adds a middleware that runs a relay
    pass at that period in every worker process, in a thread, from the worker's boot
    to its shutdown (several relays at once are harmless). ``grace``: see
    :class:`acidic._executors.Executor`.
    """

    name: ClassVar[str] = "dramatiq"

    def __init__(
        self,
        broker: dramatiq.Broker,
        *,
        queue_name: str = "default",
        actor_name: str = "acidic_execute",
        relay_every: float | None = 30.0,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        super().__init__(grace=grace)
        if not isinstance(broker, dramatiq.Broker):
            raise InvalidArgumentError(f"DramatiqExecutor takes a dramatiq.Broker, not {broker!r}")
        if not isinstance(queue_name, str) or not queue_name:
            raise InvalidArgumentError(f"queue_name must be a queue name, not {queue_name!r}")
        self.broker = broker
        self.queue_name = queue_name
        executor = self

        def execute(key: str, missing: int = 0) -> str:
            return executor.execute(key, missing).outcome

        self.actor: Any = dramatiq.actor(
            broker=broker,
            actor_name=actor_name,
            queue_name=queue_name,
            max_retries=None,
            time_limit=TIME_LIMIT_MS,
        )(execute)
        if relay_every is not None:
            broker.add_middleware(_Relay(self, float(relay_every)))

    def send(self, key: str, *, delay: float = 0.0, missing: int = 0) -> None:
        self.actor.send_with_options(
            args=(key, missing), delay=int(delay * 1000) if delay > 0 else None
        )

    def __repr__(self) -> str:
        return f"<acidic.dramatiq.DramatiqExecutor queue_name={self.queue_name!r}>"


class _Relay(Middleware):
    """Relay passes in each worker process while it runs (Dramatiq has no scheduler)."""

    def __init__(self, executor: DramatiqExecutor, every: float) -> None:
        self.executor = executor
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.executor.relay_forever,
            kwargs={"interval": self.every, "stopped": self._stop.is_set},
            name="acidic-relay",
            daemon=True,
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
