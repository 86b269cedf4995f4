"""``python -m bench``: the whole benchmark, one command (see docs/benchmarks.md).

Sections (``--sections``, comma-separated; all by default):

* ``arrival``: runs enqueued one by one while 4 worker processes x 1 executor, 2 x 2
  and 1 x 4 run, against the raw queue floor fed the same way, and Procrastinate; the
  drained queue; the inline pair (:mod:`bench.arrival`);
* ``throughput``: the ride workload through every system, each measurement in a fresh
  child process, in interleaved rounds (each round runs every system once, in an order
  rotated from round to round, so drift of a shared machine hits all alike);
* ``sql``: statements, transactions and round trips per job (:mod:`bench.sqlcount`);
* ``growth``: acidic's cost per job at several N and with 1,000,000 finished runs
  already in its table (:mod:`bench.growth`);
* ``latency``: enqueue-to-start with an idle ``acidic worker`` (:mod:`bench.latency`);
* ``memory``: an ``acidic worker``'s RSS across many runs (:mod:`bench.latency`).

Prints tables and writes everything to ``bench/results/<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from .common import PG_SERVER, RESTART_ERRORS, RESULTS, retry_on_restart, wait_for_pg

#: (system, mode, concurrency, label, floor): each measurement of a round. ``floor``
#: names the row this one is compared with (its ratio), None for a floor itself.
CONFIGS: list[tuple[str, str, int, str, str | None]] = [
    ("raw", "3tx", 1, "floor: raw psycopg, 3 tx/job, serial", None),
    ("raw", "1tx", 1, "absolute floor: raw psycopg, 1 tx/job, serial", None),
    ("raw", "3tx", 4, "floor: raw psycopg, 3 tx/job, 4 threads", None),
    ("raw", "1tx", 4, "absolute floor: raw psycopg, 1 tx/job, 4 threads", None),
    ("raw", "sa3tx", 1, "floor via SQLAlchemy Core text(), 3 tx/job, serial", "raw/3tx/1"),
    ("raw", "queue", 1, "raw queue: SKIP LOCKED claim + 3 tx, 1 thread", "raw/3tx/1"),
    ("raw", "queue", 4, "raw queue: SKIP LOCKED claim + 3 tx, 4 threads", "raw/3tx/4"),
    ("acidic-sql", "inline", 1, "acidic's SQL by raw psycopg, serial", "raw/3tx/1"),
    ("acidic-sql", "inline", 4, "acidic's SQL by raw psycopg, 4 threads", "raw/3tx/4"),
    ("acidic-sql", "queue", 4, "acidic's SQL by raw psycopg, queue, 4 thr.", "raw/3tx/4"),
    ("acidic", "inline", 1, "acidic app.run, serial", "raw/3tx/1"),
    ("acidic", "worker", 1, "acidic Worker, 1 executor", "raw/3tx/1"),
    ("acidic", "worker", 4, "acidic Worker, 4 executors", "raw/3tx/4"),
    ("acidic", "processes", 4, "acidic worker, 2 processes x 2 executors", "raw/3tx/4"),
    ("dbos", "serial", 1, "DBOS workflow, serial", "raw/3tx/1"),
    ("dbos", "queue", 1, "DBOS queue, worker_concurrency 1", "raw/3tx/1"),
    ("dbos", "queue", 4, "DBOS queue, worker_concurrency 4", "raw/3tx/4"),
    ("procrastinate", "task", 1, "Procrastinate, one task, concurrency 1", "raw/3tx/1"),
    ("procrastinate", "task", 4, "Procrastinate, one task, concurrency 4", "raw/3tx/4"),
    ("procrastinate", "chain", 1, "Procrastinate, 3 chained tasks, conc. 1", "raw/3tx/1"),
    ("procrastinate", "chain", 4, "Procrastinate, 3 chained tasks, conc. 4", "raw/3tx/4"),
    ("raw-sqlite", "3tx", 1, "SQLite floor: raw sqlite3, 3 tx/job, serial", None),
    ("acidic-sqlite", "inline", 1, "acidic app.run on SQLite, serial", "raw-sqlite/3tx/1"),
    ("acidic-sqlite", "worker", 1, "acidic Worker on SQLite, 1 executor", "raw-sqlite/3tx/1"),
]
#: The ``arrival`` section (bench/arrival.py): P worker processes x C executors, the
#: runs enqueued one by one (each its own transaction, 4 threads) while they run, or
#: drained; plus the inline pair, for the inline target in the same run.
SHAPES = ("4x1", "2x2", "1x4")
ARRIVAL_CONFIGS: list[tuple[str, str, int, str, str | None]] = [
    *(
        (system, f"arrival-{shape}", 4, f"{name}, one by one, {shape}", floor)
        for shape in SHAPES
        for system, name, floor in (
            ("raw", "raw queue floor", None),
            ("acidic", "acidic worker", f"raw/arrival-{shape}/4"),
        )
    ),
    # The same floor with its transactions on a SQLAlchemy Engine and its statements
    # text(): what an application writing its steps with SQLAlchemy pays without acidic.
    ("raw-sa", "arrival-4x1", 4, "SQLAlchemy queue floor, one by one, 4x1", "raw/arrival-4x1/4"),
    ("procrastinate", "arrival-4x1", 4, "Procrastinate task, one by one, 4x1", "raw/arrival-4x1/4"),
    ("procrastinate", "arrival-1x4", 4, "Procrastinate task, one by one, 1x4", "raw/arrival-1x4/4"),
    ("raw", "drain-4x1", 4, "raw queue floor, drain, 4x1", None),
    ("acidic", "drain-4x1", 4, "acidic worker, drain, 4x1", "raw/drain-4x1/4"),
    ("raw", "3tx", 1, "floor: raw psycopg, 3 tx/job, serial", None),
    ("acidic", "inline", 1, "acidic app.run, serial", "raw/3tx/1"),
]
PEERS = {"dbos": "dbos", "procrastinate": "procrastinate"}


def config_id(system: str, mode: str, concurrency: int) -> str:
    return f"{system}/{mode}/{concurrency}"


def run_child(
    system: str, mode: str, n: int, concurrency: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Measure in a fresh process; retried (twice) if PostgreSQL restarted meanwhile."""
    for attempt in range(3):
        wait_for_pg()
        try:
            return _run_child(system, mode, n, concurrency, env)
        except RuntimeError as exc:
            if attempt == 2 or not any(w in str(exc) for w in RESTART_ERRORS):
                raise
            print("(PostgreSQL restarted: measuring again)", end="", flush=True)
            time.sleep(2)
    raise AssertionError("unreachable")


