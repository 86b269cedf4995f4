"""acidic's tables created by ``manage.py migrate``: the migrations of ``acidic.django``
run acidic's own migration files for the database in use, one acidic version each, and
both record the version where ``acidic migrate`` does (``acidic_schema_version``), so the
two commands agree whichever runs first."""

from __future__ import annotations

import functools
from typing import Any

from django.db import migrations

from .._storage._dialects import dialect_for
from .._storage._migrations import migrate
from ._connection import django_engine
from ._settings import read_settings

__all__ = ["schema_version"]


def _apply(version: int, apps: Any, schema_editor: Any) -> None:
    alias = schema_editor.connection.alias
    if alias != read_settings().database:
        return  # acidic's tables live in the database settings.ACIDIC names only
    engine = django_engine(alias, "nest")
    migrate(engine, dialect_for(engine), upto=version)


def schema_version(version: int) -> migrations.RunPython:
    """The Django operation that brings acidic's tables to ``version`` (irreversible:
    acidic's migrations only go forward)."""
    # atomic=False: on MySQL/MariaDB, whose DDL commits implicitly, Django would wrap the
    # operation in a transaction whose savepoints the DDL destroys. Where DDL is
    # transactional, the migration's own transaction still holds it.
    return migrations.RunPython(functools.partial(_apply, version), atomic=False, elidable=False)
