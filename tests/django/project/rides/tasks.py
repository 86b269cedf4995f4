"""Django tasks of the test project (TASKS' backend is acidic.django.tasks.AcidicBackend)."""

from __future__ import annotations

import os
import signal
from typing import Any

from django.tasks import TaskContext, task

from .models import Ride


@task
def add(a: int, b: int) -> int:
    return a + b


@task(priority=10, queue_name="rides")
def ride_row(rider: str) -> int:
    return int(Ride.objects.create(rider=rider, stage="task").pk)


@task
def boom(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def attempt(context: TaskContext, crash: bool = False) -> dict[str, Any]:
    """With ``crash``, its worker dies on the first attempt (SIGKILL)."""
    if crash and context.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"id": context.task_result.id, "attempt": context.attempt}


@task
async def aadd(a: int, b: int) -> int:
    return a + b