def _run_child(
    system: str, mode: str, n: int, concurrency: int, env: dict[str, str] | None
) -> dict[str, Any]:
    env = dict(env or {})
    if system in VARIANTS:  # another acidic tree, first on the child's path
        env["PYTHONPATH"] = os.pathsep.join([VARIANTS[system], str(Path(__file__).parent.parent)])
        system = "acidic"
    cmd = [sys.executable, "-m", "bench.one", system, mode, str(n), str(concurrency)]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        env={**os.environ, **(env or {})},
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            result: dict[str, Any] = json.loads(line[len("BENCH-RESULT ") :])
            result["loadavg_1min_after"] = os.getloadavg()[0]  # how shared the machine was
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
    raise RuntimeError(f"{' '.join(cmd[2:])} failed (exit {proc.returncode}): " + " | ".join(tail))


def peer_missing(system: str) -> str | None:
    module = PEERS.get(system)
    if module is None:
        return None
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.__name__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"not installed ({probe.stderr.strip().splitlines()[-1]}); pip install -e '.[bench]'"
    return None


#: acidic trees measured side by side (``--acidic-variant NAME=SRC``): system name -> src.
VARIANTS: dict[str, str] = {}
#: ``--variants-only``: the variants replace this tree's acidic (an A/B of two trees).
VARIANTS_ONLY = False


def set_variants(specs: list[str], only: bool) -> None:
    """``--acidic-variant NAME=SRC`` (each) and ``--variants-only``."""
    global VARIANTS_ONLY  # noqa: PLW0603 - set once, from the command line
    VARIANTS_ONLY = only
    for variant in specs:
        name, src = variant.split("=", 1)
        VARIANTS[f"acidic@{name}"] = str(Path(src).resolve())


