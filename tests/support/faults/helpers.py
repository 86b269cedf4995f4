"""Helpers of the fault suite: racing processes, PostgreSQL sessions of a process, and
running an App in a child process."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.support import procs


class Racers:
    """A ``tests.support.faults.racer`` launcher: ``n`` forked children ready to race on one key."""

    def __init__(
        self,
        url: str,
        job: str,
        key: str,
        args: dict[str, Any],
        n: int,
        out_dir: Path,
        lock_timeout: float | None = None,
        **env: str,
    ) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.n = n
        self.out_dir = out_dir
        argv = [sys.executable, "-m", "tests.support.faults.racer", url, job, key, json.dumps(args)]
        argv += [str(n), str(out_dir)]
        if lock_timeout is not None:
            argv.append(repr(lock_timeout))
        self.proc = subprocess.Popen(
            argv,
            cwd=procs.ROOT,
            env=procs.child_env(**env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if json.loads(line or "null") != {"ready": self.n}:
            procs.reap(self.proc)
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"racers not ready: {line!r}; stderr:\n{stderr[-5000:]}")

    def release(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Let all children run at once; their outcomes, once all have exited."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        out, err = self.proc.communicate(timeout=timeout)
        done = json.loads(out.splitlines()[-1])
        assert done == {"done": self.n, "failed": 0}, f"{done}; stderr:\n{err[-5000:]}"
        return [
            json.loads((self.out_dir / f"{i}.json").read_text(encoding="utf-8"))
            for i in range(self.n)
        ]

    def close(self) -> None:
        procs.reap(self.proc)


@contextlib.contextmanager
def racers(*args: Any, **kwargs: Any) -> Iterator[Racers]:
    started = Racers(*args, **kwargs)
    try:
        yield started
    finally:
        started.close()


# -- PostgreSQL sessions ------------------------------------------------------------------


def with_application_name(url: str, name: str) -> str:
    """``url`` whose sessions are named ``name`` in ``pg_stat_activity``."""
    return (
        sa.make_url(url)
        .update_query_dict({"application_name": name})
        .render_as_string(hide_password=False)
    )


def _where(
    application_name: str, state: str | None, query: str | None
) -> tuple[str, dict[str, Any]]:
    condition = "application_name = :name AND pid <> pg_backend_pid()"
    params: dict[str, Any] = {"name": application_name}
    if state is not None:
        condition += " AND state = :state"
        params["state"] = state
    if query is not None:
        condition += " AND query LIKE :query"
        params["query"] = query
    return condition, params


def terminate(
    admin: sa.Engine, application_name: str, *, state: str | None = None, query: str | None = None
) -> int:
    """``pg_terminate_backend`` every session named ``application_name`` (in ``state``
    when given, e.g. ``'idle in transaction'``, and whose last statement is LIKE
    ``query`` when given); how many."""
    condition, params = _where(application_name, state, query)
    with admin.connect() as conn:
        n = conn.execute(
            sa.text(
                f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {condition}"
            ),
            params,
        ).scalar_one()
        conn.commit()
    return int(n)


def sessions(
    admin: sa.Engine, application_name: str, state: str | None = None, query: str | None = None
) -> int:
    """How many sessions :func:`terminate` would terminate."""
    condition, params = _where(application_name, state, query)
    with admin.connect() as conn:
        n = conn.execute(
            sa.text(f"SELECT count(*) FROM pg_stat_activity WHERE {condition}"), params
        ).scalar_one()
        conn.rollback()
    return int(n)


def admin_engine(url: str) -> sa.Engine:
    """A plain engine on the test database, outside acidic, for the test's own reads and
    faults (never pooled: a terminated session must not be reused)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg").update_query_dict(
            {"application_name": "acidic_faults_admin"}
        )
    elif parsed.get_backend_name() in ("mysql", "mariadb"):
        parsed = parsed.set(drivername="mysql+pymysql")
    return sa.create_engine(parsed, poolclass=sa.pool.NullPool)


def wait_until(deadline_s: float) -> None:
    time.sleep(max(0.0, deadline_s - time.monotonic()))
