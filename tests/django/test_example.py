"""examples/django works as its README says: two commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_example__readme_commands(tmp_path: Path) -> None:
    folder = tmp_path / "example"
    shutil.copytree(ROOT / "examples" / "django", folder)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for command in (["migrate"], ["ridedemo"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "(replayed: true)" in out
    assert "ride 1: done, driver Dana, charges 1" in out
    assert "task: receipt for ride 1: 12.50 EUR, driver Dana" in out
    assert "rides booked by the two POSTs: 1" in out
    assert "the job's run: succeeded" in out