def with_variants(configs: list[tuple[str, str, int, str, str | None]]) -> list[Any]:
    """Each acidic PostgreSQL configuration once more per ``--acidic-variant``."""
    out = list(configs)
    if VARIANTS and VARIANTS_ONLY:  # A/B of two trees: not this tree's src as a third
        out = [c for c in configs if c[0] != "acidic"]
    for name in VARIANTS:
        out += [
            (name, mode, c, f"{label} [{name.split('@', 1)[1]}]", floor)
            for system, mode, c, label, floor in configs
            if system == "acidic"
        ]
    return out


def throughput(
    args: argparse.Namespace,
    out: dict[str, Any],
    all_configs: list[tuple[str, str, int, str, str | None]] = CONFIGS,
    section: str = "throughput",
) -> None:
    configs = with_variants(
        [
            c
            for c in all_configs
            if (not args.systems or c[0] in args.systems) and (not args.modes or c[1] in args.modes)
        ]
    )
    skipped: dict[str, str] = {}
    for system in {c[0] for c in configs}:
        reason = peer_missing(system)
        if reason:
            skipped[system] = reason
    configs = [c for c in configs if c[0] not in skipped]
    samples: dict[str, list[dict[str, Any]]] = {config_id(*c[:3]): [] for c in configs}
    failures: dict[str, str] = {}
    for r in range(args.rounds):
        shift = r * len(configs) // max(args.rounds, 1)
        order = configs[shift:] + configs[:shift]
        print(f"round {r + 1}/{args.rounds}: ", end="", flush=True)
        for system, mode, concurrency, _label, _floor in order:
            cid = config_id(system, mode, concurrency)
            if section == "arrival":
                _vacuum_bench()
            try:
                result = run_child(system, mode, args.n, concurrency)
            except Exception as exc:  # recorded; tried again in the next round
                failures[cid] = f"round {r + 1}: {exc}"
                print("x", end="", flush=True)
                continue
            result["round"] = r
            samples[cid].append(result)
            print(".", end="", flush=True)
        print(flush=True)
    rows = summarise(configs, samples, failures)
    out[section] = {"rows": rows, "skipped": skipped, "failures": failures}
    print_throughput(rows, skipped, failures, args.n)


def _vacuum_bench() -> None:
    """Autovacuum may be off: dead rows of earlier rounds would tax every queue."""
    from .common import DATABASES, ensure_database, pg_url  # noqa: PLC0415

    for database in {DATABASES["acidic"], DATABASES["procrastinate"]}:
        ensure_database(database)
        with psycopg.connect(pg_url(database), autocommit=True) as conn:
            conn.execute("VACUUM")


def summarise(
    configs: list[tuple[str, str, int, str, str | None]],
    samples: dict[str, list[dict[str, Any]]],
    failures: dict[str, str],
) -> list[dict[str, Any]]:
    rows = []
    for system, mode, concurrency, label, floor in configs:
        cid = config_id(system, mode, concurrency)
        got = samples.get(cid, [])
        if not got:
            rows.append({"id": cid, "label": label, "error": failures.get(cid, "no sample")})
            continue
        rates = [s["jobs_per_s"] for s in got]
        row: dict[str, Any] = {
            "id": cid,
            "label": label,
            "n": got[0]["n"],
            "rounds": len(got),
            "jobs_per_s": statistics.median(rates),
            "jobs_per_s_min": min(rates),
            "jobs_per_s_max": max(rates),
            "ms_per_job": statistics.median(1000 * s["seconds"] / s["n"] for s in got),
            "samples": got,
            "floor": floor,
            "failed_rounds": failures.get(cid),
        }
        cpu = [
            s["extra"]["worker_cpu_ms_per_run"]
            for s in got
            if "worker_cpu_ms_per_run" in s.get("extra", {})
        ]
        if cpu:
            row["worker_cpu_ms_per_run"] = statistics.median(cpu)
            row["pg_cpu_ms_per_run"] = statistics.median(
                s["extra"]["pg_backend_cpu_ms_per_run"] for s in got
            )
            row["loadavg"] = [round(s["extra"]["loadavg"], 1) for s in got]
            row["updated"] = statistics.median(
                s["extra"].get("rows_updated_per_run", 0) for s in got
            )
            row["index_bytes"] = statistics.median(
                s["extra"].get("queue_index_bytes_per_run", 0) for s in got
            )
            row["hot"] = statistics.median(s["extra"].get("hot_updates_per_run", 0) for s in got)
            row["commits_per_run"] = statistics.median(
                s["extra"].get("commits_per_run", 0) for s in got
            )
        if floor:
            # Per-round ratios (same round, so same machine load), then their median.
            base = {s["round"]: s for s in samples.get(floor, [])}
            ratios = [
                base[s["round"]]["jobs_per_s"] / s["jobs_per_s"] for s in got if s["round"] in base
            ]
            if ratios:
                row["time_ratios"] = ratios
                row["time_ratio"] = statistics.median(ratios)
                row["time_ratio_min"] = min(ratios)
                row["time_ratio_max"] = max(ratios)
        rows.append(row)
    return rows


