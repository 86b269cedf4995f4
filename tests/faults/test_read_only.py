"""The database turns read-only, loses write permission, or its disk fills up, with a
run half done: acidic must raise a clear error (a ``StorageError`` carrying the
database's own message), write nothing half (the run row, its history and the effects
agree: a step is either wholly committed or not at all), and the run must complete
once write access returns.

* SQLite: the file system holding the database is remounted read-only (a tmpfs of the
  test's own), and a tiny tmpfs fills up (``database or disk is full``). Both need
  ``mount`` (root): skipped where it is not permitted.
* PostgreSQL: the role acidic connects as loses INSERT/UPDATE (REVOKE) while a step
  is running; a session opened with ``default_transaction_read_only`` (through the
  URL's ``options``) tries to start a run; the tables are moved to a tablespace on a
  small tmpfs, which fills up (needs ``mount``).
* MariaDB: the user loses INSERT/UPDATE (table privileges, effective at the next
  statement) while a step runs, and the server is put in ``read_only`` mode (root, the
  suite's admin, is exempt) while the user tries to start a run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

import acidic
from tests.support import procs
from tests.support.jobs import create_tables, effect_counts, effects, get_run

pytestmark = pytest.mark.slow

blobs_metadata = sa.MetaData()
blobs = sa.Table(
    "fault_blobs",
    blobs_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(255), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


class Gate(acidic.Job):
    """Two recorded steps; on its first attempt the second waits, after its write, for
    the test to release it (the fault is injected meanwhile). ``blob`` bytes are
    written by the second step too (to fill a disk)."""

    n: int
    blob: int = 0

    entered: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()
    gated: ClassVar[bool] = False
    fail: ClassVar[bool] = False

    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        tx.execute(effects.insert().values(run_key=self.key, step="first"))

    @acidic.step
    def second(self, tx: sa.Connection) -> acidic.Response:
        tx.execute(effects.insert().values(run_key=self.key, step="second"))
        if self.blob:
            tx.execute(blobs.insert().values(run_key=self.key, data=os.urandom(self.blob)))
        if Gate.fail:
            raise RuntimeError("second fails")
        if self.attempt == 1 and Gate.gated:
            Gate.entered.set()
            assert Gate.release.wait(30)
        return acidic.Response(self.attempt)


class GateShortLock(Gate):
    lock_timeout = 1.0


def _options(url: sa.URL) -> str:
    """The ``options`` of a test database's PostgreSQL URL (``-csearch_path=...``)."""
    options = url.query["options"]
    assert isinstance(options, str), options
    return options


def _app(url: str, **options: Any) -> acidic.App:
    app = acidic.App(url, **options)
    app.job(name="Gate")(Gate)
    app.job(name="GateShortLock")(GateShortLock)
    return app


@pytest.fixture(autouse=True)
def _gate() -> Iterator[None]:
    Gate.entered = threading.Event()
    Gate.release = threading.Event()
    Gate.gated = False
    Gate.fail = False
    yield
    Gate.release.set()


def _check_half_done(app: acidic.App, key: str) -> acidic.Run:
    """The run committed ``first`` and nothing of ``second``."""
    run = get_run(app, key)
    assert run.recovery_point == "second", run
    assert effect_counts(app.engine, key) == {"first": 1}
    events = procs.events(run)
    assert events[:2] == [("first", "started", 1), ("first", "succeeded", 1)]
    assert ("second", "succeeded", 1) not in events
    return run


def _check_done(app: acidic.App, key: str) -> None:
    run = get_run(app, key)
    assert (run.status, run.error) == ("succeeded", None)
    assert effect_counts(app.engine, key) == {"first": 1, "second": 1}
    ends = [(s, e) for s, e, _ in procs.events(run) if e != "started"]
    assert ends.count(("first", "succeeded")) == 1
    assert ends.count(("second", "succeeded")) == 1


