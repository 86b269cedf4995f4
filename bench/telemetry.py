"""What telemetry costs a ride: ``python -m bench.telemetry [--n N] [--rounds R]``.

The inline ride (``app.run``, three steps, one of them a foreign call) measured, each
time in a fresh child process (``python -m bench.one``), with telemetry in each state
a user can be in, as ratios against the raw-SQL floor measured in the same run:

* ``absent``: OpenTelemetry cannot be imported (the ``otel`` extra not installed;
  the child blocks the import): acidic's do-nothing observer;
* ``off``: installed, but turned off (``ACIDIC_TELEMETRY=off``): the same observer;
* ``api``: the API installed and no SDK configured (the default of an application
  that does not trace): the API's no-op tracer and meter;
* ``sdk``: the SDK configured, spans to an in-memory exporter (a simple, synchronous
  span processor), metrics to an in-memory reader.

On PostgreSQL (floor: raw psycopg, 3 transactions per ride) and SQLite (floor: raw
sqlite3). Rounds are interleaved (each round runs every configuration once, in an
order rotated from round to round); the table shows each configuration's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

#: Read by :func:`set_up` in the child.
ENV = "BENCH_TELEMETRY"
STATES = ("absent", "off", "api", "sdk")


def set_up() -> None:
    """In a measuring child: put telemetry in the state ``$BENCH_TELEMETRY`` names
    (nothing when unset)."""
    state = os.environ.get(ENV)
    if state in (None, "", "api"):
        return
    if state == "absent":
        from importlib.abc import MetaPathFinder

        class Blocked(MetaPathFinder):
            def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
                if name.split(".", maxsplit=1)[0] == "opentelemetry":
                    raise ImportError(f"blocked by the benchmark: {name}")

        sys.meta_path.insert(0, Blocked())
    elif state == "off":
        os.environ["ACIDIC_TELEMETRY"] = "off"
    elif state == "sdk":
        # ruff: noqa: PLC0415 - the SDK only in this state
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    else:
        raise SystemExit(f"${ENV} must be one of {STATES}, not {state!r}")


#: (label, system, floor label, telemetry state or None)
CONFIGS = [
    ("PostgreSQL floor: raw psycopg, 3 tx/ride", "raw/3tx", None, None),
    *(
        (
            f"PostgreSQL app.run, telemetry {s}",
            "acidic/inline",
            "PostgreSQL floor: raw psycopg, 3 tx/ride",
            s,
        )
        for s in STATES
    ),
    ("SQLite floor: raw sqlite3, 3 tx/ride", "raw-sqlite/3tx", None, None),
    *(
        (
            f"SQLite app.run, telemetry {s}",
            "acidic-sqlite/inline",
            "SQLite floor: raw sqlite3, 3 tx/ride",
            s,
        )
        for s in STATES
    ),
]


def hook_costs(n: int) -> None:
    """The CPU the observer's hooks of one inline ride cost (an attempt and three steps),
    in this process, without a database: microseconds per ride for each observer."""
    import datetime as dt
    import time

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from acidic._engine import NO_OBSERVER, Observer, RunRow
    from acidic._telemetry._otel import OtelObserver

    now = dt.datetime.now(dt.UTC)
    row = RunRow(
        1,
        "ride-1",
        "ride",
        "{}",
        "[]",
        "running",
        "a",
        "{}",
        None,
        None,
        1,
        "t",
        now,
        now,
        now,
        None,
    )
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    observers: list[tuple[str, Observer]] = [
        ("absent or off (the do-nothing observer)", NO_OBSERVER),
        ("API, no SDK (global no-op proxies)", OtelObserver()),
        (
            "SDK + in-memory exporter and reader",
            OtelObserver(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])),
        ),
    ]
    print(f"\nhooks of one ride (attempt + 3 steps), in-process, N = {n}")
    for label, observer in observers:
        began = time.perf_counter()
        for _ in range(n):
            attempt = observer.run_started(row, 1, "a")
            for step in ("a", "b", "c"):
                handle = observer.step_started(attempt, row, step, 1)
                observer.step_ended(handle, "succeeded", None, None, 0.001)
            observer.run_ended(attempt, row, "succeeded", None)
        spans.clear()
        print(f"{label:48} {1e6 * (time.perf_counter() - began) / n:8.1f} us/ride")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="rides per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--hooks-only", action="store_true", help="only the in-process cost of the hooks"
    )
    args = parser.parse_args()
    hook_costs(20_000)
    if args.hooks_only:
        return
    from .__main__ import run_child

    seconds: dict[str, list[float]] = {label: [] for label, *_ in CONFIGS}
    for round_ in range(args.rounds):
        shift = round_ % len(CONFIGS)
        for label, system, _floor, state in CONFIGS[shift:] + CONFIGS[:shift]:
            name, mode = system.split("/")
            env = {ENV: state} if state else {ENV: ""}
            result = run_child(name, mode, args.n, 1, env)
            seconds[label].append(result["seconds"])
            print(f"round {round_ + 1}: {label}: {1000 * result['seconds'] / args.n:.2f} ms/ride")
    print(f"\nN = {args.n} rides per measurement, {args.rounds} rounds, medians")
    print(f"{'configuration':48} {'ms/ride':>8} {'ratio':>7}")
    for label, _system, floor, _state in CONFIGS:
        ms = 1000 * statistics.median(seconds[label]) / args.n
        ratio = (
            ""
            if floor is None
            else f"{statistics.median(seconds[label]) / statistics.median(seconds[floor]):.2f}x"
        )
        print(f"{label:48} {ms:8.2f} {ratio:>7}")


if __name__ == "__main__":
    main()