def print_throughput(
    rows: list[dict[str, Any]], skipped: dict[str, str], failures: dict[str, str], n: int
) -> None:
    print(f"\nThroughput, N = {n} ride jobs (median of rounds; spread = min..max of rounds)")
    head = f"{'':50} {'jobs/s':>8} {'spread':>13} {'ms/job':>7} {'x floor time':>13}  vs"
    print(head)
    for row in rows:
        if "error" in row:
            print(f"{row['label']:50} failed: {row['error'][:100]}")
            continue
        spread = f"{row['jobs_per_s_min']:.0f}..{row['jobs_per_s_max']:.0f}"
        ratio = ""
        if "time_ratio" in row:
            ratio = (
                f"{row['time_ratio']:.2f} ({row['time_ratio_min']:.2f}-{row['time_ratio_max']:.2f})"
            )
        print(
            f"{row['label']:50} {row['jobs_per_s']:8.0f} {spread:>13} {row['ms_per_job']:7.2f}"
            f" {ratio:>13}  {row['floor'] or ''}"
        )
        if "time_ratios" in row:
            per_round = ", ".join(f"{1 / r:.2f}" for r in row["time_ratios"])
            print(f"{'':52}throughput / floor's, per round: {per_round}")
        if "worker_cpu_ms_per_run" in row:
            print(
                f"{'':52}queue's indexes {row['index_bytes']:.0f} bytes/run;"
                f" CPU ms/run: workers {row['worker_cpu_ms_per_run']:.2f},"
                f" PostgreSQL backends {row['pg_cpu_ms_per_run']:.2f};"
                f" commits/run {row['commits_per_run']:.1f}, updates/run {row['updated']:.1f}"
                f" ({row['hot']:.1f} HOT); load {row['loadavg']}"
            )
    for system, reason in skipped.items():
        print(f"{system}: skipped: {reason}")
    del failures  # printed in their rows


def _median_round_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """The median over the rounds of ``a``'s throughput over ``b``'s in the same round
    (as the floor ratios are taken), or None if either was not measured."""
    if not a or not b:
        return None
    by_round = {s["round"]: s["jobs_per_s"] for s in b["samples"]}
    ratios = [
        s["jobs_per_s"] / by_round[s["round"]] for s in a["samples"] if s["round"] in by_round
    ]
    return statistics.median(ratios) if ratios else None


