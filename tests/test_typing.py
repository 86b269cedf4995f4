"""The user's view of acidic's types, checked by mypy (see tests/typing/api.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "tests" / "typing" / "api.py"


def _mypy(path: Path) -> subprocess.CompletedProcess[str]:
    # The project's .mypy_cache (warm from `mypy` on the package) keeps this fast.
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            "--no-error-summary",
            str(path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


@pytest.mark.slow
def test_typing__public_api_type_checks_as_users_write_it() -> None:
    result = _mypy(API)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_typing__checker_reports_a_wrong_argument_type(tmp_path: Path) -> None:
    """The check above has teeth: the same file with one ignore removed fails on that line."""
    source = API.read_text("utf-8")
    wrong = 'CreateRide(user_id="x", origin="a", target="b")'
    assert f"{wrong}  # type: ignore[arg-type]" in source
    lines = source.replace(f"{wrong}  # type: ignore[arg-type]", wrong).splitlines()
    line = next(n for n, text in enumerate(lines, start=1) if text.strip() == wrong)
    copy = tmp_path / "api_without_ignore.py"
    copy.write_text("\n".join(lines) + "\n", "utf-8")

    result = _mypy(copy)

    assert result.returncode == 1, result.stdout + result.stderr
    errors = [e for e in result.stdout.splitlines() if ": error: " in e]
    assert len(errors) == 1, result.stdout
    # mypy may name the file by an earlier path of the same module from its cache.
    assert f"{copy.name}:{line}: error: " in errors[0], errors
    assert '"user_id"' in errors[0]
    assert errors[0].endswith("[arg-type]"), errors
