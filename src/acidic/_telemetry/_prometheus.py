"""A Prometheus text endpoint for acidic's OpenTelemetry metrics (``--metrics-port``).

acidic records its metrics through the OpenTelemetry metrics API only. To serve them
to a scraper, this installs the OpenTelemetry SDK's ``MeterProvider`` with the
Prometheus exporter's reader (``opentelemetry-exporter-prometheus``, which renders
them with ``prometheus_client``) and starts ``prometheus_client``'s HTTP server: one
set of instruments serves OTLP users and Prometheus users alike. Names become
Prometheus names by the exporter's rules: ``acidic.runs.finished`` (a counter) is
``acidic_runs_finished_total``, ``acidic.step.duration`` (unit ``s``) is
``acidic_step_duration_seconds``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .._errors import AcidicError

__all__ = ["MetricsServer", "serve_metrics", "watch"]

EXTRA = "pip install 'acidic[prometheus]'"


@dataclass(slots=True)
class MetricsServer:
    """The running endpoint: its address; :meth:`close` stops it."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_metrics(port: int, host: str = "0.0.0.0") -> MetricsServer:  # noqa: S104 - scraped from afar
    """Serve this process's OpenTelemetry metrics as Prometheus text at
    ``http://host:port/metrics`` (any path answers), from a daemon thread.

    Raises :class:`acidic.AcidicError` when the extra is missing, when the application
    already configured a MeterProvider (add a ``PrometheusMetricReader`` to it
    instead), or when the port cannot be bound."""
    try:
        from opentelemetry import metrics  # noqa: PLC0415 - optional
        from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415
        from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from prometheus_client import start_http_server  # noqa: PLC0415
    except ImportError as exc:
        raise AcidicError(f"--metrics-port needs the prometheus extra: {EXTRA} ({exc})") from exc
    if isinstance(metrics.get_meter_provider(), MeterProvider):
        raise AcidicError(
            "this process already configured an OpenTelemetry MeterProvider: add "
            "opentelemetry.exporter.prometheus.PrometheusMetricReader() to its readers "
            "instead of --metrics-port"
        )
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise AcidicError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader()],
        resource=Resource.create({"service.name": "acidic"}),
    )
    metrics.set_meter_provider(provider)
    return MetricsServer(host, server.server_address[1], server, thread)


def watch(app: Any) -> None:
    """Report ``app``'s queue depth and age from this process (one that runs no
    worker, like the dashboard's); nothing without telemetry."""
    watcher = getattr(app.manager.observer, "watch", None)
    if watcher is not None:
        watcher(app)
