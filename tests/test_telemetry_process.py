"""Telemetry in real processes: a worker's Prometheus endpoint scraped over HTTP, its
JSON log lines, and acidic without OpenTelemetry installed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.worker_app import (
    ACIDIC,
    ROOT,
    URL_ENV,
    Drain,
    FailOnce,
    migrated,
    spawn_worker,
    status_counts,
    wait_for,
    worker_processes,
)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int) -> dict[str, Any]:
    """The endpoint's samples, by (sample name, sorted labels without otel_scope_*)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[Any, float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            labels = tuple(
                sorted((k, v) for k, v in sample.labels.items() if not k.startswith("otel_"))
            )
            samples[(sample.name, labels)] = sample.value
    return {"samples": samples, "types": types}


def _value(scraped: dict[str, Any], name: str, **labels: str) -> float | None:
    found: float | None = scraped["samples"].get((name, tuple(sorted(labels.items()))))
    return found


def test_worker_metrics_port__serves_prometheus_text_and_json_logs(
    database_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    with migrated(database_url) as app, worker_processes() as started:
        worker = spawn_worker(
            database_url,
            tmp_path / "worker.log",
            poll_interval=0.05,
            concurrency=2,
            extra_args=(
                "--metrics-port",
                str(port),
                "--metrics-host",
                "127.0.0.1",
                "--log-format",
                "json",
            ),
        )
        started.append(worker)
        worker.wait_started()
        keys = [app.enqueue(Drain(n=n)).key for n in range(5)]
        app.enqueue(FailOnce(delay=0.1))

        def finished() -> dict[str, Any] | None:
            scraped = _scrape(port)
            drained = _value(scraped, "acidic_runs_finished_total", job="Drain", status="succeeded")
            flaky = _value(
                scraped, "acidic_runs_finished_total", job="FailOnce", status="succeeded"
            )
            return scraped if drained == 5 and flaky == 1 else None

        scraped = wait_for(finished, "the scrape to count 6 finished runs", 60, 0.2)
        assert status_counts(app) == {"succeeded": 6}
        types = scraped["types"]
        assert types["acidic_runs_finished"] == "counter"
        assert types["acidic_step_duration_seconds"] == "histogram"
        assert types["acidic_enqueue_to_start_seconds"] == "histogram"
        assert types["acidic_queue_depth"] == "gauge"
        assert types["acidic_queue_oldest_due_age_seconds"] == "gauge"
        assert types["acidic_worker_executors"] == "gauge"
        steps = _value(
            scraped,
            "acidic_step_duration_seconds_count",
            job="Drain",
            step="work",
            outcome="succeeded",
        )
        assert steps == 5
        assert _value(scraped, "acidic_retries_total", job="FailOnce") == 1
        assert (
            _value(scraped, "acidic_enqueue_to_start_seconds_count", job="Drain", queue="default")
            == 5
        )
        # Read at most once a second: the depth falls to 0 within one more.
        wait_for(
            lambda: _value(_scrape(port), "acidic_queue_depth", queue="default") == 0,
            "the queue depth to read 0",
            10,
            0.2,
        )
        busy = _value(scraped, "acidic_worker_executors", state="busy")
        idle = _value(scraped, "acidic_worker_executors", state="idle")
        assert busy is not None
        assert idle is not None
        assert busy + idle == 2

        worker.signal_group(signal.SIGTERM)
        assert worker.wait(30) == 0
        lines = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
    # One JSON object per line, the step lines carrying the run's fields.
    step_lines = [line for line in lines if line.get("step") == "work"]
    assert sorted(line["key"] for line in step_lines) == sorted(keys)
    for line in step_lines:
        assert line["job"] == "Drain"
        assert line["attempt"] == 1
        assert line["outcome"] == "succeeded"
        assert line["logger"] == "acidic.run"
        assert line["level"] == "INFO"
    assert any(line["message"] == "worker started" for line in lines)


def test_metrics_port__with_several_processes_is_refused() -> None:
    acidic = Path(sys.executable).with_name("acidic")
    done = subprocess.run(
        [str(acidic), "worker", "--app", "x:app", "--processes", "2", "--metrics-port", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--metrics-port serves one process" in done.stderr


_WITHOUT_OTEL = textwrap.dedent(
    """
    import sys, time
    from importlib.abc import MetaPathFinder

    class Blocked(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Blocked())
    import sqlalchemy as sa
    import acidic
    from acidic._engine import NO_OBSERVER

    class Ride(acidic.Job):
        n: int

        @acidic.step
        def one(self, tx: sa.Connection) -> None:
            self.ctx["n"] = self.n

        @acidic.step(transactional=False)
        def two(self) -> acidic.Response:
            return acidic.Response(self.ctx["n"])

    with acidic.App(sys.argv[1]) as app:
        assert app.manager.observer is NO_OBSERVER, app.manager.observer
        app.migrate()
        app.job(name="ride")(Ride)
        assert app.run(Ride(n=4), key="inline") == 4
        app.enqueue(Ride(n=5), key="queued")
        assert app.drain() == 1
        assert app.get("queued").result == 5
        assert app.manager.find("queued").traceparent is None
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    assert not loaded, loaded
    print("ok")
    """
)


def test_without_opentelemetry__acidic_imports_and_runs(tmp_path: Path) -> None:
    """The ``otel`` extra absent (its import blocked): acidic runs, inline and queued."""
    url = f"sqlite:///{tmp_path}/plain.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OTEL, url],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_json_log_format__without_opentelemetry(tmp_path: Path) -> None:
    """The JSON formatter needs no OpenTelemetry (trace ids are added only with it)."""
    code = textwrap.dedent(
        """
        import sys, logging
        sys.modules["opentelemetry"] = None  # an absent package
        from acidic._telemetry import JsonFormatter
        record = logging.LogRecord("acidic.run", logging.INFO, "f", 1, "step %s", ("a",), None)
        record.key = "k1"
        record.attempt = 2
        print(JsonFormatter().format(record))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    line = json.loads(done.stdout)
    assert line["message"] == "step a"
    assert line["key"] == "k1"
    assert line["attempt"] == 2
    assert "trace_id" not in line


_SDK_LATER = textwrap.dedent(
    """
    import sys
    import sqlalchemy as sa
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import acidic

    class Ride(acidic.Job):
        n: int

        @acidic.step
        def one(self, tx: sa.Connection) -> None:
            pass

    with acidic.App(sys.argv[1]) as app:  # built before the SDK is configured
        app.migrate()
        app.job(name="ride")(Ride)
        app.run(Ride(n=1), key="before")
        app.enqueue(Ride(n=2), key="queued-before")
        assert app.manager.find("queued-before").traceparent is None

        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        app.run(Ride(n=3), key="after")
        app.enqueue(Ride(n=4), key="queued-after")
        assert app.manager.find("queued-after").traceparent.startswith("00-")
        names = sorted(s.name for s in spans.get_finished_spans())
        assert names == ["acidic.enqueue ride", "acidic.run ride", "acidic.step one"], names
        data = reader.get_metrics_data()
        found = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
        assert "acidic.runs.finished" in found, found
    print("ok")
    """
)


def test_sdk_configured_after_the_app__is_used_from_then_on(tmp_path: Path) -> None:
    """An App built at import, the SDK configured later (the usual order): what runs
    after the SDK is set is traced and measured; nothing before."""
    url = f"sqlite:///{tmp_path}/later.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", _SDK_LATER, url],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_dashboard_metrics_port__reports_the_queues(database_url: str, tmp_path: Path) -> None:
    """``acidic dashboard --metrics-port``: a process that runs no worker reports the
    depth of the App's queues."""
    port, metrics_port = _free_port(), _free_port()
    env = {**os.environ, URL_ENV: database_url, "PYTHONPATH": str(ROOT)}
    with migrated(database_url) as app:
        for n in range(3):
            app.enqueue(Drain(n=n))
        argv = [str(ACIDIC), "dashboard", "--app", "tests.support.worker_app:app"]
        argv += ["--port", str(port), "--metrics-port", str(metrics_port)]
        argv += ["--metrics-host", "127.0.0.1"]
        with open(tmp_path / "dashboard.log", "wb") as log:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:

            def depth() -> float | None:
                if proc.poll() is not None:
                    raise AssertionError((tmp_path / "dashboard.log").read_text())
                try:
                    scraped = _scrape(metrics_port)
                except OSError:
                    return None  # not listening yet
                return _value(scraped, "acidic_queue_depth", queue="default")

            assert wait_for(depth, "the dashboard's metrics", 60, 0.2) == 3
        finally:
            proc.terminate()
            proc.wait(30)
