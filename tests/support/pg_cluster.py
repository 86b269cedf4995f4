"""A private PostgreSQL cluster for the tests that stop, restart or kill the server.

Those tests must never touch the server of ``ACIDIC_TEST_POSTGRESQL``: it may be the
machine's shared server, with other people's applications on it. :func:`private_cluster`
makes a cluster of its own instead: ``initdb`` in a new temporary folder, ``pg_ctl
start`` on a free port of 127.0.0.1 (its Unix socket in that folder too, so that it
meets no other server), a ``test`` database with a ``postgres`` superuser and trust
authentication; at the end ``pg_ctl stop`` and the folder removed.

The binaries are PostgreSQL's own: ``$ACIDIC_TEST_PG_BINDIR``, else the newest
``/usr/lib/postgresql/*/bin`` (Debian, Ubuntu), else the folder of ``initdb`` on
``PATH``. ``initdb`` and ``postgres`` refuse to run as root: as root, every command runs
as the ``postgres`` system user (``runuser -u postgres --``), which owns the folder.

Used by the ``private_postgresql`` fixture (tests/conftest.py) and by ``scripts/soak
--pg-restart-every``. A cluster left behind by a process that was killed (SIGKILL gives
no chance to clean up) is stopped and removed by the next :func:`private_cluster`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa

#: Name prefix of the cluster folders, in the temporary directory.
PREFIX = "acidic-pg-"
#: The system user the binaries run as when the tests run as root.
SYSTEM_USER = "postgres"
#: Seconds ``pg_ctl`` waits for a start or a stop.
WAIT = 60


class ClusterUnavailable(RuntimeError):
    """This machine cannot run a private cluster (no PostgreSQL binaries, or root
    without a ``postgres`` user); the message says what is missing."""


class ClusterError(RuntimeError):
    """A command of the private cluster failed; the message has its output and the end
    of the server's log."""


