"""Latency and memory of a real ``acidic worker`` process on PostgreSQL.

* latency: an idle worker (concurrency 1) and one ``app.enqueue`` at a time from this
  process; the enqueue-to-start latency is the wall-clock time from ``enqueue``
  returning (its transaction committed) to the first line of the job's step;
* memory: the worker (concurrency 4) executes ride runs enqueued in batches with
  ``INSERT … SELECT generate_series`` plus a NOTIFY; its RSS (``/proc/PID/status``)
  is read after each batch.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from .common import DATABASES, Poller, pg_url, wait_for_pg, wait_until

DB = DATABASES["acidic"]


def _worker(concurrency: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "acidic"
    cmd = [str(exe), "worker", "--app", "bench.workerapp:app", "--concurrency", str(concurrency)]
    cmd += ["--log-level", "WARNING"]
    return subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": _pythonpath()})


def _pythonpath() -> str:
    """The bench's root, after what PYTHONPATH already holds (an ``--acidic-variant``'s
    source tree comes first, so the worker runs that acidic)."""
    root = str(Path(__file__).parent.parent)
    before = os.environ.get("PYTHONPATH")
    return f"{before}{os.pathsep}{root}" if before else root


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _reset() -> None:
    wait_for_pg()
    from .systems.acidic_pg import reset_pg  # noqa: PLC0415

    reset_pg()
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_latency"
            " (n INTEGER PRIMARY KEY, started DOUBLE PRECISION)"
        )
        conn.execute("TRUNCATE bench_latency")


def latency_section(samples: int) -> dict[str, Any]:
    from .workerapp import Ping, app  # noqa: PLC0415

    _reset()
    worker = _worker(1)
    after: list[float] = []
    before: list[float] = []
    enqueue_ms: list[float] = []
    try:
        with psycopg.connect(pg_url(DB), autocommit=True) as conn:
            app.enqueue(Ping(n=-1), key="ping-warmup")  # the worker is up once it ran
            wait_until(
                lambda: conn.execute("SELECT 1 FROM bench_latency WHERE n = -1").fetchone(), 60
            )
            for i in range(samples):
                time.sleep(0.05)  # idle: the worker is waiting for a notification
                t0 = time.time()
                app.enqueue(Ping(n=i), key=f"ping-{i}")
                t1 = time.time()
                row: list[Any] = []

                def started(i: int = i, row: list[Any] = row) -> bool:
                    got = conn.execute(
                        "SELECT started FROM bench_latency WHERE n = %s", (i,)
                    ).fetchone()
                    if got:
                        row.append(got[0])
                    return bool(got)

                wait_until(started, 30, interval=0.001)
                after.append(1000 * (row[0] - t1))
                before.append(1000 * (row[0] - t0))
                enqueue_ms.append(1000 * (t1 - t0))
    finally:
        _stop(worker)
        app.close()
    q = statistics.quantiles(after, n=20)
    out = {
        "samples": samples,
        "median_ms": statistics.median(after),
        "p95_ms": q[18],
        "max_ms": max(after),
        "median_from_enqueue_call_ms": statistics.median(before),
        "median_enqueue_call_ms": statistics.median(enqueue_ms),
    }
    print(
        f"\nLatency, enqueue committed -> step started, idle worker, {samples} samples: "
        f"median {out['median_ms']:.1f} ms, p95 {out['p95_ms']:.1f} ms, max {out['max_ms']:.1f} ms "
        f"(from the enqueue call: {out['median_from_enqueue_call_ms']:.1f} ms; "
        f"enqueue itself {out['median_enqueue_call_ms']:.1f} ms)"
    )
    return out


ENQUEUE_BATCH = """
INSERT INTO acidic_runs (idempotency_key, job, args, steps, status, recovery_point, ctx,
    result, error, attempts, lock_token, locked_at, created_at, last_run_at, finished_at,
    queue, priority, run_at, lock_expires_at, attempt_limit, cancel_requested)
SELECT 'mem-' || g, 'bench.Ride',
    '{"user_id":' || g || ',"origin":"origin-' || g || '","target":"target-' || g || '"}',
    '["create_ride","charge","finish"]', 'pending', 'create_ride', '{}', NULL, NULL, 0,
    NULL, NULL, now(), NULL, NULL, 'default', 0, now(), NULL, 3, false
FROM generate_series(%s::integer, %s::integer) AS g
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def memory_section(runs: int, batches: int = 10) -> dict[str, Any]:
    _reset()
    worker = _worker(4)
    series: list[tuple[int, int]] = []
    per = max(1, runs // batches)
    poller = Poller(DB, "acidic_runs", "status = 'succeeded'")
    started = time.monotonic()
    try:
        time.sleep(2)
        series.append((0, rss_kib(worker.pid)))
        with psycopg.connect(pg_url(DB), autocommit=True) as conn:
            for b in range(batches):
                conn.execute(ENQUEUE_BATCH, (b * per, (b + 1) * per - 1))
                conn.execute("SELECT pg_notify('acidic_runs', 'default')")
                wait_until(lambda b=b: poller.count() >= (b + 1) * per, 3600, interval=0.2)
                series.append(((b + 1) * per, rss_kib(worker.pid)))
                print(
                    f"  memory: {series[-1][0]} runs, RSS {series[-1][1] / 1024:.1f} MiB",
                    flush=True,
                )
    finally:
        poller.close()
        _stop(worker)
    # Growth from the first batch on (the first batch warms caches and pools).
    first = series[1][1]
    last = series[-1][1]
    out = {
        "runs": per * batches,
        "series_kib": series,
        "rss_first_batch_kib": first,
        "rss_last_kib": last,
        "rss_max_kib": max(r for _, r in series[1:]),
        "growth": (last - first) / first,
        "seconds": time.monotonic() - started,
    }
    print(
        f"\nMemory: acidic worker (4 executors) RSS after {per} runs {first / 1024:.1f} MiB, "
        f"after {out['runs']} runs {last / 1024:.1f} MiB ({100 * out['growth']:+.1f}%), "
        f"max {out['rss_max_kib'] / 1024:.1f} MiB"
    )
    return out
