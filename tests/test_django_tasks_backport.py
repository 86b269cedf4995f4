"""acidic.django on Python 3.11's Django 5.2 with the django-tasks backport: a task
enqueued through AcidicBackend, executed, its result read (the full Django suite,
tests/django, runs under Python 3.12 with Django 6: scripts/test-django)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

django = pytest.importorskip("django")
pytest.importorskip("django_tasks")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(django.VERSION >= (6, 0), reason="Django 6 has django.tasks"),
]

SETTINGS = """
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r},
                          "OPTIONS": {{"transaction_mode": "IMMEDIATE"}}}}}}
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_tasks",
                  "acidic.django"]
SECRET_KEY = "tests"
USE_TZ = True
TASKS = {{"default": {{"BACKEND": "acidic.django.tasks.AcidicBackend"}}}}
"""

TASKS = """
from django_tasks import task

@task
def add(a, b):
    return a + b

@task
def boom():
    raise ValueError("no")
"""

MAIN = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from acidic.django import app
import backport_tasks as t
ok, bad = t.add.enqueue(2, 3), t.boom.enqueue()
print(ok.status, bad.status)
app.drain()
ok.refresh()
bad.refresh()
print(ok.status, ok.return_value, bad.status, bad.errors[0].exception_class_path)
"""


def test_tasks_backend__django_52_backport(tmp_path: Path) -> None:
    (tmp_path / "backport_settings.py").write_text(SETTINGS.format(db=str(tmp_path / "db")))
    (tmp_path / "backport_tasks.py").write_text(TASKS)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backport_settings",
        "PYTHONPATH": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", MAIN],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [
        "READY READY",
        "SUCCESSFUL 5 FAILED builtins.ValueError",
    ]
