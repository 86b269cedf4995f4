"""``manage.py migrate`` creates acidic's tables with acidic's own SQL, and agrees with
``acidic migrate`` on the version whichever runs first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ACIDIC_MIGRATIONS = ROOT / "src" / "acidic" / "_storage" / "migrations"
DJANGO_MIGRATIONS = ROOT / "src" / "acidic" / "django" / "migrations"

VERSIONS = (
    "from django.db import connection\n"
    "with connection.cursor() as c:\n"
    "    c.execute('SELECT version FROM acidic_schema_version ORDER BY version')\n"
    "    print(*[r[0] for r in c.fetchall()])\n"
    "    c.execute(\"SELECT name FROM django_migrations WHERE app = 'acidic' ORDER BY name\")\n"
    "    print(*[r[0] for r in c.fetchall()])\n"
)


def test_every_acidic_version_has_a_django_migration() -> None:
    """A new acidic migration needs its Django twin (``schema_version(N)``)."""
    for dialect in ("postgresql", "sqlite", "mysql"):
        acidic_names = sorted(p.stem for p in (ACIDIC_MIGRATIONS / dialect).glob("0*.sql"))
        django_names = sorted(p.stem for p in DJANGO_MIGRATIONS.glob("0*.py"))
        assert django_names == acidic_names
    for path in DJANGO_MIGRATIONS.glob("0*.py"):
        assert f"schema_version({int(path.stem[:4])})" in path.read_text()


def acidic_migrate(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "acidic", "migrate", "--database-url", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def latest() -> list[str]:
    return [str(int(p.stem[:4])) for p in sorted(DJANGO_MIGRATIONS.glob("0*.py"))]


def django_names() -> list[str]:
    return sorted(p.stem for p in DJANGO_MIGRATIONS.glob("0*.py"))


def test_manage_migrate_then_acidic_migrate(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    project = Project(database_url, backend, tmp_path)
    out = project.manage("migrate", "--no-input").stdout
    assert "Applying acidic.0001_initial... OK" in out
    assert "up to date: no migration to apply" in acidic_migrate(database_url)
    assert "up to date" in project.manage("acidic", "migrate").stdout
    versions, names = project.shell(VERSIONS).splitlines()
    assert versions.split() == latest()
    assert names.split() == django_names()


def test_acidic_migrate_then_manage_migrate(
    database_url: str, backend: str, tmp_path: Path
) -> None:
    assert "applied migration 0001_initial" in acidic_migrate(database_url)
    project = Project(database_url, backend, tmp_path)
    project.manage("migrate", "--no-input")
    versions, names = project.shell(VERSIONS).splitlines()
    assert versions.split() == latest()  # each version once: nothing applied twice
    assert names.split() == django_names()
    # The tables work: a job runs.
    assert '"rides": 5' in project.manage("ride", "mig").stdout
