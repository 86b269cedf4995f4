"""acidic in a Django project.

``INSTALLED_APPS += ["acidic.django"]``, optionally ``ACIDIC = {"DATABASE": "default",
"QUEUES": ["default"], "LOCK_TIMEOUT": 90}``; then ``from acidic.django import app``
is the :class:`DjangoApp` of the project: register jobs with ``@app.job`` in a
``jobs.py`` module of any installed app (imported at start-up). See docs/django.md.

- transactional steps run in ``transaction.atomic(using=alias)`` on Django's own
  connection: what a step writes through the ORM commits with its progress;
- ``acidic.django.step`` is ``acidic.step`` where a transactional step may leave out
  ``tx`` (its ORM writes are in the step's transaction already);
- ``app.enqueue`` inside ``transaction.atomic()`` joins that transaction;
- ``manage.py migrate`` creates acidic's tables, ``manage.py acidic ...`` is the
  ``acidic`` command line configured from the settings;
- :class:`IdempotencyMiddleware` serves ``Idempotency-Key`` requests;
- ``acidic.django.tasks.AcidicBackend`` is a Django Tasks backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import DjangoApp
    from ._middleware import IdempotencyMiddleware
    from ._step import step

    app: DjangoApp

__all__ = ["DjangoApp", "IdempotencyMiddleware", "app", "get_app", "step"]


def __getattr__(name: str) -> Any:
    # Lazy: Django imports this package while it loads the apps, before settings may
    # be read and models used.
    if name == "app":
        from ._app import get_app  # noqa: PLC0415

        return get_app()
    if name in ("DjangoApp", "get_app"):
        from . import _app  # noqa: PLC0415

        return getattr(_app, name)
    if name == "step":
        from ._step import step  # noqa: PLC0415

        return step
    if name == "IdempotencyMiddleware":
        from ._middleware import IdempotencyMiddleware  # noqa: PLC0415

        return IdempotencyMiddleware
    raise AttributeError(f"module 'acidic.django' has no attribute {name!r}")
