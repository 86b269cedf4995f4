"""Where acidic's time goes, beside the database: ``python -m bench.profile [N]``.

For acidic inline (``app.run``) and its worker (4 executors) on PostgreSQL, with the
acidic found on ``sys.path`` (set ``PYTHONPATH`` to profile another tree):

* CPU per job (user and system time of the process, ``os.times``) next to the raw
  3-tx floor's, and wall time per job;
* statements SQLAlchemy had to compile per job (cache misses: each costs a full
  compilation), counted by wrapping ``SQLCompiler.__init__``;
* a py-spy profile (``--gil``: only samples where Python holds the GIL, so waiting on
  the server is left out), summed per acidic function (inclusive) and per library
  (innermost frame).

Writes ``bench/results/profile-<time>.txt``.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import RESULTS, ride_args

CATEGORIES = [
    ("psycopg", "psycopg: protocol, adaptation, waiting"),
    ("pydantic", "pydantic"),
    ("json/", "json"),
    ("sqlalchemy/sql/compiler", "SQLAlchemy: compiling"),
    ("sqlalchemy/pool", "SQLAlchemy: pool checkout/return"),
    ("sqlalchemy/event", "SQLAlchemy: events"),
    ("sqlalchemy/sql", "SQLAlchemy: building statements, cache keys"),
    ("sqlalchemy/engine", "SQLAlchemy: execute, results, transactions"),
    ("uuid", "uuid"),
    ("acidic/", "acidic's own code"),
]


def _workload(mode: str, n: int) -> None:
    """The profiled child: acidic inline or worker, then the raw floor, with figures."""
    from sqlalchemy.sql import compiler  # noqa: PLC0415

    from .systems import acidic_pg, raw_pg  # noqa: PLC0415

    compiled = [0]
    original = compiler.SQLCompiler.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        compiled[0] += 1
        original(self, *args, **kwargs)

    compiler.SQLCompiler.__init__ = counting  # type: ignore[method-assign]
    acidic_pg.reset_pg()
    app, job = acidic_pg.pg_app()
    for i in range(20):  # warm: pool, dialect, caches
        app.run(job(**ride_args(i)), key=f"warm-{i}")
    compiled[0] = 0
    before, t0 = os.times(), time.perf_counter()
    if mode == "inline":
        for i in range(n):
            app.run(job(**ride_args(i)), key=f"ride-{i}")
        wall = time.perf_counter() - t0
    else:
        wall = acidic_pg.run_worker(app, job, n, 4)  # includes enqueueing N runs: CPU too
    after = os.times()
    app.close()
    print(
        f"FIGURES acidic-{mode} wall_ms={1000 * wall / n:.2f}"
        f" user_ms={1000 * (after.user - before.user) / n:.2f}"
        f" sys_ms={1000 * (after.system - before.system) / n:.2f}"
        f" compiled_per_job={compiled[0] / n:.2f}"
    )
    raw_pg.reset_ride_tables(raw_pg.DB)
    conn = raw_pg.connect()
    before, t0 = os.times(), time.perf_counter()
    for i in range(n):
        raw_pg.job_3tx(conn, i)
    wall = time.perf_counter() - t0
    after = os.times()
    conn.close()
    print(
        f"FIGURES raw-3tx wall_ms={1000 * wall / n:.2f}"
        f" user_ms={1000 * (after.user - before.user) / n:.2f}"
        f" sys_ms={1000 * (after.system - before.system) / n:.2f}"
    )


def aggregate(raw: str, root: str) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """py-spy's collapsed stacks under frames matching ``root``: total samples, samples
    per acidic function (inclusive), samples per library (innermost frame)."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    library: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        frames = [re.sub(r" \(([^:]*):\d+\)$", r" (\1)", f) for f in stack.split(";")]
        if not any(root in f for f in frames):
            continue
        n = int(count)
        total += n
        for f in set(frames):
            if "acidic/" in f:
                inclusive[f] += n
        for f in reversed(frames):
            hit = next((label for key, label in CATEGORIES if key in f), None)
            if hit:
                library[hit] += n
                break
        else:
            library["other"] += n
    return total, inclusive.most_common(30), library.most_common()


def profile(mode: str, n: int) -> str:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [sys.executable, "-m", "bench.profile", "--child", mode, str(n)]
    lines = [f"== acidic {mode}, N = {n}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        if os.path.exists(py_spy):
            cmd = [py_spy, "record", "--gil", "--nonblocking", "-r", "500", "--format", "raw"]
            cmd += ["-o", str(out), "--", sys.executable, "-m", "bench.profile", "--child"]
            cmd += [mode, str(n)]
        else:
            lines.append("(py-spy not installed: figures only; pip install -e '.[bench]')")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines += [ln for ln in proc.stdout.splitlines() if ln.startswith("FIGURES")]
        if proc.returncode != 0:
            lines.append("failed: " + proc.stderr[-2000:])
        if out.exists():
            root = "App.run (acidic/_app.py)" if mode == "inline" else "Worker._execute"
            for label, root_ in (("executing runs", root), ("worker: claiming", "Worker._claim")):
                if mode == "inline" and label != "executing runs":
                    continue
                total, inclusive, library = aggregate(out.read_text(), root_)
                if not total:
                    continue
                lines.append(f"-- {label}: {total} samples holding the GIL, per library:")
                lines += [f"   {100 * v / total:5.1f}%  {k}" for k, v in library]
                lines.append("   per acidic function (inclusive):")
                lines += [f"   {100 * v / total:5.1f}%  {k}" for k, v in inclusive[:25]]
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _workload(sys.argv[2], int(sys.argv[3]))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    report = "\n\n".join(profile(mode, n) for mode in ("inline", "worker"))
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"profile-{stamp}.txt"
    path.write_text(report + "\n")
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
