"""The App served by real worker processes in the worker tests, and helpers to run them.

Worker processes are started as ``acidic worker --app tests.support.worker_app:app`` (with the
project root as their working directory). The App is built on first access to
``app`` from the environment:

* ``ACIDIC_TEST_URL``: the database URL (required);
* ``ACIDIC_TEST_LOCK_TIMEOUT``: the App's ``lock_timeout`` in seconds (optional);
* ``ACIDIC_TEST_EXEC_LOG``: a directory where every execution of :class:`Drain`'s
  step appends a line to ``<pid>.log``, *before* acidic commits it, so that a
  duplicate execution would be seen even if its transaction were rolled back.

The jobs record what they do in ``worker_effects`` through their ``tx`` (one row per
committed execution of a transactional step, with the worker's pid and the step's
start and end times in microseconds of the wall clock the App uses), and signal
"this step has started" through ``worker_markers``, written on a connection of its
own in autocommit mode so that the test sees it while the step is still running (on
SQLite the markers live in a sibling database file: the running step holds SQLite's
only write lock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import faulthandler
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa

import acidic
from acidic._storage._schema import runs

URL_ENV = "ACIDIC_TEST_URL"
LOCK_TIMEOUT_ENV = "ACIDIC_TEST_LOCK_TIMEOUT"
EXEC_LOG_ENV = "ACIDIC_TEST_EXEC_LOG"
#: Seconds between an idle worker's checks for due runs of jobs no live worker knows
#: (acidic._worker._registry.UNKNOWN_CHECK_INTERVAL, 5 s): a test waits for fewer.
UNKNOWN_CHECK_ENV = "ACIDIC_TEST_UNKNOWN_CHECK"

ROOT = Path(__file__).resolve().parents[2]
#: The venv's console script (``python -m acidic._cli`` has no ``__main__`` entry).
ACIDIC = Path(sys.executable).with_name("acidic")

T = TypeVar("T")

metadata = sa.MetaData()
worker_effects = sa.Table(
    "worker_effects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(255), nullable=False),
    sa.Column("step", sa.String(100), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_us", sa.BigInteger, nullable=False),
    sa.Column("ended_us", sa.BigInteger, nullable=False),
)
marker_metadata = sa.MetaData()
worker_markers = sa.Table(
    "worker_markers",
    marker_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_key", sa.String(255), nullable=False),
    sa.Column("what", sa.String(100), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("at_us", sa.BigInteger, nullable=False),
)


def now_us() -> int:
    """Microseconds since the epoch on the App's clock (``datetime.now(UTC)``)."""
    return int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000)


# -- where the jobs write -------------------------------------------------------------


