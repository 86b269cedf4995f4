"""One measurement in this (child) process: ``python -m bench.one SYSTEM MODE N C``.

Prints its :class:`~bench.common.Measurement` as the last line (``BENCH-RESULT {json}``).
"""

from __future__ import annotations

# ruff: noqa: PLC0415 - peers are optional extras: imported only when measured
import sys

from .common import Measurement, emit


def measure(system: str, mode: str, n: int, concurrency: int) -> Measurement:
    # Peers are imported only when measured: they are optional extras.
    if mode.startswith(("arrival-", "drain-")):
        from . import arrival

        return arrival.measure(system, mode, n)
    if system == "raw":
        from .systems import raw_pg

        return raw_pg.run(mode, n, concurrency)
    if system == "acidic-sql":
        from .systems import acidic_sql

        return acidic_sql.run(mode, n, concurrency)
    if system == "raw-sqlite":
        from .systems import raw_sqlite

        return raw_sqlite.run(n)
    if system in ("acidic", "acidic-sqlite"):
        from .systems import acidic_pg

        return acidic_pg.run(mode, n, concurrency, sqlite=system == "acidic-sqlite")
    if system == "dbos":
        from .systems import dbos_pg

        return dbos_pg.run(mode, n, concurrency)
    if system == "procrastinate":
        from .systems import procrastinate_pg

        return procrastinate_pg.run(mode, n, concurrency)
    raise SystemExit(f"unknown system {system!r}")


def main() -> None:
    system, mode, n, concurrency = sys.argv[1:5]
    from .telemetry import set_up  # ``$BENCH_TELEMETRY``: see bench/telemetry.py

    set_up()
    emit(measure(system, mode, int(n), int(concurrency)))


if __name__ == "__main__":
    main()
