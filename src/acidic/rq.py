"""Run acidic jobs on RQ: :class:`RQExecutor` (``pip install 'acidic[rq]'``).

::

    # myproject/tasks.py
    from redis import Redis
    import acidic
    from acidic.rq import RQExecutor

    app = acidic.App("postgresql://...", executor=RQExecutor(Redis(), queue="acidic"))

    # rq worker -c myproject.tasks --with-scheduler --serializer json acidic
    # acidic relay --app myproject.tasks:app

The worker must run with ``--with-scheduler`` (delayed messages: ``Sleep``, retries,
locks held elsewhere) and the executor's serializer (JSON by default). See
``docs/executors.md``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from ._errors import InvalidArgumentError
from ._executors import DEFAULT_GRACE, Executor

__all__ = ["RQExecutor", "execute", "relay"]

#: The executors this process built, by name: what the RQ job functions look up (an RQ
#: job names a function by its import path and carries JSON arguments only).
_EXECUTORS: dict[str, RQExecutor] = {}


class RQExecutor(Executor):
    """Hands an App's runs to an RQ queue (``App(url, executor=RQExecutor(redis))``).

    ``redis`` is the connection (a ``redis.Redis``), ``queue`` the RQ queue's name.
    ``name`` (default: the queue's name) is how the worker finds this executor: it must
    be unique among the executors of one process. ``serializer`` must be the worker's
    (``rq worker --serializer json`` for the default :class:`rq.serializers.JSONSerializer`).
    Messages never time out (``job_timeout=-1``): a step runs as long as it needs, its
    lock renewed meanwhile. ``grace``: see :class:`acidic._executors.Executor`.

    The worker must be started with ``--with-scheduler``: delayed messages (``Sleep``,
    a retry's backoff, a lock held elsewhere) are RQ scheduled jobs. A worker killed
    mid-job loses its job in RQ; the run's lock then expires and the relay republishes
    it, so run ``acidic relay`` (or :func:`relay` from ``rq cron``) beside RQ workers.
    """

    name: ClassVar[str] = "rq"

    def __init__(
        self,
        redis: Redis,
        *,
        queue: str = "default",
        name: str | None = None,
        serializer: Any = JSONSerializer,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        super().__init__(grace=grace)
        if not isinstance(queue, str) or not queue:
            raise InvalidArgumentError(f"queue must be a queue name, not {queue!r}")
        self.redis = redis
        self.queue = Queue(queue, connection=redis, serializer=serializer)
        self.key = name or queue
        _EXECUTORS[self.key] = self

    def send(self, key: str, *, delay: float = 0.0, missing: int = 0) -> None:
        options: dict[str, Any] = {
            "args": (self.key, key, missing),
            "job_timeout": -1,
            "result_ttl": 0,
            "failure_ttl": 3600,
        }
        if delay > 0:
            self.queue.enqueue_in(dt.timedelta(seconds=delay), execute, **options)
        else:
            self.queue.enqueue(execute, **options)

    def __repr__(self) -> str:
        return f"<acidic.rq.RQExecutor queue={self.queue.name!r}>"


def _executor(name: str) -> RQExecutor:
    try:
        return _EXECUTORS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"no RQExecutor named {name!r} in this process: start the worker with "
            "`rq worker -c <module that builds the App>` so that it is created"
        ) from None


def execute(name: str, key: str, missing: int = 0) -> str:
    """The RQ job of every message: execute ``key``'s run through acidic (the executor
    ``name`` finds the App); the return value names what was done."""
    return _executor(name).execute(key, missing).outcome


def relay(name: str = "default") -> int:
    """One relay pass of the executor ``name`` (its queue's name by default), for
    ``rq cron``: ``cron.register(acidic.rq.relay, queue_name=..., args=("acidic",),
    interval=30)``. Returns how many runs were republished."""
    return _executor(name).relay()
