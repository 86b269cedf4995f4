"""``--app module:app`` whose module raises while it is imported (issue 11, defects found
in use): one line naming the file, the line and the error, as docs/operations.md
promises, and ``--traceback`` (``acidic worker``, ``acidic dashboard``) for the whole
traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli

BROKEN = """\
import acidic

app = acidic.App()


def helper():
    return {}["missing"]


settings = helper()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory whose module ``broken`` raises KeyError (line 7) when imported."""
    (tmp_path / "broken.py").write_text(BROKEN, encoding="utf-8")
    (tmp_path / "typo.py").write_text("app = (\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("command", ["worker", "dashboard"])
def test_app_option__a_module_that_raises_is_one_line_naming_file_line_and_error(
    project: Path, command: str
) -> None:
    done = run_cli(command, "--app", "broken:app", cwd=project)

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("acidic: error: ")
    assert "importing 'broken' for --app failed at broken.py, line 7" in lines[0]
    assert "KeyError: 'missing'" in lines[0]
    assert "--traceback" in lines[0]


@pytest.mark.parametrize("command", ["worker", "dashboard"])
def test_app_option__traceback_prints_the_whole_traceback(project: Path, command: str) -> None:
    done = run_cli(command, "--app", "broken:app", "--traceback", cwd=project)

    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):"), done.stderr
    assert 'broken.py", line 10, in <module>' in done.stderr
    assert 'broken.py", line 7, in helper' in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("acidic: error: importing 'broken' for --app failed")
    assert "--traceback" not in last


def test_app_option__a_syntax_error_names_its_file_and_line(project: Path) -> None:
    done = run_cli("worker", "--app", "typo:app", cwd=project)

    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "failed at typo.py, line 1: SyntaxError: '(' was never closed" in lines[0]


def test_app_option__a_module_that_does_not_exist_is_still_cannot_import(project: Path) -> None:
    done = run_cli("worker", "--app", "no_such_module:app", cwd=project)

    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "cannot import 'no_such_module' for --app" in lines[0]
