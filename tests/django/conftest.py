"""acidic.django's tests: a Django project (tests/django/project) on a fresh database of
each backend, driven through real processes (``python -m django ...``: migrate, the
worker, jobs killed with SIGKILL).

Django 6 (its built-in ``django.tasks``) needs Python 3.12+: these tests run under
scripts/test-django, in a Python 3.12 virtualenv of their own; under an older Django
(the Python 3.11 suite) they are not collected.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.databases import BACKENDS, create_database

try:
    import django
except ImportError:  # pragma: no cover - the dev extra installs Django
    django = None

if django is None or django.VERSION < (6, 0):
    collect_ignore_glob = ["test_*.py"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Project:
    """The test project on one database: run its ``manage.py`` commands."""

    url: str
    backend: str
    tmp_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "ACIDIC_TEST_DJANGO_DB": self.url,
            "DJANGO_SETTINGS_MODULE": "tests.django.project.settings",
            "PYTHONPATH": str(ROOT),
            **self.env,
            **extra,
        }
        if "ACIDIC_TEST_CRASH" not in extra:
            env.pop("ACIDIC_TEST_CRASH", None)
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "django", *args]

    def manage(
        self, *args: str, check: bool = True, timeout: float = 90, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args),
            env=self.environ(**extra),
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def start(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.environ(**extra),
            cwd=self.tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def shell(self, code: str, **extra: str) -> str:
        """Run ``code`` in ``manage.py shell`` (Django set up); return its stdout."""
        done = self.manage("shell", "--no-imports", "-c", code, check=True, timeout=90, **extra)
        return done.stdout


@pytest.fixture(scope="module", params=BACKENDS)
def project(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Project]:
    """The test project, migrated, on a fresh database of each backend, shared by the
    tests of a module (migrating takes seconds; the tests use keys of their own)."""
    backend = str(request.param)
    tmp_path = tmp_path_factory.mktemp(f"django-{backend}")
    for url in create_database(backend, tmp_path):
        project = Project(url, backend, tmp_path)
        project.manage("migrate", "--no-input")
        yield project