def _arrival_targets(out: dict[str, Any], checks: list[tuple[str, str, bool]]) -> None:
    """The targets of the arrival section (issue 18's), appended to ``checks``."""
    arrival = {r["id"]: r for r in out.get("arrival", {}).get("rows", []) if "error" not in r}
    for shape in SHAPES:
        r = arrival.get(f"acidic/arrival-{shape}/4", {}).get("time_ratio")
        if r is not None:
            want = 0.5 if shape == "4x1" else 0.0
            checks.append(
                (
                    f"acidic one by one {shape} >= {want}x raw queue floor",
                    f"{1 / r:.2f}x",
                    1 / r >= want,
                )
            )
    for shape in ("4x1", "1x4"):
        # At the same concurrency: the same processes x executors on both sides.
        peer = f"procrastinate/arrival-{shape}/4"
        r = _median_round_ratio(arrival.get(f"acidic/arrival-{shape}/4"), arrival.get(peer))
        if r is not None:
            checks.append((f"acidic one by one {shape} >= 1.5x {peer}", f"{r:.2f}x", r >= 1.5))
    r = _median_round_ratio(
        arrival.get("acidic/arrival-4x1/4"), arrival.get("raw-sa/arrival-4x1/4")
    )
    if r is not None:
        checks.append(("acidic one by one 4x1 vs SQLAlchemy queue floor", f"{r:.2f}x", True))
    d = arrival.get("acidic/drain-4x1/4", {}).get("time_ratio")
    if d is not None:
        checks.append(("acidic drain 4x1 vs raw queue floor", f"{1 / d:.2f}x", True))
    inl = arrival.get("acidic/inline/1", {}).get("time_ratio")
    if inl is not None:
        checks.append(("acidic inline >= 0.55x raw 3-tx floor", f"{1 / inl:.2f}x", 1 / inl >= 0.55))


def targets(out: dict[str, Any]) -> None:
    rows = {r["id"]: r for r in out.get("throughput", {}).get("rows", []) if "error" not in r}
    checks = []

    def ratio(a: str, b: str) -> float | None:
        if a in rows and b in rows:
            return float(rows[a]["jobs_per_s"] / rows[b]["jobs_per_s"])
        return None

    inline = rows.get("acidic/inline/1", {}).get("time_ratio")
    if inline is not None:
        checks.append(
            ("acidic inline time <= 1.25x raw 3-tx floor", f"{inline:.2f}x", inline <= 1.25)
        )
    w4 = rows.get("acidic/worker/4", {}).get("time_ratio")
    if w4 is not None:
        checks.append(
            ("acidic worker(4) throughput >= 0.7x raw floor(4)", f"{1 / w4:.2f}x", 1 / w4 >= 0.7)
        )
    p4 = rows.get("acidic/processes/4", {}).get("time_ratio")
    if p4 is not None:
        checks.append(
            ("acidic 2 processes x 2 >= 0.7x raw floor(4)", f"{1 / p4:.2f}x", 1 / p4 >= 0.7)
        )
    for peer, want in (
        ("dbos/queue/4", 5.0),
        ("procrastinate/task/4", 1.5),
        ("procrastinate/chain/4", 3.0),
    ):
        for mine, label in (("acidic/worker/4", "worker(4)"), ("acidic/processes/4", "2x2")):
            r = ratio(mine, peer)
            if r is not None:
                checks.append((f"acidic {label} >= {want}x {peer}", f"{r:.2f}x", r >= want))
    _arrival_targets(out, checks)
    sql = out.get("sql")
    if sql:
        step = sql.get("acidic_step_overhead")
        if step is not None:
            checks.append(("statements per tx step <= own + 1", f"own + {step:g}", step <= 1))
    lat = out.get("latency", {}).get("median_ms")
    if lat is not None:
        checks.append(("enqueue-to-start median < 10 ms", f"{lat:.1f} ms", lat < 10))
    mem = out.get("memory", {}).get("growth")
    if mem is not None:
        checks.append(
            (
                f"worker RSS flat within 10% over {out['memory']['runs']} runs",
                f"{100 * mem:+.1f}%",
                abs(mem) <= 0.10,
            )
        )
    out["targets"] = [{"target": t, "measured": m, "met": ok} for t, m, ok in checks]
    if checks:
        print("\nTargets")
        for t, m, ok in checks:
            print(f"  {'MET ' if ok else 'MISS'}  {t:52} {m}")
    gap(rows, out)


