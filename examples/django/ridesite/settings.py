"""Settings of the example project: SQLite next to this file (set $DATABASE_NAME to
use another file)."""

import os
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only"  # noqa: S105
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "ridesite.urls"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "acidic.django",  # acidic's tables (manage.py migrate), admin, `manage.py acidic`
    "rides",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "acidic.django.IdempotencyMiddleware",  # the Idempotency-Key header
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
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DATABASE_NAME", str(BASE / "db.sqlite3")),
        # SQLite: take the write lock when a transaction begins (as acidic does), and
        # wait for it rather than fail.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
    }
}
ACIDIC = {"DATABASE": "default", "QUEUES": ["default"], "LOCK_TIMEOUT": 90}
# Django 6's tasks framework, durable on acidic (Django 5.2: pip install django-tasks).
TASKS = {"default": {"BACKEND": "acidic.django.tasks.AcidicBackend", "QUEUES": ["default"]}}
