"""Real queue workers for the executor tests: start, kill and restart the stock worker
command of each queue (`celery ... worker`, `rq worker`, `dramatiq`) on a unique queue,
purge a queue, and wait for runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from tests.support.databases import IN_CI
from tests.support.executors import app as support
from tests.support.procs import ROOT, child_env

KINDS = ("rq", "celery", "dramatiq")
#: What each worker logs once it consumes its queue.
READY = {"rq": b"Listening on", "celery": b"ready.", "dramatiq": b"ready for action"}
MODULE = "tests.support.executors.app"
BIN = Path(sys.executable).parent


def broker_available(kind: str) -> None:
    """Skip (fail in CI) when the broker of ``kind`` is not reachable."""
    try:
        if kind == "rq":
            from redis import Redis

            Redis.from_url(support.REDIS_URL, socket_connect_timeout=2).ping()
        else:
            import kombu

            with kombu.Connection(support.AMQP_URL, connect_timeout=2) as conn:
                conn.connect()
    except Exception as exc:
        message = f"the {kind} broker is not reachable: {exc}"
        if IN_CI:
            pytest.fail(f"{message} (CI is set: executor tests must run, not skip)")
        pytest.skip(message)


def descendants(pid: int) -> list[int]:
    """The pids of ``pid``'s descendants (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        for pid in [proc.pid, *descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    proc.wait(10)