def gap(rows: dict[str, Any], out: dict[str, Any]) -> None:
    """Split acidic's distance from the floor into its SQL (acidic's statements sent by
    raw psycopg: the design) and its client (acidic against its own SQL)."""
    pairs = (
        ("inline, serial", "acidic/inline/1", "acidic-sql/inline/1", "raw/3tx/1"),
        ("worker, 4 executors", "acidic/worker/4", "acidic-sql/queue/4", "raw/3tx/4"),
        ("2 processes x 2", "acidic/processes/4", "acidic-sql/queue/4", "raw/3tx/4"),
    )
    found = []
    for label, mine, design, floor in pairs:
        # Both ratios are per-round medians against the same floor row.
        if all("time_ratio" in rows.get(x, {}) for x in (mine, design)):
            d, a = rows[design]["time_ratio"], rows[mine]["time_ratio"]
            if rows[design]["floor"] == rows[mine]["floor"] == floor:
                found.append({"what": label, "design": d, "client": a / d, "total": a})
    if not found:
        return
    out["gap"] = found
    print("\nWhere the time goes (time per job; ratios of per-round medians)")
    print(f"  {'':22} {'SQL / floor':>12} {'acidic / SQL':>13} {'= acidic / floor':>17}")
    for g in found:
        print(f"  {g['what']:22} {g['design']:11.2f}x {g['client']:12.2f}x {g['total']:16.2f}x")


def machine() -> dict[str, Any]:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        fsync = conn.execute("SHOW synchronous_commit").fetchone()
    load = os.getloadavg()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "loadavg_at_start": load,
        "python": platform.python_version(),
        "postgresql": row[0] if row else None,
        "synchronous_commit": fsync[0] if fsync else None,
        "argv": sys.argv,
    }


def acidic_version() -> dict[str, Any]:
    """Which acidic was measured: the commit, and whether src/ had uncommitted changes."""
    root = Path(__file__).parent.parent

    def git(*a: str) -> str:
        return subprocess.run(
            ["git", *a],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "src_changes": git("status", "--short", "src")}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="jobs per measurement (2000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--sections",
        default="throughput,arrival,sql,growth,latency,memory",
        help="comma-separated sections to run (all)",
    )
    parser.add_argument("--systems", default="", help="only these systems (comma-separated)")
    parser.add_argument("--modes", default="", help="only these modes (e.g. arrival-4x1,inline)")
    parser.add_argument("--growth-ns", default="500,2000,8000", help="N of the growth section")
    parser.add_argument(
        "--growth-base", type=int, default=1_000_000, help="finished runs preloaded"
    )
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--memory-runs", type=int, default=20_000)
    parser.add_argument(
        "--acidic-variant",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="also measure the acidic package under SRC (a tree's src/), e.g. a patched copy",
    )
    parser.add_argument(
        "--variants-only",
        action="store_true",
        help="measure only the --acidic-variant trees, not this tree's acidic",
    )
    parser.add_argument("--out", default="", help="JSON file (default bench/results/<time>.json)")
    args = parser.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    args.modes = [s for s in args.modes.split(",") if s]
    sections = [s for s in args.sections.split(",") if s]
    set_variants(args.acidic_variant, args.variants_only)
    out: dict[str, Any] = {"machine": machine(), "n": args.n, "rounds": args.rounds}
    out["machine"]["acidic"] = acidic_version()
    out["variants"] = VARIANTS
    print(f"bench: {json.dumps(out['machine'])}")
    started = time.monotonic()
    if "throughput" in sections:
        throughput(args, out)
    if "arrival" in sections:
        throughput(args, out, ARRIVAL_CONFIGS, "arrival")
    if "sql" in sections:
        from .sqlcount import print_sql, sql_section  # noqa: PLC0415

        out["sql"] = sql_section()
        print_sql(out["sql"])
    if "growth" in sections:
        from .growth import growth_section, print_growth  # noqa: PLC0415

        out["growth"] = growth_section(
            [int(x) for x in args.growth_ns.split(",")], args.growth_base
        )
        print_growth(out["growth"])
    if "latency" in sections:
        from .latency import latency_section  # noqa: PLC0415

        out["latency"] = retry_on_restart(latency_section, args.latency_samples)
    if "memory" in sections:
        from .latency import memory_section  # noqa: PLC0415

        out["memory"] = retry_on_restart(memory_section, args.memory_runs)
    targets(out)
    out["seconds"] = time.monotonic() - started
    out["machine"]["loadavg_at_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out or str(RESULTS / f"{stamp}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"\nresults: {path} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
