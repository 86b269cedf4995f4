"""``create_app``: what loading the dashboard loads, and the arguments it refuses."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import acidic

pytest.importorskip("starlette")


def test_dashboard__imports_no_cli_module() -> None:
    """A host application that mounts the dashboard has no use for the command line."""
    code = (
        "import sys, acidic.dashboard\n"
        "print(sorted(m for m in sys.modules if m.startswith('acidic._cli')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[acidic.App]:
    with acidic.App(f"sqlite:///{tmp_path / 'acidic.sqlite3'}") as app:
        yield app


@pytest.mark.parametrize(
    ("options", "error", "says"),
    [
        ({"token": "secret-token", "auth": lambda r: True}, ValueError, "not both"),
        ({"token": "short"}, ValueError, "at least 8 characters"),
        ({"token": b"secret-token"}, TypeError, "token must be a str"),
        ({"auth": "yes"}, TypeError, "auth must be a function"),
        ({"refresh": -1}, ValueError, "refresh must be a number of seconds >= 0"),
        ({"refresh": "3"}, TypeError, "refresh must be a number"),
        ({"secret": "not-bytes"}, TypeError, "secret must be bytes"),
    ],
)
def test_create_app__bad_arguments_are_value_or_type_errors(
    app: acidic.App, options: dict[str, Any], error: type[Exception], says: str
) -> None:
    from acidic.dashboard import create_app

    with pytest.raises(error, match=says) as caught:
        create_app(app, **options)
    assert isinstance(caught.value, acidic.AcidicError)
