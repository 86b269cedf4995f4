"""A Django project for acidic's Django tests, on the database named by the URL in
``$ACIDIC_TEST_DJANGO_DB`` (a database of tests/support/databases.py)."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

_url = sa.make_url(os.environ.get("ACIDIC_TEST_DJANGO_DB", "sqlite:///django-test.sqlite3"))
_backend = _url.get_backend_name()

if _backend == "sqlite":
    _db: dict[str, Any] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _url.database,
        # IMMEDIATE: a step takes SQLite's write lock when it begins, as acidic's own
        # transactions do (a deferred one may fail at its first write instead of waiting).
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
    }
elif _backend == "postgresql":
    _db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.database,
        "USER": _url.username,
        "HOST": _url.host,
        "PORT": _url.port,
        "OPTIONS": {k: v for k, v in _url.query.items() if isinstance(v, str)},
    }
else:
    # Django documents mysqlclient; these tests use PyMySQL in its place (no compiler).
    import pymysql  # type: ignore[import-untyped]

    pymysql.version_info = (2, 2, 7, "final", 0)  # what Django checks of mysqlclient
    pymysql.install_as_MySQLdb()
    _db = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": _url.database,
        "USER": _url.username,
        "HOST": _url.host,
        "PORT": _url.port,
        "OPTIONS": {"charset": "utf8mb4"},
    }
# The test database of Django's test runner (pytest-django): the same database, unless
# $ACIDIC_TEST_DJANGO_TEST_NAME names another (tests/django/test_pytest_django.py).
_db["TEST"] = {"NAME": os.environ.get("ACIDIC_TEST_DJANGO_TEST_NAME") or _db["NAME"]}

DATABASES = {"default": _db}
SECRET_KEY = "acidic-tests"
DEBUG = False
STATIC_URL = "/static/"
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "tests.django.project.urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "acidic.django",
    "tests.django.project.rides",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "acidic.django.IdempotencyMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ACIDIC = {
    "QUEUES": ["default", "rides"],
    "LOCK_TIMEOUT": float(os.environ.get("ACIDIC_TEST_LOCK", "30")),
}
TASKS = {
    "default": {
        "BACKEND": "acidic.django.tasks.AcidicBackend",
        "QUEUES": ["default", "rides"],
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False}