def _run_until_unlocked(app: acidic.App, job: acidic.Job, key: str) -> Any:
    """``app.run``, again while the key is locked by the failed owner's stale lock."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return app.run(job, key=key)
        except acidic.KeyLockedError:
            assert time.monotonic() < deadline, "the run stayed locked"
            time.sleep(0.1)


def _run_gated(
    app: acidic.App, job: acidic.Job, key: str
) -> tuple[threading.Thread, dict[str, Any]]:
    Gate.gated = True
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = app.run(job, key=key)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    assert Gate.entered.wait(30), outcome
    return thread, outcome


# -- SQLite -------------------------------------------------------------------------------


def _mount(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def test_read_only__sqlite_on_a_read_only_file_system(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "fs", "16m") as fs:
        url = f"sqlite:///{fs / 'acidic.sqlite3'}"
        key = "ro-fs"
        with _app(url) as app:
            app.migrate()
            create_tables(app.engine)
            # Half done: first committed, second failed.
            Gate.fail = True
            with pytest.raises(RuntimeError, match="second fails"):
                app.run(Gate(n=1), key=key)
            Gate.fail = False
            assert _check_half_done(app, key).status == "failed"
        # Every connection is closed: the file system can be remounted read-only.
        _mount(["mount", "-o", "remount,ro", str(fs)])
        try:
            with _app(url) as app, pytest.raises(acidic.StorageError) as refused:
                app.run(Gate(n=1), key=key)
            # SQLite's own words (a WAL database cannot even be opened read-only
            # without its -shm file, which cannot be created).
            assert "unable to open database file" in str(refused.value), refused.value
            assert isinstance(refused.value.__cause__, sa.exc.OperationalError)
        finally:
            _mount(["mount", "-o", "remount,rw", str(fs)])
        with _app(url) as app:
            assert _check_half_done(app, key).status == "failed"  # untouched
            assert app.run(Gate(n=1), key=key) == 2
            _check_done(app, key)


def test_read_only__sqlite_disk_full(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "fs", "8m") as fs:
        url = f"sqlite:///{fs / 'acidic.sqlite3'}"
        key = "disk-full"
        job = GateShortLock(n=1, blob=512 * 1024)
        with _app(url) as app:
            app.migrate()
            create_tables(app.engine)
            blobs_metadata.create_all(app.engine)
            # second has written its rows (in SQLite's cache) and waits at the gate.
            thread, outcome = _run_gated(app, job, key)
            filler = fs / "filler"
            # Outer suppress: the disk may be full before the filler is even opened.
            with contextlib.suppress(OSError), open(filler, "wb") as f:
                while True:  # until the disk is full
                    f.write(b"\0" * 65536)
                    f.flush()
            Gate.release.set()
            thread.join(30)
            assert not thread.is_alive()
            error = outcome.get("error")
            assert isinstance(error, acidic.StorageError), outcome
            assert "database or disk is full" in str(error), error
            stuck = _check_half_done(app, key)
            assert stuck.status in ("failed", "running"), stuck  # recorded, or not at all
            assert procs.count_rows(app.engine, blobs) == 0

            filler.unlink(missing_ok=True)  # space again
            assert _run_until_unlocked(app, job, key) == 2
            _check_done(app, key)
            assert procs.count_rows(app.engine, blobs) == 1


def test_read_only__sqlite_file_opened_read_only_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "acidic.sqlite3"
    key = "ro-uri"
    with _app(f"sqlite:///{path}") as app:
        app.migrate()
        create_tables(app.engine)
        Gate.fail = True
        with pytest.raises(RuntimeError):
            app.run(Gate(n=1), key=key)
        Gate.fail = False
    # Not "tables do not exist": the tables are there, the file is read-only.
    with (
        _app(f"sqlite:///file:{path}?mode=ro&uri=true") as read_only,
        pytest.raises(acidic.StorageError, match=r"readonly|read-only|unable to open"),
    ):
        read_only.run(Gate(n=1), key=key)
    with _app(f"sqlite:///{path}") as app:
        assert _check_half_done(app, key).status == "failed"
        assert app.run(Gate(n=1), key=key) == 2
        _check_done(app, key)


# -- PostgreSQL and MariaDB: a user that loses write permission ---------------------------


@contextlib.contextmanager
def _limited_user(admin: sa.Engine, database_url: str) -> Iterator[tuple[str, str]]:
    """A new database user allowed to read and write every table of the test's database
    (nothing else); yields (its URL, its name). Dropped afterwards."""
    name = f"acidic_lim_{uuid.uuid4().hex[:10]}"
    url = sa.make_url(database_url)
    with admin.connect() as conn:
        if admin.dialect.name == "postgresql":
            schema = _options(url).split("search_path=")[1].split()[0]
            conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN")
            conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {name}")
            conn.exec_driver_sql(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {name}"
            )
            conn.exec_driver_sql(
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {name}"
            )
        else:
            conn.exec_driver_sql(f"CREATE USER '{name}'@'%%'")
            # Table privileges (not database ones): a REVOKE takes effect at once.
            for table in sa.inspect(conn).get_table_names():
                conn.exec_driver_sql(
                    "GRANT SELECT, INSERT, UPDATE, DELETE "
                    f"ON {url.database}.{table} TO '{name}'@'%%'"
                )
        conn.commit()
    try:
        yield url.set(username=name).render_as_string(hide_password=False), name
    finally:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE usename = '{name}'"
                )
                conn.exec_driver_sql(f"DROP OWNED BY {name}")
                conn.exec_driver_sql(f"DROP ROLE {name}")
            else:
                conn.exec_driver_sql(f"DROP USER '{name}'@'%%'")
            conn.commit()


def _writes(admin: sa.Engine, name: str, database_url: str, grant: bool) -> None:
    """Grant or revoke the user's INSERT, UPDATE and DELETE on every table."""
    verb, prep = ("GRANT", "TO") if grant else ("REVOKE", "FROM")
    with admin.connect() as conn:
        if admin.dialect.name == "postgresql":
            options = _options(sa.make_url(database_url))
            schema = options.split("search_path=")[1].split()[0]
            conn.exec_driver_sql(
                f"{verb} INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} {prep} {name}"
            )
        else:
            database = sa.make_url(database_url).database
            for table in sa.inspect(conn).get_table_names():
                conn.exec_driver_sql(
                    f"{verb} INSERT, UPDATE, DELETE ON {database}.{table} {prep} '{name}'@'%%'"
                )
        conn.commit()


