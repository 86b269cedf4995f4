"""The App served by the fault suite's worker processes (and ``scripts/soak``), and the
helpers that check its invariants afterwards.

Workers are started as ``acidic worker --app tests.support.faults.fault_app:app`` (see
:func:`spawn`); the App is built on first access from the environment of
``tests.support.worker_app`` (``ACIDIC_TEST_URL``, ``ACIDIC_TEST_LOCK_TIMEOUT``,
``ACIDIC_TEST_EXEC_LOG``) plus ``ACIDIC_TEST_PAUSE``, seconds each transactional step
holds its transaction open, and ``ACIDIC_TEST_CALL_PAUSE``, seconds the non-transactional
step takes (both default 0).

:class:`Chaos` has three steps: transactional, non-transactional, transactional. Each
execution of each step appends a ``start`` line to ``<exec_log>/<pid>.log`` when it
begins and an ``end`` line when its body returns or raises (before acidic commits it), so that
every execution is on record, committed or not, with its pid, attempt and times. Each
transactional step also inserts one row into ``worker_effects`` through its ``tx``:
exactly one row per (run, step) is the "each transactional effect exactly once"
invariant. An execution cut short by SIGKILL has a ``start`` and no ``end``: its end is
at the latest the moment its process died, which the caller records
(:func:`check_invariants` takes those times).
"""

from __future__ import annotations

import faulthandler
import itertools
import os
import signal
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import acidic
from acidic._storage._schema import runs
from tests.support import worker_app as wa

PAUSE_ENV = "ACIDIC_TEST_PAUSE"
CALL_PAUSE_ENV = "ACIDIC_TEST_CALL_PAUSE"
APP_REF = "tests.support.faults.fault_app:app"


def _log(key: str, step: str, attempt: int, event: str) -> None:
    directory = os.environ.get(wa.EXEC_LOG_ENV)
    if not directory:
        return
    line = f"{key}\t{step}\t{os.getpid()}\t{attempt}\t{event}\t{wa.now_us()}\n"
    with open(Path(directory) / f"{os.getpid()}.log", "a", encoding="utf-8") as f:
        f.write(line)


def _pause(variable: str = PAUSE_ENV) -> float:
    return float(os.environ.get(variable) or 0.0)


class Chaos(acidic.Job):
    """Three logged steps; the transactional ones record their effect through ``tx``."""

    n: int

    def backoff(self, attempt: int) -> float:
        return 0.2  # faults make steps fail: retry soon, the suite is bounded in time

    def _effect(self, tx: sa.Connection, step: str) -> None:
        started = wa.now_us()
        _log(self.key, step, self.attempt, "start")
        try:
            wa._effect(tx, self.key, step, self.attempt, started)
            pause = _pause()
            if pause:
                time.sleep(pause)
        finally:  # raising (a lost connection) ends the execution too
            _log(self.key, step, self.attempt, "end")

    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        self._effect(tx, "first")

    @acidic.step(transactional=False)
    def call(self) -> None:
        _log(self.key, "call", self.attempt, "start")
        self.ctx["called_by"] = os.getpid()
        pause = _pause(CALL_PAUSE_ENV)
        if pause:
            time.sleep(pause)
        _log(self.key, "call", self.attempt, "end")

    @acidic.step
    def second(self, tx: sa.Connection) -> acidic.Response:
        self._effect(tx, "second")
        return acidic.Response(self.attempt)


STEPS = ("first", "call", "second")
TRANSACTIONAL = ("first", "second")


def make_app(url: str, lock_timeout: float | None = None) -> acidic.App:
    """An App on ``url`` with :class:`Chaos` registered as ``Chaos``."""
    options: dict[str, Any] = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
    application = acidic.App(url, **options)
    application.job(name="Chaos")(Chaos)
    return application


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access, from the environment a worker process inherits.
    if name != "app":
        raise AttributeError(name)
    url = os.environ.get(wa.URL_ENV)
    if not url:
        raise RuntimeError(f"{APP_REF} needs ${wa.URL_ENV} (the database URL)")
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    timeout = os.environ.get(wa.LOCK_TIMEOUT_ENV)
    application = make_app(url, float(timeout) if timeout else None)
    globals()["app"] = application
    return application


def spawn(
    url: str,
    log: Path,
    exec_log: Path,
    *,
    concurrency: int = 2,
    lock_timeout: float = 5.0,
    pause: float = 0.0,
    call_pause: float = 0.0,
    poll_interval: float = 0.5,
    grace: float = 30.0,
) -> wa.WorkerProcess:
    """Start an ``acidic worker`` serving this module's App on ``url``."""
    return wa.spawn_worker(
        url,
        log,
        concurrency=concurrency,
        poll_interval=poll_interval,
        grace=grace,
        lock_timeout=lock_timeout,
        exec_log=exec_log,
        app_ref=APP_REF,
        extra_env={PAUSE_ENV: repr(pause), CALL_PAUSE_ENV: repr(call_pause)},
    )