def _driver_url(url: str | sa.URL) -> sa.URL:
    """``url`` with the drivers acidic is tested with."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend in ("mysql", "mariadb"):
        return parsed.set(drivername="mysql+pymysql")
    return parsed


def markers_url(url: str | sa.URL) -> sa.URL:
    """Where markers go: the same database, or a sibling file for SQLite."""
    parsed = _driver_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(database=f"{parsed.database}.markers")
    return parsed


_marker_engines: dict[str, sa.Engine] = {}


def marker_engine(url: str | sa.URL) -> sa.Engine:
    target = markers_url(url)
    shown = target.render_as_string(hide_password=False)
    engine = _marker_engines.get(shown)
    if engine is None:
        args = {"timeout": 30} if target.get_backend_name() == "sqlite" else {}
        engine = sa.create_engine(target, isolation_level="AUTOCOMMIT", connect_args=args)
        _marker_engines[shown] = engine
    return engine


_reader_engines: dict[str, sa.Engine] = {}


def reader(app: acidic.App) -> sa.Engine:
    """A plain engine on the App's database for the tests' reads: on SQLite, acidic's
    own engine begins every transaction with BEGIN IMMEDIATE, so a read through it
    would wait for (and compete with) the workers' writes. Pooled: tests poll often,
    and a new server connection per poll would take CPU from the workers."""
    target = _driver_url(app.engine.url)
    shown = target.render_as_string(hide_password=False)
    engine = _reader_engines.get(shown)
    if engine is None:
        args = {"timeout": 30} if target.get_backend_name() == "sqlite" else {}
        engine = sa.create_engine(target, connect_args=args)
        _reader_engines[shown] = engine
    return engine


def dispose_engines() -> None:
    """Close the connections of the marker and reader engines (at the end of a test)."""
    for cache in (_marker_engines, _reader_engines):
        for engine in cache.values():
            engine.dispose()
        cache.clear()


def create_tables(app: acidic.App) -> None:
    """Create the jobs' tables next to acidic's (and the markers' table)."""
    metadata.create_all(app.engine)
    marker_metadata.create_all(marker_engine(app.engine.url))


def _mark(key: str, what: str) -> None:
    """Say, visibly at once, that ``what`` happened in run ``key``."""
    with marker_engine(os.environ[URL_ENV]).connect() as conn:
        conn.execute(
            worker_markers.insert().values(run_key=key, what=what, pid=os.getpid(), at_us=now_us())
        )


def markers(app: acidic.App, key: str) -> list[tuple[str, int]]:
    """The markers of ``key`` as (what, pid), oldest first."""
    stmt = (
        sa.select(worker_markers.c.what, worker_markers.c.pid)
        .where(worker_markers.c.run_key == key)
        .order_by(worker_markers.c.id)
    )
    with marker_engine(app.engine.url).connect() as conn:
        return [(what, int(pid)) for what, pid in conn.execute(stmt)]


def _effect(tx: sa.Connection, key: str, step: str, attempt: int, started: int) -> None:
    tx.execute(
        worker_effects.insert().values(
            run_key=key,
            step=step,
            pid=os.getpid(),
            attempt=attempt,
            started_us=started,
            ended_us=now_us(),
        )
    )


def effects(app: acidic.App, key: str | None = None) -> list[dict[str, Any]]:
    """The committed effects (of ``key``, or all), in commit order."""
    stmt = sa.select(worker_effects).order_by(worker_effects.c.id)
    if key is not None:
        stmt = stmt.where(worker_effects.c.run_key == key)
    with reader(app).connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
        conn.rollback()
    return rows


def status_counts(app: acidic.App) -> dict[str, int]:
    """How many runs are in each status."""
    stmt = sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
    with reader(app).connect() as conn:
        counts = {status: int(n) for status, n in conn.execute(stmt)}
        conn.rollback()
    return counts


def executions(directory: Path) -> dict[str, list[tuple[int, int, int]]]:
    """Every execution of Drain's step logged in ``directory`` (committed or not), as
    (start, end, pid) by run key."""
    spans: dict[str, list[tuple[int, int, int]]] = {}
    for log in directory.glob("*.log"):
        for line in log.read_text(encoding="utf-8").splitlines():
            key, pid, started, ended, _attempt = line.split("\t")
            spans.setdefault(key, []).append((int(started), int(ended), int(pid)))
    return spans


def overlaps(spans: dict[str, list[tuple[int, int, int]]]) -> list[str]:
    """The runs two of whose executions (start, end, pid) overlap in time."""
    found = []
    for key, found_spans in spans.items():
        for (_, end, pid), (start, _, other) in itertools.pairwise(sorted(found_spans)):
            if start < end:
                found.append(f"{key}: pid {pid} ran it until {end}, pid {other} from {start}")
    return found


def effect_steps(app: acidic.App, key: str) -> dict[str, int]:
    """How many times each transactional step of ``key`` committed."""
    counts: dict[str, int] = {}
    for row in effects(app, key):
        counts[row["step"]] = counts.get(row["step"], 0) + 1
    return counts


# -- jobs -------------------------------------------------------------------------------


class Drain(acidic.Job):
    """One transactional step that records its execution (many of these are drained),
    then holds its transaction open for ``pause`` seconds."""

    n: int
    pause: float = 0.0

    @acidic.step
    def work(self, tx: sa.Connection) -> None:
        started = now_us()
        _effect(tx, self.key, "work", self.attempt, started)
        if self.pause:
            time.sleep(self.pause)
        directory = os.environ.get(EXEC_LOG_ENV)
        if directory:
            line = f"{self.key}\t{os.getpid()}\t{started}\t{now_us()}\t{self.attempt}\n"
            with open(Path(directory) / f"{os.getpid()}.log", "a", encoding="utf-8") as f:
                f.write(line)


class Stamp(acidic.Job):
    """Records when its only step started."""

    n: int

    @acidic.step
    def stamp(self, tx: sa.Connection) -> None:
        _effect(tx, self.key, "stamp", self.attempt, now_us())


class Napper(acidic.Job):
    """Sleeps, on its first attempt only, ``hold`` seconds inside the transactional step
    ``hold`` and ``wait`` seconds in the non-transactional step ``wait``; each step
    leaves a marker (``<step>:<attempt>``) as it starts."""

    hold: float = 0.0
    wait: float = 0.0

    @acidic.step
    def hold_step(self, tx: sa.Connection) -> None:
        started = now_us()
        _mark(self.key, f"hold_step:{self.attempt}")
        _effect(tx, self.key, "hold_step", self.attempt, started)
        if self.attempt == 1:
            time.sleep(self.hold)

    @acidic.step(transactional=False)
    def wait_step(self) -> None:
        _mark(self.key, f"wait_step:{self.attempt}")
        if self.attempt == 1:
            time.sleep(self.wait)

    @acidic.step
    def finish(self, tx: sa.Connection) -> acidic.Response:
        _effect(tx, self.key, "finish", self.attempt, now_us())
        return acidic.Response(self.attempt)


class Nap(acidic.Job):
    """Parks itself with ``acidic.Sleep(seconds)`` between two recorded steps."""

    seconds: float

    @acidic.step
    def before(self, tx: sa.Connection) -> acidic.Sleep:
        _effect(tx, self.key, "before", self.attempt, now_us())
        return acidic.Sleep(self.seconds)

    @acidic.step
    def after(self, tx: sa.Connection) -> acidic.Response:
        _effect(tx, self.key, "after", self.attempt, now_us())
        return acidic.Response(self.attempt)


class FailOnce(acidic.Job):
    """Fails its first attempt (after writing, which is rolled back), so that the run
    waits out its backoff of ``delay`` seconds; succeeds on the next."""

    delay: float

    def backoff(self, attempt: int) -> float:
        return self.delay

    @acidic.step
    def flaky(self, tx: sa.Connection) -> acidic.Response:
        _effect(tx, self.key, "flaky", self.attempt, now_us())
        if self.attempt == 1:
            raise RuntimeError("first attempt fails")
        return acidic.Response(self.attempt)


JOBS: dict[str, type[acidic.Job]] = {
    "Drain": Drain,
    "Stamp": Stamp,
    "Napper": Napper,
    "Nap": Nap,
    "FailOnce": FailOnce,
}


def make_app(url: str, lock_timeout: float | None = None) -> acidic.App:
    """An App on ``url`` with the jobs above registered under their short names."""
    options: dict[str, Any] = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
    application = acidic.App(url, **options)
    for name, cls in JOBS.items():
        application.job(name=name)(cls)
    return application


@contextlib.contextmanager
def migrated(url: str, make: Callable[[str], acidic.App] | None = None) -> Iterator[acidic.App]:
    """A migrated App built by ``make`` (default :func:`make_app`) on ``url``, with the
    worker tests' tables; its engines (and the helpers' cached ones) disposed afterwards."""
    application = (make or make_app)(url)
    application.migrate()
    create_tables(application)
    try:
        yield application
    finally:
        dispose_engines()
        application.close()


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access, from the environment a worker process inherits.
    if name != "app":
        raise AttributeError(name)
    url = os.environ.get(URL_ENV)
    if not url:
        raise RuntimeError(f"tests.support.worker_app:app needs ${URL_ENV} (the database URL)")
    # In a worker process: SIGUSR1 dumps every thread's stack to the log, so that a
    # test that finds a worker stuck can show where (see WorkerProcess.wait).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    timeout = os.environ.get(LOCK_TIMEOUT_ENV)
    check = os.environ.get(UNKNOWN_CHECK_ENV)
    if check:
        from acidic._worker import _registry

        _registry.UNKNOWN_CHECK_INTERVAL = float(check)
    # The flavour of step (async, ORM session) of the test that started this worker.
    from tests.support.flavours import apply_from_environment

    apply_from_environment(JOBS.values())
    application = make_app(url, float(timeout) if timeout else None)
    globals()["app"] = application
    return application


# -- worker processes -------------------------------------------------------------------


def wait_for(
    probe: Callable[[], T | Literal[False] | None],
    what: str,
    timeout: float = 30.0,
    every: float = 0.01,
    detail: Callable[[], object] | None = None,
) -> T:
    """Poll ``probe`` until it returns something true; fail after ``timeout`` seconds,
    showing ``detail()``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            shown = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{shown}")
        time.sleep(every)


class WorkerProcess:
    """An ``acidic worker`` process in a process group (session) of its own, its
    stdout and stderr going to a log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_started(self, timeout: float = 30.0) -> None:
        def started() -> bool:
            if not self.alive():
                raise AssertionError(
                    f"worker {self.pid} exited with {self.proc.returncode}:\n{self.output()}"
                )
            return "worker started" in self.output()

        wait_for(started, f"worker {self.pid} to start", timeout, 0.02, self.output)

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the worker's whole process group, as service managers do."""
        os.killpg(self.pid, signum)

    def wait(self, timeout: float) -> int:
        """The exit code, once the worker has exited within ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.dump_stacks()
            raise AssertionError(
                f"worker {self.pid} still running after {timeout} s:\n{self.output()}"
            ) from None

    def dump_stacks(self) -> None:
        """Have the worker write its threads' stacks to its log (SIGUSR1, faulthandler)."""
        if self.alive():
            before = len(self.output())
            os.kill(self.pid, signal.SIGUSR1)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: len(self.output()) > before, "a stack dump", 5, 0.05)
                time.sleep(0.2)  # the dump is written in pieces

    def kill(self) -> None:
        """SIGKILL the process group if it is still there, and reap the worker."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(30)


def spawn_worker(
    url: str,
    log: Path,
    *,
    concurrency: int = 1,
    poll_interval: float = 1.0,
    grace: float = 30.0,
    lock_timeout: float | None = None,
    exec_log: Path | None = None,
    app_ref: str = "tests.support.worker_app:app",
    extra_env: dict[str, str] | None = None,
    processes: int = 1,
    extra_args: tuple[str, ...] = (),
) -> WorkerProcess:
    """Start ``acidic worker --app tests.support.worker_app:app`` (or ``app_ref``) on ``url``,
    with ``extra_env`` added to its environment and ``extra_args`` to its options."""
    env = dict(os.environ)
    for name in (LOCK_TIMEOUT_ENV, EXEC_LOG_ENV, UNKNOWN_CHECK_ENV):
        env.pop(name, None)
    env[URL_ENV] = url
    if lock_timeout is not None:
        env[LOCK_TIMEOUT_ENV] = repr(lock_timeout)
    if exec_log is not None:
        env[EXEC_LOG_ENV] = str(exec_log)
    env.update(extra_env or {})
    pythonpath = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) if not pythonpath else f"{ROOT}{os.pathsep}{pythonpath}"
    argv = [
        str(ACIDIC),
        "worker",
        "--app",
        app_ref,
        "--concurrency",
        str(concurrency),
        "--poll-interval",
        repr(poll_interval),
        "--grace",
        repr(grace),
        "--log-level",
        "INFO",
    ]
    if processes > 1:
        argv += ["--processes", str(processes)]
    argv += extra_args
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(proc, log)


@contextlib.contextmanager
def worker_processes() -> Iterator[list[WorkerProcess]]:
    """A list to put started workers in; every one still running is killed on exit."""
    started: list[WorkerProcess] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.kill()
