"""Per-job SQL: the statements, transactions and round trips each system sends.

``pg_stat_statements`` is not loaded on the benchmark's server (loading it needs a
restart), so the count is taken from the client side, exactly: every psycopg connection
opened in the measuring process is traced with libpq's protocol trace (``PQtrace``),
which records each message sent to the server. A round trip is a ``ReadyForQuery``
from the server; a statement is a ``Parse`` (extended protocol) or a simple ``Query``
other than BEGIN/COMMIT/ROLLBACK. On SQLite the driver's trace callback records every
statement. Fixed costs (connecting, checking the schema, starting a worker) are
removed by difference: each workload is measured for 1 job and for 1 + ``JOBS`` jobs
in fresh processes, and the per-job figure is (big - small) / ``JOBS``.

``python -m bench.sqlcount SYSTEM MODE N C`` is the child; :func:`measure_all` the parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

JOBS = 20
#: The bench's own "are we done yet" queries start with this; they are not counted.
POLL_MARK = "SELECT count(*) /* bench poll */"
#: (system, mode, concurrency) measured, and a label.
WORKLOADS = [
    ("raw", "3tx", 1, "raw psycopg, 3 tx/job"),
    ("raw", "1tx", 1, "raw psycopg, 1 tx/job"),
    ("raw", "queue", 1, "raw psycopg queue (claim + 3 tx)"),
    ("acidic", "inline", 1, "acidic app.run"),
    ("acidic", "worker", 1, "acidic worker, 1 executor"),
    ("dbos", "serial", 1, "DBOS workflow, called"),
    ("dbos", "queue", 1, "DBOS workflow via queue"),
    ("procrastinate", "task", 1, "Procrastinate, one task"),
    ("procrastinate", "chain", 1, "Procrastinate, 3 chained tasks"),
    ("raw-sqlite", "3tx", 1, "raw sqlite3, 3 tx/job"),
    ("acidic-sqlite", "inline", 1, "acidic app.run (SQLite)"),
]

_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK"}


def _install_pg_tracing(directory: Path) -> None:
    import psycopg  # noqa: PLC0415
    from psycopg import pq  # noqa: PLC0415

    counter = iter(range(1_000_000))
    flags = pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE

    def traced(conn: Any) -> Any:
        file = open(directory / f"conn-{next(counter):04d}.trace", "w")  # noqa: SIM115
        conn.pgconn.trace(file.fileno())
        conn.pgconn.set_trace_flags(flags)
        _open_traces.append((conn.pgconn, file))
        return conn

    sync_connect = psycopg.Connection.connect.__func__  # type: ignore[attr-defined]
    async_connect = psycopg.AsyncConnection.connect.__func__  # type: ignore[attr-defined]

    def connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return traced(sync_connect(cls, *args, **kwargs))

    async def aconnect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return traced(await async_connect(cls, *args, **kwargs))

    psycopg.Connection.connect = classmethod(connect)  # type: ignore[method-assign,assignment]
    psycopg.connect = psycopg.Connection.connect  # the module's alias, bound at import
    psycopg.AsyncConnection.connect = classmethod(aconnect)  # type: ignore[method-assign,assignment]


_open_traces: list[tuple[Any, Any]] = []


def _install_sqlite_tracing(directory: Path) -> None:
    import sqlite3  # noqa: PLC0415

    log = open(directory / "sqlite.trace", "w")  # noqa: SIM115
    _open_traces.append((None, log))
    original = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = original(*args, **kwargs)
        conn.set_trace_callback(lambda sql: log.write(" ".join(sql.split()) + "\n"))
        return conn

    sqlite3.connect = connect
    sqlite3.dbapi2.connect = connect  # what SQLAlchemy's pysqlite dialect calls


def _close_traces() -> None:
    for pgconn, file in _open_traces:
        if pgconn is not None:
            with contextlib.suppress(Exception):  # a finished connection: already untraced
                pgconn.untrace()
        file.flush()
        file.close()


_MESSAGE = re.compile(r"^F\t\d+\t(Query|Parse|Bind|Execute)\t (.*)$")
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def parse_pg(text: str) -> list[str]:
    """The statements executed in a protocol trace, in order; ``@RT`` marks each round
    trip. A statement is a simple ``Query``, or an ``Execute`` of the statement bound
    last (psycopg prepares statements it has run 5 times: later runs send no ``Parse``)."""
    out: list[str] = []
    lines: list[str] = []
    for raw in text.splitlines():  # a statement's own newlines continue its message
        if raw.startswith(("F\t", "B\t")) or not lines:
            lines.append(raw)
        else:
            lines[-1] += " " + raw
    prepared: dict[str, str] = {}
    bound = ""
    for line in lines:
        if line.startswith("B\t") and "\tReadyForQuery\t" in line:
            out.append("@RT")
            continue
        m = _MESSAGE.match(line)
        if not m:
            continue
        kind, rest = m.groups()
        quoted = _QUOTED.findall(rest)
        if kind == "Query" and quoted:
            out.append(" ".join(quoted[0].split()))
        elif kind == "Parse" and len(quoted) >= 2:
            prepared[quoted[0]] = " ".join(quoted[1].split())
        elif kind == "Bind" and len(quoted) >= 2:
            bound = prepared.get(quoted[1], "?")
        elif kind == "Execute":
            out.append(bound)
    return out


def summarise(statements: list[str]) -> dict[str, int]:
    c: Counter[str] = Counter()
    polls = sum(1 for s in statements if s.startswith(POLL_MARK))
    c["round_trips"] -= polls  # the bench's own progress polls (autocommit: one each)
    for s in statements:
        if s.startswith(POLL_MARK):
            continue
        if s == "@RT":
            c["round_trips"] += 1
            continue
        word = s.split(" ", 1)[0].upper()
        if word in _CONTROL or s.upper().startswith("BEGIN"):
            c[word.lower() + "s"] += 1
        else:
            c["statements"] += 1
            if word in ("LISTEN", "SELECT") and "pg_notify" not in s and "FROM" not in s.upper():
                c["other"] += 1
    return dict(c)


def child(system: str, mode: str, n: int, concurrency: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bench-sql-"))
    if system.endswith("sqlite"):
        _install_sqlite_tracing(directory)
    else:
        _install_pg_tracing(directory)
    from .one import measure  # noqa: PLC0415

    measure(system, mode, n, concurrency)
    _close_traces()
    statements: list[str] = []
    texts: dict[str, list[str]] = {}
    for path in sorted(directory.iterdir()):
        text = path.read_text()
        parsed = parse_pg(text) if path.suffix == ".trace" and "conn-" in path.name else None
        if parsed is None:
            parsed = [s for s in text.splitlines() if s]
            parsed = [x for s in parsed for x in (s, "@RT")]  # one call per statement
        texts[path.name] = parsed
        statements.extend(parsed)
        path.unlink()
    directory.rmdir()
    return {"summary": summarise(statements), "connections": texts}


def _in_child(system: str, mode: str, n: int, concurrency: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.sqlcount", system, mode, str(n), str(concurrency)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-SQL "):
            data: dict[str, Any] = json.loads(line[len("BENCH-SQL ") :])
            return data
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


def measure_all(workloads: list[tuple[str, str, int, str]] | None = None) -> list[dict[str, Any]]:
    rows = []
    for system, mode, concurrency, label in workloads or WORKLOADS:
        try:
            small = _in_child(system, mode, 1, concurrency)
            big = _in_child(system, mode, 1 + JOBS, concurrency)
        except Exception as exc:
            rows.append({"system": system, "mode": mode, "label": label, "error": str(exc)})
            continue
        keys = set(small["summary"]) | set(big["summary"])
        per_job = {
            k: (big["summary"].get(k, 0) - small["summary"].get(k, 0)) / JOBS for k in sorted(keys)
        }
        rows.append(
            {
                "system": system,
                "mode": mode,
                "label": label,
                "per_job": per_job,
                "one_job": one_job_trace(big),
            }
        )
    return rows


def one_job_trace(run: dict[str, Any]) -> list[str]:
    """The statements of the last job on the busiest connection (for the report)."""
    conns = sorted(run["connections"].values(), key=len)
    if not conns:
        return []
    seq = [s for s in conns[-1] if s != "@RT"]
    # Where a job starts, by system: its key lookup, its claim, or its first write.
    markers = ("idempotency_key = ", "INSERT INTO acidic_runs", "SET status = 'running'")
    for marker in (*markers, "INSERT INTO rides"):
        starts = [i for i, s in enumerate(seq) if marker in s]
        if starts:
            start = starts[-1] - (1 if starts[-1] and seq[starts[-1] - 1] == "BEGIN" else 0)
            return seq[start:]
    return seq[-12:]


def main() -> None:
    system, mode, n, concurrency = sys.argv[1:5]
    # The traces read the job's own statements; keep every child's output quiet.
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    result = child(system, mode, int(n), int(concurrency))
    sys.stdout.write("BENCH-SQL " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()


_USER_TABLES = ("rides", "ride_audit")


def step_transactions(trace: list[str]) -> list[list[str]]:
    """The transactions of one job's trace (statements between BEGIN and COMMIT)."""
    txs: list[list[str]] = []
    current: list[str] | None = None
    for s in trace:
        word = s.split(" ", 1)[0].upper()
        if word == "BEGIN":
            current = []
        elif word in ("COMMIT", "ROLLBACK"):
            if current is not None:
                txs.append(current)
            current = None
        elif current is not None:
            current.append(s)
    return txs


