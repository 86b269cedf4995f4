"""The ``acidic`` command. The console script runs for real from the virtualenv's ``bin``
for ``--version`` and the demo (a child process it SIGKILLs); the other commands run
in-process (:func:`tests.support.cli.invoke_cli`): what they print and exit with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from tests.support.cli import ACIDIC, invoke_cli, run_cli


def test_cli__script_is_installed() -> None:
    assert ACIDIC.is_file(), f"the acidic console script is not installed at {ACIDIC}"


def test_cli__version() -> None:
    done = run_cli("--version")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"acidic {acidic.__version__}"


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("migrate", "--database-url", "not a url"),
        ("runs", "list", "--status", "lost"),
        ("no-such-command",),
    ],
)
def test_cli__in_process_calls_print_and_exit_as_the_console_script(args: tuple[str, ...]) -> None:
    """What the in-process calls of the other tests stand for (tests.support.cli)."""
    real = run_cli(*args)
    in_process = invoke_cli(*args)

    assert (in_process.returncode, in_process.stdout, in_process.stderr) == (
        real.returncode,
        real.stdout,
        real.stderr,
    )


def test_cli__in_process_calls_refuse_the_commands_that_need_a_process() -> None:
    for command in ("worker", "relay", "dashboard", "demo"):
        with pytest.raises(ValueError, match="must run in a real process"):
            invoke_cli(command, "--help")


def test_cli__help_lists_commands_and_exit_codes() -> None:
    done = invoke_cli("--help")

    assert done.returncode == 0, done.stderr
    assert "migrate" in done.stdout
    assert "demo" in done.stdout
    assert "Exit codes" in done.stdout
    assert invoke_cli("no-such-command").returncode == 2


def test_migrate__applies_then_is_up_to_date(database_url: str) -> None:
    first = invoke_cli("migrate", "--database-url", database_url)

    assert first.returncode == 0, first.stderr
    assert "applied migration 0001_initial" in first.stdout

    second = invoke_cli("migrate", "--database-url", database_url)

    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert "applied" not in second.stdout
    with acidic.App(database_url) as app:
        tables = set(sa.inspect(app.engine).get_table_names())
    assert {"acidic_runs", "acidic_history", "acidic_schema_version"} <= tables


def test_migrate__uses_the_environment_url(database_url: str, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = invoke_cli("migrate", url=database_url, cwd=cwd)

    assert done.returncode == 0, done.stderr
    assert "applied migration 0001_initial" in done.stdout
    assert not (cwd / "acidic.sqlite3").exists()


def test_migrate__defaults_to_sqlite_in_the_current_directory(tmp_path: Path) -> None:
    done = invoke_cli("migrate", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "sqlite:///acidic.sqlite3" in done.stdout
    assert (tmp_path / "acidic.sqlite3").is_file()


def _unreachable(database_url: str, tmp_path: Path) -> str:
    """A URL of the same backend that cannot be opened."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.sqlite3'}"
    return url.set(database="acidic_no_such_database").render_as_string(hide_password=False)


def test_migrate__bad_url_is_one_clear_line_and_exit_1(database_url: str, tmp_path: Path) -> None:
    done = invoke_cli("migrate", "--database-url", _unreachable(database_url, tmp_path))

    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("acidic: error: ")
    assert "database error while migrating" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "unusable database URL 'not a url'"),
        ("nosuchdb://host/db", "unusable database URL"),
        ("sqlite://", "in-memory database"),
    ],
)
def test_migrate__unusable_url_is_one_clear_line_and_exit_1(url: str, says: str) -> None:
    done = invoke_cli("migrate", "--database-url", url)

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("acidic: error: ")
    assert says in lines[0]


def test_migrate__hides_the_password_in_messages(tmp_path: Path) -> None:
    done = invoke_cli("migrate", "--database-url", "postgresql://u:s3cret@127.0.0.1:1/x")

    assert done.returncode == 1
    assert "s3cret" not in done.stderr
    assert "***" in done.stderr


