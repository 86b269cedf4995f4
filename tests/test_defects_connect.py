"""A database acidic cannot connect to is reported on one readable line naming the URL
(password hidden) and the reason, and a missing driver names the one extra that
installs it (issue 11, defects found in use: the error was the driver's repr, with a
literal ``\\n\\t`` and without the URL, and the missing-driver message named both
extras)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import acidic
from tests.support.cli import invoke_cli
from tests.support.databases import MYSQL_ADMIN, POSTGRESQL_ADMIN
from tests.support.jobs import CreateRide

REFUSED = "connection refused (is the server running?)"


def _closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _check_one_line(message: str) -> None:
    assert "\n" not in message
    assert "\\n" not in message
    assert "\\t" not in message
    assert "secret" not in message


@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "mariadb"])
def test_connection_failure__a_closed_port_names_the_url_and_the_reason(scheme: str) -> None:
    port = _closed_port()
    url = f"{scheme}://root:secret@127.0.0.1:{port}/x"
    shown = f"{scheme}://root:***@127.0.0.1:{port}/x"

    with acidic.App(url) as app:
        with pytest.raises(acidic.StorageError) as migrating:
            app.migrate()
        with pytest.raises(acidic.StorageError) as reading:
            app.get("k")
        app.job(name="CreateRide")(CreateRide)
        with pytest.raises(acidic.StorageError) as running:
            app.run(CreateRide(user_id=1, origin="a", target="b"), key="k")

    assert str(migrating.value) == (
        f"database error while migrating: cannot connect to {shown}: {REFUSED}"
    )
    for error in (migrating.value, reading.value, running.value):
        _check_one_line(str(error))
        assert f"cannot connect to {shown}: {REFUSED}" in str(error)


@pytest.mark.parametrize(
    ("admin", "says"),
    [
        (POSTGRESQL_ADMIN, 'database "acidic_no_such_db" does not exist'),
        (MYSQL_ADMIN, "unknown database 'acidic_no_such_db'"),
    ],
)
def test_connection_failure__a_missing_database_on_a_real_server_is_named(
    admin: str, says: str
) -> None:
    url = sa.make_url(admin).set(database="acidic_no_such_db")
    try:
        with acidic.App(admin) as probe, probe.engine.connect():
            pass
    except sa.exc.OperationalError:
        pytest.skip(f"{url.get_backend_name()} is not reachable")

    with acidic.App(url) as app, pytest.raises(acidic.StorageError) as caught:
        app.migrate()

    shown = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)
    assert str(caught.value) == (
        f"database error while migrating: cannot connect to {shown}: {says}"
    )


def test_connection_failure__an_sqlite_file_that_cannot_be_opened_is_named(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.sqlite3'}"

    with acidic.App(url) as app, pytest.raises(acidic.StorageError) as caught:
        app.migrate()

    message = str(caught.value)
    _check_one_line(message)
    assert f"cannot connect to {url}: unable to open database file" in message
    assert "does its directory exist" in message


def test_connection_failure__the_cli_says_it_on_one_line() -> None:
    port = _closed_port()

    done = invoke_cli("migrate", "--database-url", f"postgresql://root:secret@127.0.0.1:{port}/x")

    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"acidic: error: postgresql://root:***@127.0.0.1:{port}/x: database error while "
        f"migrating: cannot connect to postgresql://root:***@127.0.0.1:{port}/x: {REFUSED}"
    )


MISSING_DRIVER = """
import sys
sys.modules[{module!r}] = None  # as if the driver were not installed
import acidic
try:
    acidic.App({url!r})
except acidic.AcidicError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("module", "url", "extra", "other"),
    [
        ("psycopg", "postgresql://u:secret@db/x", "acidic[postgresql]", "acidic[mysql]"),
        ("pymysql", "mysql://u:secret@db/x", "acidic[mysql]", "acidic[postgresql]"),
        ("pymysql", "mariadb://u@db/x", "acidic[mysql]", "acidic[postgresql]"),
    ],
)
def test_missing_driver__names_only_the_extra_that_installs_it(
    module: str, url: str, extra: str, other: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MISSING_DRIVER.format(module=module, url=url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    message = done.stdout.strip()
    assert message.startswith("unusable database URL"), done
    assert f"pip install '{extra}'" in message
    assert other not in message
    assert "secret" not in message
