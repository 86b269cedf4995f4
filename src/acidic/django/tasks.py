"""A Django Tasks backend that stores tasks as acidic runs.

::

    TASKS = {"default": {"BACKEND": "acidic.django.tasks.AcidicBackend",
                         "QUEUES": ["default"]}}

``task.enqueue(...)`` stores a run of the job :data:`TASK_JOB` (inside an open
``transaction.atomic()`` it is written in that transaction); ``manage.py acidic worker``
executes it; ``get_result()`` / ``TaskResult.refresh()`` read its status, return
value and errors. Supports ``run_after``, ``priority``, ``queue_name`` (each one a queue
of ``settings.ACIDIC["QUEUES"]``), ``takes_context`` and async task functions.

A task that raises ends ``FAILED`` at once (Django tasks have no retries of their own);
a task whose worker died is taken over and run again, up to :data:`CRASH_TAKEOVERS`
times, before it ends ``FAILED``. The task runs in one transactional step: what it
writes through the ORM commits with its result.

Django 6 has ``django.tasks``; on Django 5.2, install the ``django-tasks`` backport.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from django.utils.module_loading import import_string

try:  # Django 6
    from django.tasks import TaskContext, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import TaskContext, TaskResult, TaskResultStatus
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist

from .._run import Run, RunStatus
from ._app import get_app
from ._task_job import CRASH_TAKEOVERS, TASK_JOB, DjangoTask

__all__ = ["CRASH_TAKEOVERS", "TASK_JOB", "AcidicBackend", "call_task"]

_STATUS = {
    RunStatus.PENDING: TaskResultStatus.READY,
    RunStatus.SCHEDULED: TaskResultStatus.READY,
    RunStatus.HALTED: TaskResultStatus.READY,
    RunStatus.RUNNING: TaskResultStatus.RUNNING,
    RunStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    RunStatus.FAILED: TaskResultStatus.FAILED,
}


class AcidicBackend(BaseTaskBackend):
    """Django Tasks backend on acidic: durable tasks executed by ``manage.py acidic
    worker``, with acidic's takeover of tasks whose worker died."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        declared = get_app().queues
        if task.queue_name not in declared:
            raise InvalidTask(
                f"queue {task.queue_name!r} is not one of acidic's queues {list(declared)} "
                "(settings.ACIDIC['QUEUES'])"
            )

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Store the task as a pending acidic run (in the caller's open atomic block,
        if any); its id is the run's key."""
        self.validate_task(task)
        run = get_app().enqueue(
            DjangoTask(
                task=task.module_path, args=list(args), kwargs=dict(kwargs), backend=self.alias
            ),
            key=f"task:{uuid.uuid4().hex}",
            run_at=task.run_after,
            queue=task.queue_name,
            priority=task.priority,
        )
        return self._result(run, task)

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result as acidic's run records it now."""
        run = get_app().get(result_id)
        if run is None or run.job != TASK_JOB:
            raise TaskResultDoesNotExist(result_id)
        return self._result(run)

    def _result(self, run: Run, task: Task | None = None) -> TaskResult:
        args = run.args
        if task is None:
            task = _task_at(str(args["task"])).using(
                priority=run.priority, queue_name=run.queue, backend=self.alias
            )
        started = [e.time for e in run.history if e.event == "started"]
        errors = []
        if run.status is RunStatus.FAILED and run.error is not None:
            errors.append(
                TaskError(exception_class_path=run.error.type, traceback=run.error.traceback)
            )
        status = _STATUS.get(run.status, TaskResultStatus.FAILED)  # cancelled: failed
        result = TaskResult(
            task=task,
            id=run.key,
            status=status,
            enqueued_at=run.created_at,
            started_at=started[0] if started else None,
            finished_at=run.finished_at,
            last_attempted_at=run.last_run_at,
            args=list(args["args"]),
            kwargs=dict(args["kwargs"]),
            backend=self.alias,
            errors=errors,
            worker_ids=[f"acidic-attempt-{n}" for n in range(1, run.attempts + 1)],
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", run.result)
        return result


def _task_at(module_path: str) -> Task:
    found = import_string(module_path)
    if not isinstance(found, Task):
        raise InvalidTask(f"{module_path} is not a Django task (decorate it with @task)")
    return found


def call_task(job: DjangoTask) -> Any:
    """Call the task of the run ``job`` (the step of :class:`DjangoTask`)."""
    task = _task_at(job.task)
    args = list(job.args)
    if task.takes_context:
        backend = AcidicBackend(job.backend, {})
        now = dt.datetime.now(dt.UTC)
        result = TaskResult(
            task=task,
            id=job.key,
            status=TaskResultStatus.RUNNING,
            enqueued_at=None,
            started_at=now,
            finished_at=None,
            last_attempted_at=now,
            args=list(job.args),
            kwargs=dict(job.kwargs),
            backend=backend.alias,
            errors=[],
            worker_ids=[f"acidic-attempt-{n}" for n in range(1, job.attempt + 1)],
        )
        args.insert(0, TaskContext(task_result=result))
    func = task.func
    if _is_async(func):
        return async_to_sync(func)(*args, **job.kwargs)
    return func(*args, **job.kwargs)


def _is_async(func: Any) -> bool:
    import inspect  # noqa: PLC0415

    return inspect.iscoroutinefunction(func)
