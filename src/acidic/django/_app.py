"""The App of a Django project: acidic's tables in a Django database, steps in Django's
transactions, enqueue joining the caller's ``transaction.atomic``."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import sqlalchemy as sa
from django.apps import apps
from django.db import connections

import django

from .._app import App
from .._errors import AcidicError
from .._job import Job
from .._run import Run
from ._connection import django_engine
from ._settings import Settings, database_url, read_settings
from ._task_job import TASK_JOB, DjangoTask

__all__ = ["DjangoApp", "get_app"]


class DjangoApp(App):
    """An :class:`acidic.App` on the Django database ``alias``.

    acidic's own bookkeeping (claims, locks, the queue) uses connections of its own to
    that database; a transactional step runs on Django's connection of the calling
    thread, inside ``transaction.atomic(using=alias)``, and its progress commits there
    with whatever the step wrote through the ORM. :meth:`enqueue` inside an open
    ``transaction.atomic()`` on the alias joins it.
    """

    def __init__(
        self,
        alias: str = "default",
        *,
        queues: tuple[str, ...] = ("default",),
        lock_timeout: float = 90.0,
    ) -> None:
        super().__init__(database_url(alias), queues=queues, lock_timeout=lock_timeout)
        self.alias = alias
        _follow_django_settings(self.engine, alias)
        store = self.manager.store
        store.step_engine = store.guard_steps(django_engine(alias, "step"))

    def run(self, job: Job, key: str | None = None) -> Any:
        """As :meth:`acidic.App.run`; refused (nothing runs, nothing is locked) inside an
        open ``transaction.atomic()`` on this App's database, whose commit would decide
        the steps' writes after acidic recorded them as done: enqueue there instead."""
        if connections[self.alias].in_atomic_block:
            raise AcidicError(
                f"app.run() cannot run a job inside an open transaction.atomic() on "
                f"database {self.alias!r}: its steps commit their own transactions; "
                "enqueue the job there instead (it starts once the transaction commits)"
            )
        return super().run(job, key)

    def enqueue(
        self,
        job: Job,
        key: str | None = None,
        *,
        run_at: dt.datetime | None = None,
        queue: str = "default",
        priority: int = 0,
        connection: sa.Connection | None = None,
    ) -> Run:
        """As :meth:`acidic.App.enqueue`; inside an open ``transaction.atomic()`` on
        this App's database, the run is written in that transaction (it exists only if
        the transaction commits) without a ``connection`` argument."""
        if connection is None and connections[self.alias].in_atomic_block:
            with django_engine(self.alias, "join").connect() as joined:
                return super().enqueue(
                    job, key, run_at=run_at, queue=queue, priority=priority, connection=joined
                )
        return super().enqueue(
            job, key, run_at=run_at, queue=queue, priority=priority, connection=connection
        )


def _follow_django_settings(engine: sa.Engine, alias: str) -> None:
    """Connect where Django's settings point at connection time, not where they pointed
    when the App was made: Django's test runner renames the database to its test
    database after the project has started."""

    @sa.event.listens_for(engine, "do_connect")
    def _connect(
        dialect: sa.Dialect, record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> None:
        now_cargs, now_cparams = dialect.create_connect_args(database_url(alias))
        cargs[:] = now_cargs
        cparams.update(now_cparams)


_app: DjangoApp | None = None
_app_lock = threading.Lock()


def get_app() -> DjangoApp:
    """The project's App, made from ``settings.ACIDIC`` when it is first asked for
    (``from acidic.django import app`` asks for it)."""
    global _app  # noqa: PLW0603 - one App per Django project, as one settings module
    if not apps.apps_ready and not apps.loading:
        # `acidic worker --app acidic.django:app` outside manage.py (the worker's
        # --processes children): set Django up from $DJANGO_SETTINGS_MODULE first.
        django.setup()
    with _app_lock:
        if _app is None:
            config: Settings = read_settings()
            app = DjangoApp(config.database, queues=config.queues, lock_timeout=config.lock_timeout)
            app.job(name=TASK_JOB)(DjangoTask)  # Django tasks (acidic.django.tasks)
            _app = app
        return _app