def enqueue(app: acidic.App, n: int, prefix: str = "chaos", batch: int = 1000) -> list[str]:
    """Enqueue ``n`` Chaos runs, ``batch`` per transaction; their keys."""
    keys = [f"{prefix}-{i:06d}" for i in range(n)]
    for start in range(0, n, batch):
        with app.engine.begin() as conn:
            for i in range(start, min(start + batch, n)):
                app.enqueue(Chaos(n=i), key=keys[i], connection=conn)
    return keys


# -- invariants ---------------------------------------------------------------------------


@dataclass
class Execution:
    """One claim's execution of a run, from its first step's start to its last step's
    end (or its process's death)."""

    key: str
    pid: int
    attempt: int
    start: int
    end: int | None  # None: cut short, and its process's death time is unknown
    steps: list[str] = field(default_factory=list)


def read_executions(
    directory: Path, deaths: Mapping[int, int] | None = None
) -> dict[str, list[Execution]]:
    """Every execution logged in ``directory``, by run key. A step that started and never
    ended ends at its pid's death time in ``deaths`` (microseconds), if known."""
    deaths = deaths or {}
    spans: dict[tuple[str, int, int], Execution] = {}
    open_steps: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    for log in sorted(directory.glob("*.log")):
        for line in log.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) != 6:  # pragma: no cover - a line cut by SIGKILL mid-write
                continue
            key, step, pid_s, attempt_s, event, at_s = parts
            pid, attempt, at = int(pid_s), int(attempt_s), int(at_s)
            ident = (key, pid, attempt)
            ex = spans.get(ident)
            if ex is None:
                ex = spans[ident] = Execution(key, pid, attempt, at, at)
            ex.start = min(ex.start, at)
            if event == "start":
                ex.steps.append(step)
                open_steps[ident].add(step)
            else:
                open_steps[ident].discard(step)
            assert ex.end is not None
            ex.end = max(ex.end, at)
    for ident, unfinished in open_steps.items():
        if unfinished:
            spans[ident].end = deaths.get(ident[1])
    by_key: dict[str, list[Execution]] = defaultdict(list)
    for ex in spans.values():
        by_key[ex.key].append(ex)
    return by_key


def overlapping(executions: Mapping[str, list[Execution]]) -> list[str]:
    """Runs two of whose executions overlapped in time (an execution cut short whose
    process's death time is unknown counts as never ending)."""
    found = []
    for key, found_executions in executions.items():
        ordered = sorted(found_executions, key=lambda e: e.start)
        for before, after in itertools.pairwise(ordered):
            if before.end is None or after.start < before.end:
                found.append(
                    f"{key}: pid {before.pid} attempt {before.attempt} ran "
                    f"{before.start}..{before.end}, pid {after.pid} attempt {after.attempt} "
                    f"started at {after.start}"
                )
    return found


@dataclass
class Report:
    enqueued: int
    succeeded: int
    statuses: dict[str, int]
    lost: list[str]  # runs not succeeded
    doubled: list[str]  # (run, step) pairs whose effect committed more than once
    missing: list[str]  # succeeded runs missing a transactional effect
    overlaps: list[str]
    executions: int
    repeated: int  # executions beyond one per run (takeovers, retries)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.missing or self.overlaps)

    def __str__(self) -> str:
        return (
            f"enqueued {self.enqueued}, succeeded {self.succeeded}, statuses {self.statuses}, "
            f"lost {len(self.lost)} {self.lost[:5]}, doubled {len(self.doubled)} "
            f"{self.doubled[:5]}, missing {len(self.missing)} {self.missing[:5]}, "
            f"overlaps {len(self.overlaps)} {self.overlaps[:3]}, executions {self.executions}, "
            f"repeated {self.repeated}"
        )


def check_invariants(
    engine: sa.Engine,
    keys: list[str],
    exec_log: Path | None,
    deaths: Mapping[int, int] | None = None,
) -> Report:
    """Compare the runs of ``keys`` with their effects and logged executions."""
    with engine.connect() as conn:
        query = sa.select(runs.c.idempotency_key, runs.c.status).where(runs.c.job == "Chaos")
        statuses: dict[str, str] = {k: s for k, s in conn.execute(query)}  # noqa: C416
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for key, step, n in conn.execute(
            sa.select(
                wa.worker_effects.c.run_key, wa.worker_effects.c.step, sa.func.count()
            ).group_by(wa.worker_effects.c.run_key, wa.worker_effects.c.step)
        ):
            counts[(key, step)] = int(n)
        conn.rollback()
    by_status: dict[str, int] = defaultdict(int)
    for key in keys:
        by_status[statuses.get(key, "<missing>")] += 1
    lost = [k for k in keys if statuses.get(k) != "succeeded"]
    doubled = [f"{k}/{s}" for (k, s), n in counts.items() if n > 1]
    missing = [
        f"{k}/{s}"
        for k in keys
        if statuses.get(k) == "succeeded"
        for s in TRANSACTIONAL
        if counts.get((k, s), 0) != 1
    ]
    executions = read_executions(exec_log, deaths) if exec_log is not None else {}
    total = sum(len(v) for v in executions.values())
    return Report(
        enqueued=len(keys),
        succeeded=by_status.get("succeeded", 0),
        statuses=dict(by_status),
        lost=lost,
        doubled=doubled,
        missing=missing,
        overlaps=overlapping(executions),
        executions=total,
        repeated=total - len(executions),
    )