def _is_user(statement: str) -> bool:
    return any(f" {t} " in f" {statement} " for t in _USER_TABLES)


def sql_section() -> dict[str, Any]:
    rows = measure_all()
    out: dict[str, Any] = {"rows": rows, "jobs": JOBS}
    for row in rows:
        if row["system"] == "acidic" and row["mode"] == "inline" and "one_job" in row:
            steps = [tx for tx in step_transactions(row["one_job"]) if any(map(_is_user, tx))]
            extra = [sum(1 for s in tx if not _is_user(s)) for tx in steps]
            out["acidic_step_overhead"] = max(extra) if extra else None
            out["acidic_step_transactions"] = steps
    return out


def print_sql(section: dict[str, Any]) -> None:
    print(f"\nSQL per job (difference of 1 and {1 + section['jobs']} jobs; libpq/sqlite traces)")
    cols = ("statements", "begins", "commits", "rollbacks", "round_trips")
    print(f"{'':36}" + "".join(f"{c:>12}" for c in cols))
    for row in section["rows"]:
        if "error" in row:
            print(f"{row['label']:36} failed: {row['error'][:80]}")
            continue
        per = row["per_job"]
        print(f"{row['label']:36}" + "".join(f"{per.get(c, 0):12.1f}" for c in cols))
    for row in section["rows"]:
        if row.get("one_job") and row["system"] in ("raw", "acidic") and row["mode"] != "1tx":
            print(f"\none job, {row['label']}:")
            for s in row["one_job"][:40]:
                print("   " + (s if len(s) <= 110 else s[:107] + "..."))
    if section.get("acidic_step_overhead") is not None:
        print(
            f"acidic: statements per transactional step = own + {section['acidic_step_overhead']}"
        )
