"""``python -m bench.limits [N] [ROUNDS]``: what limits cost where runs are claimed.

Four ``acidic worker`` processes (one executor each) drain N runs of a one-step job on
PostgreSQL, in three configurations measured in interleaved rounds:

* ``no limit``: the job has no ``Limit``, the queue none (the one-statement claim);
* ``Limit per run``: the job has ``concurrency = Limit("item:{n}", 1)`` and every run its
  own key, so the limit never holds a run back: the cost of the limited claim itself;
* ``queue concurrency 4``: the queue allows 4 runs at once, as many as the workers.

Prints runs/s (median of the rounds) and each configuration's ratio to ``no limit``.
The App is ``bench.limits:app`` (built from ``$BENCH_LIMITS_URL`` in the workers).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import psycopg
import sqlalchemy as sa

import acidic

from .common import PG_SERVER

URL_ENV = "BENCH_LIMITS_URL"
DATABASE = "acidic_bench_limits"
ACIDIC = Path(sys.executable).with_name("acidic")
ROOT = Path(__file__).resolve().parents[1]


class Free(acidic.Job):
    n: int

    @acidic.step
    def work(self, tx: sa.Connection) -> None:
        tx.execute(sa.text("select 1"))


class Keyed(acidic.Job):
    n: int
    concurrency = acidic.Limit("item:{n}", 1)

    @acidic.step
    def work(self, tx: sa.Connection) -> None:
        tx.execute(sa.text("select 1"))


def make_app(url: str) -> acidic.App:
    application = acidic.App(
        url, queues={"default": acidic.Queue(), "four": acidic.Queue(concurrency=4)}
    )
    application.job(name="Free")(Free)
    application.job(name="Keyed")(Keyed)
    return application


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    application = make_app(os.environ[URL_ENV])
    globals()["app"] = application
    return application


def fresh_database() -> str:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    return f"{PG_SERVER}/{DATABASE}"


def measure(url: str, job: type[acidic.Job], queue: str, n: int) -> float:
    """Runs per second for four running worker processes to drain ``n`` runs of ``job``
    enqueued in one transaction (the clock starts at the enqueue)."""
    application = make_app(url)
    with application.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM acidic_runs"))
        conn.execute(sa.text("DELETE FROM acidic_starts"))
    # This machine's PostgreSQL runs without autovacuum: dead rows of the previous
    # measurement would tax this one.
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("VACUUM ANALYZE acidic_runs")
    env = dict(os.environ, **{URL_ENV: url, "PYTHONPATH": str(ROOT)})
    argv = [str(ACIDIC), "worker", "--app", "bench.limits:app", "--queues", queue]
    argv += ["--poll-interval", "0.05", "--log-level", "INFO"]
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(4)]
        workers = [
            subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            for log in logs
        ]
        try:
            while not all(b"worker started" in _read(log) for log in logs):
                _check(workers, logs)
                time.sleep(0.05)
            started = time.perf_counter()
            with application.engine.begin() as conn:
                for i in range(n):
                    application.enqueue(
                        job(n=i), key=f"{job.__name__}-{i}", queue=queue, connection=conn
                    )
            while True:
                with application.engine.connect() as conn:
                    left = conn.execute(
                        sa.text("select count(*) from acidic_runs where status <> 'succeeded'")
                    ).scalar_one()
                if left == 0:
                    break
                _check(workers, logs)
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)
            application.close()
    return n / elapsed


def _read(log: IO[bytes]) -> bytes:
    log.seek(0)
    return log.read()


def _check(workers: list[subprocess.Popen[bytes]], logs: list[IO[bytes]]) -> None:
    for worker, log in zip(workers, logs, strict=True):
        if worker.poll() is not None:
            output = _read(log).decode(errors="replace")
            raise RuntimeError(f"a worker exited with {worker.returncode}:\n{output}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    url = fresh_database()
    setup = make_app(url)
    setup.migrate()
    setup.close()
    configs = [
        ("no limit", Free, "default"),
        ("Limit per run (never binding)", Keyed, "default"),
        ("queue concurrency 4", Free, "four"),
    ]
    results: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    for r in range(rounds):
        for label, job, queue in configs[r % 3 :] + configs[: r % 3]:
            results[label].append(measure(url, job, queue, n))
    base = statistics.median(results["no limit"])
    print(f"4 worker processes x 1 executor, PostgreSQL, N={n}, {rounds} rounds (median)")
    for label, _, _ in configs:
        rate = statistics.median(results[label])
        print(f"  {label:32s} {rate:8.0f} runs/s   {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
