"""``python -m bench.executors``: the ride through each executor against the same queue
running a bare task that does the ride's three transactions (docs/benchmarks.md,
"Executors").

For each queue (``--queues rq,celery,dramatiq``) one stock worker of that queue with one
process executing one message at a time (``rq worker``, ``celery worker -c 1``,
``dramatiq -p 1 -t 1``) serves both workloads in turn: N bare tasks, then N acidic rides
enqueued through ``app.enqueue``; each timed from the first enqueue until the database
shows all N done. Prints the overhead ratio (acidic / bare) per queue.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DATABASE = "acidic_bench_exec"


def _database() -> str:
    admin = sa.create_engine(
        sa.make_url(f"{SERVER}/postgres").set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    admin.dispose()
    return f"{SERVER}/{DATABASE}"


def _worker(kind: str, queue: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    module = "bench.executorapp"
    if kind == "rq":
        argv = [str(BIN / "rq"), "worker", "-c", module, "--with-scheduler"]
        argv += ["--serializer", "json", "--url", "redis://127.0.0.1:6379/0", queue]
    elif kind == "celery":
        argv = [str(BIN / "celery"), "-A", f"{module}:celery_app", "worker", "-Q", queue]
        argv += ["-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    else:
        argv = [str(BIN / "dramatiq"), f"{module}:broker", "-p", "1", "-t", "1", "-Q", queue]
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait(engine: sa.Engine, sql: str, n: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            if int(conn.execute(sa.text(sql)).scalar_one()) >= n:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {n}: {sql}")
        time.sleep(0.01)


def measure(kind: str, url: str, n: int, log_dir: Path) -> tuple[float, float]:
    """Seconds for N bare tasks and for N acidic rides on ``kind``'s queue."""
    queue = f"acidic-bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.update(BENCH_EXEC_URL=url, BENCH_EXEC_KIND=kind, BENCH_EXEC_QUEUE=queue)
    os.environ.update(BENCH_EXEC_URL=url, BENCH_EXEC_KIND=kind, BENCH_EXEC_QUEUE=queue)
    sys.modules.pop("bench.executorapp", None)
    # Imported per queue: the module builds its App and executor from the environment.
    m = importlib.import_module("bench.executorapp")

    m.app.migrate()
    with m.engine.begin() as conn:
        for ddl in m.DDL:
            conn.exec_driver_sql(ddl)
        conn.exec_driver_sql("TRUNCATE xrides, xaudit")
    worker = _worker(kind, queue, env, log_dir / f"{kind}.log")
    try:
        time.sleep(3)  # the worker's start is not measured
        # warm-up: one of each
        _bare(kind, m, "warm")
        m.app.enqueue(m.XRide(tag="warm"), f"warm-{queue}")
        _wait(m.engine, "SELECT COUNT(*) FROM xaudit", 2)
        start = time.perf_counter()
        for i in range(n):
            _bare(kind, m, f"b{i}")
        _wait(m.engine, "SELECT COUNT(*) FROM xaudit", n + 2)
        bare = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(n):
            m.app.enqueue(m.XRide(tag=f"a{i}"), f"a{i}-{queue}")
        _wait(m.engine, "SELECT COUNT(*) FROM xaudit", 2 * n + 2)
        ride = time.perf_counter() - start
        _wait(m.engine, "SELECT COUNT(*) FROM acidic_runs WHERE status = 'succeeded'", n + 1)
    finally:
        # The descendants first: once the worker is gone they belong to init.
        for pid in [*_descendants(worker.pid), worker.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        worker.wait()
        m.app.close()
    return bare, ride


def _bare(kind: str, m: object, tag: str) -> None:
    if kind == "rq":
        m.executor.queue.enqueue("bench.executorapp.bare_ride", args=(tag,), result_ttl=0)  # type: ignore[attr-defined]
    elif kind == "celery":
        m.bare.apply_async(args=(tag,), queue=m.QUEUE)  # type: ignore[attr-defined]
    else:
        m.bare.send(tag)  # type: ignore[attr-defined]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="rides per workload [100]")
    parser.add_argument("--queues", default="rq,celery,dramatiq")
    args = parser.parse_args()
    url = _database()
    log_dir = Path(tempfile.gettempdir()) / "acidic-bench-executors"
    log_dir.mkdir(exist_ok=True)
    print(f"N = {args.n} per workload, one worker process executing one message at a time")
    print(
        f"{'queue':<10}{'bare task (s)':>15}{'acidic ride (s)':>17}{'ms/job bare':>13}"
        f"{'ms/job ride':>13}{'ratio':>8}"
    )
    for kind in args.queues.split(","):
        bare, ride = measure(kind, url, args.n, log_dir)
        print(
            f"{kind:<10}{bare:>15.2f}{ride:>17.2f}{bare / args.n * 1000:>13.1f}"
            f"{ride / args.n * 1000:>13.1f}{ride / bare:>8.2f}"
        )


if __name__ == "__main__":
    main()
