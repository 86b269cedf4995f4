"""Helpers for the tests that run jobs in real child processes (crash, concurrency,
takeover): starting ``python -m tests.support.run_job`` / ``tests.support.run_job_timed``,
releasing a group of children at the same instant, and polling the database.

Every child runs with ``cwd`` at the project root and the root on ``PYTHONPATH``, so
``import tests.support.jobs`` works in it exactly as in the test process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa

import acidic

ROOT = Path(__file__).resolve().parents[2]
#: Seconds any single child may take before the test gives up on it.
CHILD_TIMEOUT = 30.0

T = TypeVar("T")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: ours, without the test hooks, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ACIDIC_TEST_CRASH", "ACIDIC_TEST_SLEEP", "ACIDIC_TEST_CALLS")
    }
    pythonpath = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) if not pythonpath else f"{ROOT}{os.pathsep}{pythonpath}"
    env.update(extra)
    return env


def spawn(
    module: str,
    url: str,
    job: str,
    key: str,
    args: dict[str, Any],
    lock_timeout: float | None = None,
    *,
    env: dict[str, str] | None = None,
    stdin: int | None = None,
) -> subprocess.Popen[str]:
    """Start ``python -m <module> URL JOB KEY ARGS [LOCK_TIMEOUT]`` as a child."""
    argv = [sys.executable, "-m", module, url, job, key, json.dumps(args)]
    if lock_timeout is not None:
        argv.append(repr(lock_timeout))
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env if env is not None else child_env(),
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_job(
    url: str,
    job: str,
    key: str,
    args: dict[str, Any],
    lock_timeout: float | None = None,
    **env: str,
) -> tuple[int, str, str]:
    """Run ``tests.support.run_job`` to its end: (returncode, stdout, stderr)."""
    proc = spawn("tests.support.run_job", url, job, key, args, lock_timeout, env=child_env(**env))
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    finally:
        reap(proc)
    return proc.returncode, out, err


def outcome(stdout: str, stderr: str = "") -> dict[str, Any]:
    """The last JSON line a runner printed."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, f"the child printed nothing; stderr:\n{stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def reap(proc: subprocess.Popen[str]) -> None:
    """Make sure a child is neither stopped nor alive any more (for ``finally``)."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        except ProcessLookupError:  # pragma: no cover - it ended meanwhile
            pass
        proc.communicate(timeout=CHILD_TIMEOUT)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            stream.close()


@contextmanager
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """A list to put started children in; all are continued and killed on exit."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            reap(proc)


def prepare(
    url: str,
    job: str,
    key: str,
    args: dict[str, Any],
    lock_timeout: float | None = None,
    **env: str,
) -> subprocess.Popen[str]:
    """Start a ``tests.support.run_job_timed`` child that imports and connects, then waits for
    :func:`release`: its ~1 s start-up overlaps whatever the test does meanwhile."""
    return spawn(
        "tests.support.run_job_timed",
        url,
        job,
        key,
        args,
        lock_timeout,
        env=child_env(**env),
        stdin=subprocess.PIPE,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    if json.loads(ready or "null") != {"ready": True}:
        reap(proc)
        stderr = proc.stderr.read() if proc.stderr and not proc.stderr.closed else ""
        raise AssertionError(f"child not ready: {ready!r}; stderr:\n{stderr}")


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for a released child; its outcome (with ``elapsed``)."""
    out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    assert proc.returncode == 0, f"child exited {proc.returncode}; stderr:\n{err}"
    return outcome(out, err)


def release(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Let a :func:`prepare`-d child run its job now; its outcome."""
    wait_ready(proc)
    go(proc)
    return finish(proc)


def run_together(
    url: str,
    job: str,
    key: str,
    args: dict[str, Any],
    n: int,
    lock_timeout: float | None = None,
    *,
    late: int = 0,
    late_after: float = 0.0,
) -> list[dict[str, Any]]:
    """Run ``n`` ``tests.support.run_job_timed`` children released at the same instant (the
    last ``late`` of them ``late_after`` seconds after the others).

    Each child imports, connects and reports ready, then waits on its stdin; once all
    are ready the parent writes the start line to every stdin in turn. Returns each
    child's outcome in order (``result`` or ``error``, plus ``elapsed``: the seconds
    its ``app.run`` took, measured in the child).
    """
    with children() as procs:
        procs.extend(prepare(url, job, key, args, lock_timeout) for _ in range(n))
        for proc in procs:
            wait_ready(proc)
        for proc in procs[: n - late]:
            go(proc)
        if late:
            time.sleep(late_after)
            for proc in procs[n - late :]:
                go(proc)
        return [finish(proc) for proc in procs]


def wait_for(
    probe: Callable[[], T | Literal[False] | None],
    what: str,
    timeout: float = CHILD_TIMEOUT,
    every: float = 0.005,
    detail: Callable[[], object] | None = None,
) -> T:
    """Poll ``probe`` until it returns something other than None or False; on timeout,
    fail saying ``what`` was awaited and what ``detail()`` shows."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            shown = f"; {detail()!r}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{shown}")
        time.sleep(every)


def warm(app: acidic.App, key: str) -> None:
    """Make ``app``'s next call quick, for checks that race a lock timeout: the sync
    engine's schema check, and the asyncio engine's one-off start-up (its imports and
    the dialect's first connection), which ``app.run`` of an async job (async and
    async_session flavours) would otherwise pay inside the race."""
    assert app.get(key) is None
    assert asyncio.run(app.get_async(key)) is None


def lock_age(run: acidic.Run) -> float:
    """Seconds since the run's lock was taken or last renewed."""
    assert run.locked_at is not None, f"run {run.key!r} is not locked"
    return (dt.datetime.now(dt.UTC) - run.locked_at).total_seconds()


def sleep_until_stale(app: acidic.App, key: str, lock_timeout: float) -> None:
    """Sleep until the lock of ``key`` is older than ``lock_timeout`` (with a margin)."""
    run = app.get(key)
    assert run is not None
    time.sleep(max(0.0, lock_timeout - lock_age(run)) + 0.05)


def events(run: acidic.Run) -> list[tuple[str, str, int]]:
    """The run's history as (step, event, attempt)."""
    return [(e.step, e.event, e.attempt) for e in run.history]


def calls(path: Path) -> list[str]:
    """The non-transactional calls logged to ``$ACIDIC_TEST_CALLS``."""
    if not path.exists():
        return []
    return path.read_text(encoding="utf-8").splitlines()


def count_rows(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def other_open_transactions(engine: sa.Engine) -> int:
    """How many other sessions on this database have a write transaction open
    (PostgreSQL and MySQL/MariaDB only)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            stmt = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state = 'idle in transaction' "
                "AND backend_xid IS NOT NULL"
            )
        else:
            stmt = sa.text(
                "SELECT count(*) FROM information_schema.innodb_trx t "
                "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
                "WHERE p.db = DATABASE() AND p.id <> CONNECTION_ID() "
                "AND t.trx_rows_modified > 0"
            )
        n = int(conn.execute(stmt).scalar_one())
        conn.rollback()
    return n


def names(outcomes: Sequence[dict[str, Any]]) -> list[str]:
    """Each outcome's error class name, or ``"result"``."""
    return [o.get("error", "result") for o in outcomes]