class QueueWorld:
    """A database, a unique queue, the test's App on them and the queue's workers."""

    def __init__(
        self, kind: str, url: str, tmp_path: Path, *, lock: float = 3.0, grace: float = 1.0
    ) -> None:
        self.kind = kind
        self.url = url
        self.queue = f"acidic-t-{uuid.uuid4().hex[:10]}"
        self.lock = lock
        self.grace = grace
        self.logs = tmp_path
        self.built = support.build(kind, url, self.queue, lock=lock, grace=grace)
        self.app: acidic.App = self.built.app
        self.app.migrate()
        support.meta.create_all(self.app.engine)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.relays: list[subprocess.Popen[bytes]] = []
        self._n = 0
        self.log_of: dict[int, Path] = {}

    @property
    def executor(self) -> Any:
        return self.built.executor

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(
            PYTHONUNBUFFERED="1",
            **extra,
            ACIDIC_EXEC_URL=self.url,
            ACIDIC_EXEC_KIND=self.kind,
            ACIDIC_EXEC_QUEUE=self.queue,
            ACIDIC_EXEC_LOCK=str(self.lock),
            ACIDIC_EXEC_GRACE=str(self.grace),
        )

    def _spawn(
        self, argv: list[str], name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self._n += 1
        path = self.logs / f"{name}-{self._n}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env(**(env or {})),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # kill -9 of the group: the worker and its children
            )
        self.log_of[proc.pid] = path
        return proc

    def worker_argv(self) -> list[str]:
        if self.kind == "rq":
            return [
                str(BIN / "rq"),
                "worker",
                "-c",
                MODULE,
                "--with-scheduler",
                "--serializer",
                "json",
                "--url",
                support.REDIS_URL,
                self.queue,
            ]
        if self.kind == "celery":
            return [
                str(BIN / "celery"),
                "-A",
                f"{MODULE}:celery_app",
                "worker",
                "-Q",
                self.queue,
                # A node name of its own: two workers of one host share no pidbox queue.
                "-n",
                f"w{uuid.uuid4().hex[:8]}@%h",
                "-c",
                "2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
            ]
        return [
            str(BIN / "dramatiq"),
            f"{MODULE}:broker",
            "-p",
            "1",
            "-t",
            "2",
            "-Q",
            self.queue,
        ]

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        proc = self._spawn(self.worker_argv(), f"{self.kind}-worker", env)
        self.workers.append(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
        """Wait until the worker ``proc`` logged that it consumes its queue."""
        deadline = time.monotonic() + timeout
        while READY[self.kind] not in self.log_of[proc.pid].read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker not ready:\n{self.logs_text()}")
            time.sleep(0.05)

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker ``proc`` with its descendants."""
        self.workers.remove(proc)
        _kill_tree(proc)

    def kill_workers(self) -> None:
        """SIGKILL every worker with all its descendants (a machine losing power; RQ's
        work horse runs in a session of its own)."""
        for proc in self.workers:
            _kill_tree(proc)
        self.workers = []

    def start_beat(self, every: float) -> subprocess.Popen[bytes]:
        """Celery beat, scheduling the executor's relay task every ``every`` seconds."""
        argv = [str(BIN / "celery"), "-A", f"{MODULE}:celery_app", "beat"]
        argv += ["-s", str(self.logs / "beat-schedule"), "--pidfile=", "-l", "info"]
        proc = self._spawn(argv, "celery-beat", {"ACIDIC_EXEC_RELAY_EVERY": str(every)})
        self.workers.append(proc)
        return proc

    def start_relay(self, *extra: str) -> subprocess.Popen[bytes]:
        argv = [str(BIN / "acidic"), "relay", "--app", f"{MODULE}:app", "--interval", "0.5"]
        proc = self._spawn([*argv, *extra], "relay")
        self.relays.append(proc)
        return proc

    def relay_once(self) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(BIN / "acidic"), "relay", "--app", f"{MODULE}:app", "--once"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            timeout=60,
            check=False,
        )

    def purge(self) -> None:
        """Drop every message waiting on the broker for this queue (lost messages)."""
        if self.kind == "rq":
            from rq import Queue
            from rq.registry import ScheduledJobRegistry

            queue = self.executor.queue
            queue.empty()
            registry = ScheduledJobRegistry(  # type: ignore[no-untyped-call]
                queue=Queue(self.queue, connection=self.built.redis)
            )
            for job_id in registry.get_job_ids():
                registry.remove(job_id, delete_job=True)
            return
        import kombu

        with kombu.Connection(support.AMQP_URL) as conn:
            channel = conn.channel()
            for name in (self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"):
                try:
                    channel.queue_purge(name)
                except Exception:
                    channel = conn.channel()  # the queue does not exist: the channel closed

    def close(self) -> None:
        self.kill_workers()
        for proc in self.relays:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if self.kind != "rq":
            self._delete_amqp_queues()
        if self.built.broker is not None:
            self.built.broker.close()
        if self.built.redis is not None:
            self.built.redis.close()
        self.app.close()

    def _delete_amqp_queues(self) -> None:
        import kombu

        with kombu.Connection(support.AMQP_URL) as conn:
            for name in (self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"):
                with contextlib.suppress(Exception):
                    conn.channel().queue_delete(name)

    def logs_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )

    # -- waiting ----------------------------------------------------------------------

    def wait_for(
        self,
        keys: Iterable[str],
        done: Callable[[acidic.Run], bool] = lambda r: r.status == "succeeded",
        *,
        timeout: float = 60.0,
    ) -> dict[str, acidic.Run]:
        """Wait until every key's run satisfies ``done``; their runs."""
        pending = set(keys)
        runs: dict[str, acidic.Run] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for key in sorted(pending):
                run = self.app.get(key)
                if run is not None and done(run):
                    runs[key] = run
                    pending.discard(key)
            if not pending:
                break
            if time.monotonic() > deadline:
                states = {k: (r.status.value if (r := self.app.get(k)) else None) for k in pending}
                raise AssertionError(
                    f"{len(pending)} run(s) not done after {timeout} s: "
                    f"{dict(list(states.items())[:10])}\n{self.logs_text()}"
                )
            time.sleep(0.1)
        return runs

    def effects(self, key: str) -> dict[str, int]:
        """Committed effects of the transactional steps of ``key``: step -> rows."""
        with self.app.engine.connect() as conn:
            rows = conn.execute(
                sa.select(support.effects.c.step, sa.func.count())
                .where(support.effects.c.run_key == key)
                .group_by(support.effects.c.step)
            ).all()
        return {str(step): int(n) for step, n in rows}

    def all_effects(self) -> dict[tuple[str, str], int]:
        with self.app.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    support.effects.c.run_key, support.effects.c.step, sa.func.count()
                ).group_by(support.effects.c.run_key, support.effects.c.step)
            ).all()
        return {(str(k), str(s)): int(n) for k, s, n in rows}

    def all_calls(self) -> dict[str, set[str]]:
        with self.app.engine.connect() as conn:
            rows = conn.execute(sa.select(support.calls.c.run_key, support.calls.c.step_key)).all()
        found: dict[str, set[str]] = {}
        for key, step_key in rows:
            found.setdefault(str(key), set()).add(str(step_key))
        return found
