"""The acidic job that executes a Django task (``acidic.django.tasks.AcidicBackend``)."""

from __future__ import annotations

from typing import Any

from .._job import Job
from .._outcomes import Response
from ._step import step

__all__ = ["CRASH_TAKEOVERS", "TASK_JOB", "DjangoTask"]

#: The registered name of the job that executes Django tasks.
TASK_JOB = "acidic.django.task"

#: How many times a task whose worker died (SIGKILL, lost machine) is taken over and
#: run again before it ends FAILED. A task that raises is not retried: Django tasks
#: have no retries of their own.
CRASH_TAKEOVERS = 2


class DjangoTask(Job):
    """Calls the Django task at ``task`` (its module path) with ``args`` and ``kwargs``
    in one transactional step: what it writes through the ORM commits with its result."""

    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    backend: str = "default"

    max_attempts = 1 + CRASH_TAKEOVERS
    discard_on = (Exception,)

    @step
    def call(self) -> Response:
        from .tasks import call_task  # noqa: PLC0415 - django.tasks only where tasks run

        return Response(call_task(self))