def find_bindir() -> Path:
    """The folder of PostgreSQL's server binaries (``initdb``, ``pg_ctl``)."""
    given = os.environ.get("ACIDIC_TEST_PG_BINDIR")
    if given:
        if not (Path(given) / "initdb").is_file():
            raise ClusterUnavailable(f"ACIDIC_TEST_PG_BINDIR={given} has no initdb")
        return Path(given)

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name))

    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    if debian:
        return max(debian, key=version)
    initdb = shutil.which("initdb")
    if initdb is not None and (Path(initdb).parent / "pg_ctl").is_file():
        return Path(initdb).resolve().parent
    raise ClusterUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) found in /usr/lib/postgresql/*/bin "
        "or on PATH; install PostgreSQL's server package or set ACIDIC_TEST_PG_BINDIR"
    )


def _run_as() -> list[str]:
    """The prefix that runs a command as a user PostgreSQL accepts (none unless root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise ClusterUnavailable(
            f"running as root, and there is no {SYSTEM_USER!r} user to run initdb as "
            "(initdb refuses root)"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ClusterUnavailable("running as root, and runuser(1) is missing")
    return [runuser, "-u", SYSTEM_USER, "--"]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivateCluster:
    """A PostgreSQL cluster in ``folder`` that this process made, listening on ``port``.

    Stop, start and restart it freely: :meth:`ensure_running` brings it back."""

    def __init__(self, bindir: Path, folder: Path, port: int, run_as: Sequence[str]) -> None:
        self.bindir = bindir
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = port
        self._run_as = list(run_as)

    @property
    def admin_url(self) -> str:
        """A superuser URL of its ``test`` database (trust: no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def _command(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._run_as, str(self.bindir / program), *args],
            cwd=self.folder,  # the postgres user may not be allowed in the caller's folder
            capture_output=True,
            text=True,
            timeout=WAIT + 30,
            check=False,
        )

    def _checked(self, program: str, *args: str) -> None:
        done = self._command(program, *args)
        if done.returncode != 0:
            raise ClusterError(
                f"{program} {' '.join(args)} exited {done.returncode}:\n{done.stdout}"
                f"{done.stderr}\n--- end of {self.log}:\n{self.log_tail()}"
            )

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log (empty when there is none yet)."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._checked("pg_ctl", action, "-D", str(self.data), "-w", "-t", str(WAIT), *args)

    def init(self) -> None:
        """``initdb`` the cluster and write its settings."""
        self._checked(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        settings = "\n".join(
            [
                f"port = {self.port}",
                "listen_addresses = '127.0.0.1'",
                # Its socket in its own folder: no clash with another server's socket.
                f"unix_socket_directories = '{self.folder}'",
                # A throw-away cluster: durability across an OS crash is of no use.
                "fsync = off",
                "full_page_writes = off",
                "max_connections = 200",
            ]
        )
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"\n# acidic's test suite: a private, throw-away cluster\n{settings}\n")

    def start(self) -> None:
        """Start the server (``pg_ctl start``) and wait until it accepts connections."""
        self._pg_ctl("start", "-l", str(self.log))

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``): ``fast`` ends every session and
        shuts down cleanly, as a service manager's stop does; ``immediate`` is a crash."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Restart the server (``pg_ctl restart -m mode``), waiting until it is back."""
        self._pg_ctl("restart", "-m", mode, "-l", str(self.log))

    def is_running(self) -> bool:
        """Whether the server runs (``pg_ctl status``)."""
        return self._command("pg_ctl", "status", "-D", str(self.data)).returncode == 0

    def accepts_connections(self) -> bool:
        """Whether the ``test`` database answers a query now."""
        engine = sa.create_engine(
            sa.make_url(self.admin_url).set(drivername="postgresql+psycopg"),
            poolclass=sa.pool.NullPool,
            connect_args={"connect_timeout": 5},
        )
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError:
            return False
        finally:
            engine.dispose()
        return True

    def ensure_running(self, timeout: float = WAIT) -> None:
        """Start the server unless it runs; wait until it accepts connections."""
        if not self.is_running():
            self.start()
        deadline = time.monotonic() + timeout
        while not self.accepts_connections():
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"the private cluster on port {self.port} does not accept connections "
                    f"after {timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def create_test_database(self) -> None:
        url = sa.make_url(self.admin_url).set(drivername="postgresql+psycopg", database="postgres")
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("CREATE DATABASE test")
        finally:
            engine.dispose()

    def destroy(self) -> None:
        """Stop the server at once and remove its folder."""
        if self.data.is_dir() and self.is_running():
            with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove_orphans() -> None:
    """Stop and remove the clusters of processes that died without cleaning up."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((folder / "owner.pid").read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        pid_file = folder / "data" / "postmaster.pid"
        try:
            postmaster = int(pid_file.read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError):
            postmaster = 0
        if postmaster and _alive(postmaster):
            with contextlib.suppress(OSError):
                os.kill(postmaster, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
            deadline = time.monotonic() + 30
            while _alive(postmaster) and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)


def _new_folder(run_as: Sequence[str]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=PREFIX))
    (folder / "owner.pid").write_text(str(os.getpid()), encoding="ascii")
    if run_as:
        user = pwd.getpwnam(SYSTEM_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
    return folder


@contextlib.contextmanager
def private_cluster(attempts: int = 3) -> Iterator[PrivateCluster]:
    """A new cluster, running, with its ``test`` database; stopped and removed after.

    Raises :class:`ClusterUnavailable` when this machine cannot run one, and
    :class:`ClusterError` when it could but did not start."""
    bindir = find_bindir()
    run_as = _run_as()
    _remove_orphans()
    for attempt in range(1, attempts + 1):
        cluster = PrivateCluster(bindir, _new_folder(run_as), free_port(), run_as)
        # Stopped even when this process ends without leaving the ``with`` (an
        # interrupted session); a SIGKILL leaves it to _remove_orphans.
        atexit.register(cluster.destroy)
        try:
            cluster.init()
            cluster.start()
            break
        except ClusterError:
            cluster.destroy()
            atexit.unregister(cluster.destroy)
            # Another process may have taken the free port in between: try another.
            if attempt == attempts:
                raise
    try:
        cluster.create_test_database()
        yield cluster
    finally:
        cluster.destroy()
        atexit.unregister(cluster.destroy)