DENIED = {"postgresql": "permission denied", "mysql": "command denied"}


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_read_only__user_loses_write_permission_during_a_step(
    app: acidic.App, database_url: str, admin: sa.Engine, backend: str
) -> None:
    key = "revoked"
    job = GateShortLock(n=1)
    with _limited_user(admin, database_url) as (url, name), _app(url) as limited:
        thread, outcome = _run_gated(limited, job, key)  # second wrote, not committed
        _writes(admin, name, database_url, grant=False)
        Gate.release.set()
        thread.join(30)
        assert not thread.is_alive()
        error = outcome.get("error")
        assert isinstance(error, acidic.StorageError), outcome
        assert DENIED[backend] in str(error), error
        assert "second" in str(error)
        # Recording the failure needed write permission too: the caller is told.
        notes = " ".join(getattr(error, "__notes__", []))
        assert "could not record this failure" in notes, notes
        stuck = _check_half_done(app, key)
        assert stuck.status == "running"  # until its lock is stale
        assert stuck.error is None

        # Still without write permission: refused, nothing changes.
        procs.sleep_until_stale(app, key, GateShortLock.lock_timeout)
        with pytest.raises(acidic.StorageError, match=DENIED[backend]):
            limited.run(job, key=key)
        assert _check_half_done(app, key).attempts == stuck.attempts

        _writes(admin, name, database_url, grant=True)
        assert _run_until_unlocked(limited, job, key) == 2
    _check_done(app, key)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_read_only__postgresql_read_only_session(app: acidic.App, database_url: str) -> None:
    """A session whose transactions are read-only (``default_transaction_read_only``,
    set through the URL's ``options``, as a read replica or a locked-down role would)."""
    key = "pg-read-only"
    with _app(database_url) as writable:
        Gate.fail = True
        with pytest.raises(RuntimeError):
            writable.run(Gate(n=1), key=key)
        Gate.fail = False
    parsed = sa.make_url(database_url)
    options = _options(parsed) + " -cdefault_transaction_read_only=on"
    read_only_url = parsed.update_query_dict({"options": options}).render_as_string(
        hide_password=False
    )
    with _app(read_only_url) as read_only:
        with pytest.raises(acidic.StorageError, match="read-only transaction"):
            read_only.run(Gate(n=1), key=key)
        with pytest.raises(acidic.StorageError, match="read-only transaction"):
            read_only.run(Gate(n=1), key="pg-read-only-new")
    with _app(database_url) as writable:
        assert writable.get("pg-read-only-new") is None  # nothing stored
        assert _check_half_done(writable, key).status == "failed"
        assert writable.run(Gate(n=1), key=key) == 2
        _check_done(writable, key)


