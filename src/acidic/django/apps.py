"""The Django application ``acidic.django``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.utils.module_loading import autodiscover_modules

from .._storage._engines import _use_wal as use_wal
from ._settings import read_settings

__all__ = ["AcidicConfig"]


class AcidicConfig(AppConfig):
    """Imports the ``jobs`` module of every installed app at start-up (as the admin
    imports ``admin.py``), so that ``manage.py acidic worker`` knows every job."""

    name = "acidic.django"
    label = "acidic"
    verbose_name = "acidic"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        connection_created.connect(_sqlite_wal, dispatch_uid="acidic.django.wal")
        autodiscover_modules("jobs")


def _sqlite_wal(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Put acidic's SQLite database in WAL mode from Django's first connection, as
    acidic's own connections do: then acidic reads its tables while a Django
    transaction holds the write lock (and the switch never waits behind one)."""
    if connection.vendor != "sqlite" or connection.alias != read_settings().database:
        return
    cursor = connection.connection.cursor()
    try:
        use_wal(cursor)
    finally:
        cursor.close()