def _check_demo_output(out: str) -> str:
    """Assert what the demo must show; return its key."""
    key = re.search(r"key (demo-ride-[0-9a-f]{8})", out)
    assert key is not None, out
    # The crash, in the middle of the last step, of a real child process.
    assert "SIGKILL now, in the middle of send_receipt" in out
    assert "the child process died of SIGKILL" in out
    assert "recovery point send_receipt" in out
    assert "0 'receipt.sent' record(s), ride charge id None: rolled back" in out
    # The resume, at that step only, by a new attempt.
    assert "resumed at send_receipt without repeating the earlier steps" in out
    attempt_2 = out.split("Attempt 2:", 1)[1]
    assert "▶ send_receipt  attempt 2" in attempt_2
    assert "create_ride_and_audit_record  attempt" not in attempt_2
    assert "create_stripe_charge  attempt" not in attempt_2
    # Each write exactly once.
    for what in (
        "rides (demo_rides)",
        "'ride.created' audit records",
        "'receipt.sent' audit records",
        "charges at the fake provider",
    ):
        line = next(ln for ln in out.splitlines() if what in ln)
        assert line.endswith(": 1: exactly once"), line
    assert "NOT exactly once" not in out
    # The history table: every step's events, with their attempt.
    for row in (
        ("create_ride_and_audit_record", "started", 1),
        ("create_stripe_charge", "succeeded", 1),
        ("send_receipt", "succeeded", 2),
    ):
        step, event, attempt = row
        pattern = rf"{step}\s*[│|]\s*{event}\s*[│|][^\n]*[│|]\s*{attempt}\s*[│|]"
        assert re.search(pattern, out), row
    return key[1]


@pytest.mark.slow
def test_demo__crashes_resumes_and_runs_twice_on_the_sqlite_default(tmp_path: Path) -> None:
    # $ACIDIC_DATABASE_URL is set to show that the demo ignores it: it creates tables
    # of its own, so it goes to another database only when told with --database-url.
    elsewhere = tmp_path / "elsewhere.sqlite3"
    keys = []
    for _ in range(2):
        done = run_cli("demo", cwd=tmp_path, url=f"sqlite:///{elsewhere}")
        assert done.returncode == 0, done.stdout + done.stderr
        keys.append(_check_demo_output(done.stdout))

    assert keys[0] != keys[1]
    assert (tmp_path / "acidic.sqlite3").is_file()
    assert not elsewhere.exists()
    with acidic.App(f"sqlite:///{tmp_path / 'acidic.sqlite3'}") as app:
        for key in keys:
            run = app.get(key)
            assert run is not None
            assert run.status == "succeeded"
            assert run.attempts == 2
            assert [(e.step, e.event, e.attempt) for e in run.history] == [
                ("create_ride_and_audit_record", "started", 1),
                ("create_ride_and_audit_record", "succeeded", 1),
                ("create_stripe_charge", "started", 1),
                ("create_stripe_charge", "succeeded", 1),
                ("send_receipt", "started", 2),
                ("send_receipt", "succeeded", 2),
            ]


@pytest.mark.slow
def test_demo__runs_on_every_backend(database_url: str, tmp_path: Path) -> None:
    done = run_cli("demo", "--database-url", database_url, cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    _check_demo_output(done.stdout)
    if not database_url.startswith("sqlite"):
        assert not (tmp_path / "acidic.sqlite3").exists()


def test_demo__bad_url_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    done = run_cli("demo", "--database-url", "not a url", cwd=tmp_path)

    assert done.returncode == 1
    assert done.stderr.strip().startswith("acidic: error: unusable database URL")
    assert len(done.stderr.strip().splitlines()) == 1


def test_docs__api_reference_covers_every_public_name() -> None:
    """docs/reference/acidic.md, which README links, documents each name of ``acidic.__all__``."""
    root = Path(__file__).resolve().parents[1]
    reference = (root / "docs" / "reference" / "acidic.md").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")

    missing = [n for n in acidic.__all__ if not re.search(rf"\b{n}\b", reference)]
    assert missing == []
    assert "scripts/test" in readme
    assert "acidic demo" in readme
