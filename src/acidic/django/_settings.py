"""acidic's settings in a Django project, and the database they name.

``settings.ACIDIC`` (optional)::

    ACIDIC = {"DATABASE": "default", "QUEUES": ["default"], "LOCK_TIMEOUT": 90}

``DATABASE`` is an alias of ``settings.DATABASES``: acidic keeps its tables there and
runs steps on Django's connection to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

__all__ = ["Settings", "database_url", "read_settings"]

_KNOWN = {"DATABASE", "QUEUES", "LOCK_TIMEOUT", "IDEMPOTENCY"}
#: OPTIONS of Django's PostgreSQL backend that are Django's, not libpq's.
_DJANGO_PG_OPTIONS = {"isolation_level", "server_side_binding", "pool", "assume_role"}


@dataclass(frozen=True, slots=True)
class Settings:
    """``settings.ACIDIC``, checked, with its defaults."""

    database: str = "default"
    queues: tuple[str, ...] = ("default",)
    lock_timeout: float = 90.0


def read_settings() -> Settings:
    """``settings.ACIDIC`` (read when the App is first used, never at import)."""
    given: Any = getattr(settings, "ACIDIC", {})
    if not isinstance(given, dict):
        raise ImproperlyConfigured(f"settings.ACIDIC must be a dict, not {given!r}")
    unknown = sorted(set(given) - _KNOWN)
    if unknown:
        raise ImproperlyConfigured(
            f"settings.ACIDIC has unknown keys {unknown}; it takes {sorted(_KNOWN)}"
        )
    database = given.get("DATABASE", "default")
    if database not in settings.DATABASES:
        raise ImproperlyConfigured(
            f"settings.ACIDIC['DATABASE'] is {database!r}, which settings.DATABASES "
            f"does not define (it has {sorted(settings.DATABASES)})"
        )
    queues = given.get("QUEUES", ["default"])
    if isinstance(queues, str) or not queues:
        raise ImproperlyConfigured(
            f"settings.ACIDIC['QUEUES'] must be a list of queue names, not {queues!r}"
        )
    return Settings(
        database=database,
        queues=tuple(queues),
        lock_timeout=given.get("LOCK_TIMEOUT", 90.0),
    )


def database_url(alias: str, *, django_driver: bool = False) -> sa.URL:
    """The SQLAlchemy URL of Django's database ``alias``, as Django's connection now
    names it (a test runner renames it to its test database).

    ``django_driver``: name the driver Django's connection uses (for SQLAlchemy on
    that very connection); else the driver acidic's own connections use.
    """
    connection = connections[alias]
    params = connection.settings_dict
    vendor = connection.vendor
    if vendor == "sqlite":
        return sa.URL.create("sqlite", database=str(params["NAME"]))
    if vendor == "postgresql":
        driver = "psycopg"
        if django_driver and connection.Database.__name__ == "psycopg2":
            driver = "psycopg2"
        # libpq's own parameters (sslmode, options, ...), not Django's settings.
        query = {
            k: str(v)
            for k, v in params.get("OPTIONS", {}).items()
            if k not in _DJANGO_PG_OPTIONS and isinstance(v, str | int)
        }
        drivername = f"postgresql+{driver}"
    elif vendor == "mysql":
        driver = "pymysql"
        if django_driver and connection.Database.__name__ != "pymysql":
            driver = "mysqldb"  # mysqlclient, which Django documents
        drivername, query = f"mysql+{driver}", {"charset": "utf8mb4"}
    else:
        raise ImproperlyConfigured(
            f"acidic runs on PostgreSQL, SQLite and MySQL/MariaDB; the database "
            f"{alias!r} is {vendor}"
        )
    port = params.get("PORT")
    return sa.URL.create(
        drivername,
        username=params.get("USER") or None,
        password=params.get("PASSWORD") or None,
        host=params.get("HOST") or None,
        port=int(port) if port else None,
        database=params.get("NAME") or None,
        query=query,
    )