@pytest.mark.parametrize("backend", ["mysql"])
def test_read_only__mariadb_read_only_server(
    app: acidic.App, database_url: str, admin: sa.Engine
) -> None:
    """``SET GLOBAL read_only = 1`` (users without the READ ONLY ADMIN privilege, i.e. not
    the suite's root, may not write): a half-done run cannot continue, a new one cannot
    start, both with the server's message; afterwards the run completes."""
    key = "mariadb-read-only"
    with _limited_user(admin, database_url) as (url, _name), _app(url) as limited:
        Gate.fail = True
        with pytest.raises(RuntimeError):
            limited.run(Gate(n=1), key=key)
        Gate.fail = False
        with admin.connect() as conn:
            conn.exec_driver_sql("SET GLOBAL read_only = 1")
        try:
            with pytest.raises(acidic.StorageError, match="read-only"):
                limited.run(Gate(n=1), key=key)
            with pytest.raises(acidic.StorageError, match="read-only"):
                limited.run(Gate(n=1), key="mariadb-read-only-new")
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql("SET GLOBAL read_only = 0")
        assert app.get("mariadb-read-only-new") is None
        assert _check_half_done(app, key).status == "failed"
        assert limited.run(Gate(n=1), key=key) == 2
    _check_done(app, key)


# -- PostgreSQL: the disk of a tablespace fills up ------------------------------------------


@contextlib.contextmanager
def _full_tablespace(admin: sa.Engine, schema: str) -> Iterator[Path]:
    """Move every table of ``schema`` into a tablespace on a small tmpfs of its own;
    yield the tmpfs' path (fill it to make the disk full). Everything is moved back and
    the tablespace dropped afterwards."""
    base = Path(tempfile.mkdtemp(prefix="acidic-pgfs-"))
    base.chmod(0o755)  # the server's user must reach the tablespace's directory
    with _tmpfs(base / "fs", "8m") as fs:
        shutil.chown(fs, "postgres", "postgres")
        fs.chmod(0o700)
        name = f"acidic_ts_{uuid.uuid4().hex[:10]}"
        auto = admin.execution_options(isolation_level="AUTOCOMMIT")
        with auto.connect() as conn:
            conn.exec_driver_sql(f"CREATE TABLESPACE {name} LOCATION '{fs}'")
        tables = sa.inspect(admin).get_table_names(schema=schema)
        try:
            with auto.connect() as conn:
                for table in tables:
                    conn.exec_driver_sql(f"ALTER TABLE {schema}.{table} SET TABLESPACE {name}")
            yield fs
        finally:
            for filler in fs.glob("filler*"):
                filler.unlink()
            with auto.connect() as conn:
                for table in tables:
                    conn.exec_driver_sql(f"ALTER TABLE {schema}.{table} SET TABLESPACE pg_default")
                conn.exec_driver_sql(f"DROP TABLESPACE {name}")
    shutil.rmtree(base, ignore_errors=True)


def _fill(fs: Path) -> None:
    with open(fs / "filler", "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_read_only__postgresql_disk_full(
    app: acidic.App, database_url: str, admin: sa.Engine
) -> None:
    key = "pg-disk-full"
    job = Gate(n=1, blob=1024 * 1024)
    schema = _options(sa.make_url(database_url)).split("search_path=")[1].split()[0]
    blobs_metadata.create_all(app.engine)
    with _full_tablespace(admin, schema) as fs, _app(database_url) as writer:
        Gate.fail = True
        with pytest.raises(RuntimeError):
            writer.run(job, key=key)
        Gate.fail = False
        assert _check_half_done(app, key).status == "failed"

        _fill(fs)
        with pytest.raises((acidic.StorageError, sa.exc.OperationalError)) as full:
            writer.run(job, key=key)
        # The server's message, whoever raised it: the step (its insert could not
        # extend the table) or acidic (its own write could not).
        assert "No space left on device" in str(full.value), repr(full.value)
        print(f"disk full: {full.value!r}")
        run = _check_half_done(app, key)
        assert run.status in ("failed", "running"), run
        assert procs.count_rows(app.engine, blobs) == 0

        (fs / "filler").unlink()
        assert _run_until_unlocked(writer, job, key) == get_run(app, key).attempts
        _check_done(app, key)
        assert procs.count_rows(app.engine, blobs) == 1
