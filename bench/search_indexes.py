"""What the trigram search indexes cost a worker's writes: ``python -m bench.search_indexes
[N] [ROUNDS]``.

The bench database's ``acidic_runs`` gets, in turn, the search indexes of migration 0011
(GIN trigram indexes of every run's key and arguments), those of 0012 (the same, leaving
out the runs in flight, plus ``acidic_runs_in_flight_idx``) and none; each time N rides
are enqueued (untimed), then a worker of one executor in this process drains them. Printed
per configuration, medians of the rounds: the bytes the runs table's indexes grew by per
run, the CPU per run of the server backends and of this process, and the wall time per run.
Needs ``pg_trgm`` in the bench database (acidic's migration creates it where it may).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time

import psycopg

from .arrival import _backend_pids, _cpu_seconds
from .common import DATABASES, pg_url, wait_until
from .systems import acidic_pg

DB = DATABASES["acidic"]
_IN_FLIGHT = "status IN ('pending', 'running', 'scheduled')"
_KEY = (
    "CREATE INDEX acidic_runs_key_trgm_idx ON acidic_runs USING gin (idempotency_key gin_trgm_ops)"
)
_ARGS = "CREATE INDEX acidic_runs_args_trgm_idx ON acidic_runs USING gin (args gin_trgm_ops)"
_ERROR = (
    "CREATE INDEX acidic_runs_error_trgm_idx ON acidic_runs USING gin (error gin_trgm_ops)"
    " WHERE error IS NOT NULL"
)
_SETTLED = f" WHERE NOT ({_IN_FLIGHT})"
CONFIGURATIONS = {
    "0011": [_KEY, _ARGS, _ERROR],
    "0012": [
        _KEY + _SETTLED,
        _ARGS + _SETTLED,
        _ERROR,
        f"CREATE INDEX acidic_runs_in_flight_idx ON acidic_runs (id) WHERE {_IN_FLIGHT}",
    ],
    "none": [],
}
_NAMES = ("key_trgm", "args_trgm", "error_trgm", "in_flight")


def measure(statements: list[str], n: int) -> dict[str, float]:
    acidic_pg.reset_pg()
    with psycopg.connect(pg_url(DB), autocommit=True) as conn:
        for name in _NAMES:
            conn.execute(f"DROP INDEX IF EXISTS acidic_runs_{name}_idx")
        for statement in statements:
            conn.execute(statement)
        conn.execute("VACUUM acidic_runs")
        app, job = acidic_pg.pg_app()
        for i in range(n):
            app.enqueue(job(**acidic_pg.ride_args(i)), key=f"ride-{i}")
        size0 = conn.execute("SELECT pg_indexes_size('acidic_runs')").fetchone()
        worker = app.worker(concurrency=1, poll_interval=1.0)
        thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
        thread.start()
        wait_until(lambda: worker.running > 0 or worker.processed > 0, timeout=60)
        pids = _backend_pids(DB)
        cpu0, own0, start = sum(map(_cpu_seconds, pids)), os.times(), time.perf_counter()
        wait_until(lambda: worker.outcomes.get("succeeded", 0) >= n, timeout=3600)
        wall, cpu1, own1 = time.perf_counter() - start, sum(map(_cpu_seconds, pids)), os.times()
        worker.stop()
        thread.join()
        app.close()
        size1 = conn.execute("SELECT pg_indexes_size('acidic_runs')").fetchone()
    assert size0 is not None
    assert size1 is not None
    return {
        "index_bytes_per_run": (size1[0] - size0[0]) / n,
        "server_cpu_ms_per_run": 1000 * (cpu1 - cpu0) / n,
        "client_cpu_ms_per_run": 1000 * (own1.user + own1.system - own0.user - own0.system) / n,
        "wall_ms_per_run": 1000 * wall / n,
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGURATIONS}
    for r in range(rounds):
        for name, statements in CONFIGURATIONS.items():
            figures = measure(statements, n)
            results[name].append(figures)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
            print(f"round {r + 1} {name}: {shown}; load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\nmedians of {rounds} rounds, N = {n}:")
    for name, rows in results.items():
        shown = ", ".join(f"{k} {statistics.median(row[k] for row in rows):.2f}" for k in rows[0])
        print(f"  search indexes of {name}: {shown}")


if __name__ == "__main__":
    main()
