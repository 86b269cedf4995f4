"""Telemetry adapters: OpenTelemetry traces and metrics, a Prometheus endpoint, JSON logs.

The engine tells its :class:`~acidic._engine.Observer` port what happens to runs; this
package implements that port on the OpenTelemetry API (``acidic[otel]``), and
nothing here imports OpenTelemetry until an App is built with it installed: without
the extra, :func:`observer` returns the engine's do-nothing observer.
"""

from __future__ import annotations

import importlib.util
import os

from .._engine import NO_OBSERVER, Observer
from ._logs import JsonFormatter

__all__ = ["JsonFormatter", "observer"]

#: Set to ``off`` (or ``0``, ``false``) to build Apps without telemetry.
ENV_SWITCH = "ACIDIC_TELEMETRY"


def observer(enabled: bool | None = None) -> Observer:
    """The observer for a new App: OpenTelemetry's when ``opentelemetry-api`` can be
    imported (and neither ``enabled=False`` nor ``$ACIDIC_TELEMETRY=off`` says no),
    else one that does nothing."""
    if enabled is None:
        enabled = os.environ.get(ENV_SWITCH, "").strip().lower() not in ("off", "0", "false")
    if not enabled or not _available():
        return NO_OBSERVER
    try:
        from ._otel import OtelObserver  # noqa: PLC0415 - only with the extra installed
    except ImportError:  # an API too old, or half installed: run without telemetry
        return NO_OBSERVER
    return OtelObserver()


def _available() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):  # the opentelemetry namespace is absent or blocked
        return False
