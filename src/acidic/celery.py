"""Run acidic jobs on Celery: :class:`CeleryExecutor` (``pip install 'acidic[celery]'``).

::

    # myproject/tasks.py
    import celery
    import acidic
    from acidic.celery import CeleryExecutor

    celery_app = celery.Celery("myproject", broker="amqp://...")
    app = acidic.App("postgresql://...", executor=CeleryExecutor(celery_app, queue="acidic"))

    # celery -A myproject.tasks:celery_app worker -Q acidic
    # celery -A myproject.tasks:celery_app beat      (the relay, every 30 s)

See ``docs/executors.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import celery

from ._errors import InvalidArgumentError
from ._executors import DEFAULT_GRACE, Executor

__all__ = ["CeleryExecutor"]


class CeleryExecutor(Executor):
    """Hands an App's runs to Celery (``App(url, executor=CeleryExecutor(celery_app))``).

    Constructing it registers two tasks on ``celery_app``, so that the stock worker
    (``celery -A module:celery_app worker``) finds them by importing the module that
    builds the App:

    * ``<task_name>`` (default ``acidic.execute``): executes a run by its key. It is
      declared ``acks_late=True`` and ``reject_on_worker_lost=True`` (a message is
      acknowledged after the execution, and given back to the broker when the worker
      process dies), ``ignore_result=True`` and without Celery retries
      (``max_retries=None`` is never used: acidic's attempts and ``max_attempts``
      decide; a later delivery is a new message with a ``countdown``);
    * ``<task_name>.relay``: one relay pass; with ``relay_every`` (seconds, default 30)
      it is added to ``celery_app.conf.beat_schedule``, so ``celery beat`` runs it.

    ``queue``: the Celery queue of the messages (None: Celery's default routing).
    ``grace``: see :class:`acidic._executors.Executor`.
    """

    name: ClassVar[str] = "celery"

    def __init__(
        self,
        celery_app: celery.Celery,
        *,
        queue: str | None = None,
        task_name: str = "acidic.execute",
        relay_every: float | None = 30.0,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        super().__init__(grace=grace)
        if not isinstance(celery_app, celery.Celery):
            raise InvalidArgumentError(
                f"CeleryExecutor takes a celery.Celery application, not {celery_app!r}"
            )
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise InvalidArgumentError(f"queue must be a queue name or None, not {queue!r}")
        self.celery_app = celery_app
        self.queue = queue
        executor = self

        @celery_app.task(  # type: ignore[untyped-decorator]
            name=task_name,
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            serializer="json",
        )
        def execute(key: str, missing: int = 0) -> str:
            return executor.execute(key, missing).outcome

        @celery_app.task(  # type: ignore[untyped-decorator]
            name=f"{task_name}.relay", ignore_result=True, serializer="json"
        )
        def relay() -> int:
            return executor.relay()

        self.task: Any = execute
        self.relay_task: Any = relay
        if relay_every is not None:
            schedule = dict(celery_app.conf.beat_schedule or {})
            schedule[f"{task_name}.relay"] = {
                "task": f"{task_name}.relay",
                "schedule": float(relay_every),
                "options": {} if queue is None else {"queue": queue},
            }
            celery_app.conf.beat_schedule = schedule

    def send(self, key: str, *, delay: float = 0.0, missing: int = 0) -> None:
        options: dict[str, Any] = {"args": (key, missing)}
        if self.queue is not None:
            options["queue"] = self.queue
        if delay > 0:
            options["countdown"] = delay
        self.task.apply_async(**options)

    def __repr__(self) -> str:
        return f"<acidic.celery.CeleryExecutor queue={self.queue!r}>"
